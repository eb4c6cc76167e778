"""Models that ship inside the package, trained: their generator weights in float16 and
the run config, turned into an ordinary export (SavedModel, signatures) on first use and
cached, so that ``tf-translate interpolate clip.mp4 --output out.mp4`` works on a fresh
install without training.

``interpolation/``: the flow generator trained on the embedded Big Buck Bunny clip
(frame gap 6: two frames in, the five between out); its MODEL_CARD.md says how it was
trained and how it scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from tf_translate import config
from tf_translate.nn.features import cache_dir

HERE = Path(__file__).resolve().parent
INTERPOLATION = HERE / "interpolation"
WEIGHTS, CONFIG = "weights.npz", "config.json"


def pack(run_dir: str | Path, target: str | Path = INTERPOLATION, best: bool = False) -> Path:
    """Write a run's generator (its latest or best checkpoint) as ``target/weights.npz``
    (float16, one array per weight in the generator's order) and ``target/config.json``."""
    from tf_translate.training import trainer

    run_dir, target = Path(run_dir), Path(target)
    cfg = config.load(run_dir / "config.json")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output=str(run_dir)))
    model = trainer.restore(cfg, best)
    target.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target / WEIGHTS, *[w.astype(np.float16) for w in model.G.get_weights()])
    # the folders were the training machine's: a user's run and export go to the defaults
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, output=None),
                              export=dataclasses.replace(cfg.export, export_dir=None))
    cfg.save(target / CONFIG)
    return target


def export_dir(source: Path = INTERPOLATION) -> Path:
    """The cached export of a shipped model, made on first use: ``<cache>/shipped/<name>-<hash>/1``."""
    weights = (source / WEIGHTS).read_bytes()
    digest = hashlib.sha256(weights + (source / CONFIG).read_bytes()).hexdigest()[:12]
    root = cache_dir() / "shipped" / f"{source.name}-{digest}"
    version = root / "1"
    if not version.exists():
        _export(source, root)
    return version


def _export(source: Path, root: Path) -> Path:
    from tf_translate import export, registry
    from tf_translate.training import trainer

    cfg = config.load(source / CONFIG)
    cfg = dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, tflite=False))
    # only G is needed: no perceptual network to build (its VGG weights may not be cached)
    built = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lambda_perceptual=0.0))
    model = trainer.build_model(built, registry.get(cfg.method), steps_per_epoch=1)
    with np.load(source / WEIGHTS) as arrays:
        model.G.set_weights([arrays[f"arr_{i}"].astype(np.float32) for i in range(len(arrays.files))])
    return export.export_model(model, cfg, export_dir=root)
