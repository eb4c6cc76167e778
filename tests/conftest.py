"""Shared fixtures: tiny configs, tiny image folders, one tiny trained-and-exported model."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import tf_translate  # noqa: E402
from tf_translate import config, registry  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_MODEL = {"cyclegan": {"filters": 4, "n_blocks": 1, "disc_filters": 4},
              # the U-Net everywhere but where a test asks for the flow generator (test_flow, test_pix2pix)
              "pix2pix": {"filters": 4, "disc_filters": 4, "frames_per_image": 3, "generator": "unet",
                          "flow_filters": 4, "lambda_perceptual": 0.0},
              "fast_style": {"filters": 4, "n_blocks": 1},
              "stargan": {"filters": 4, "n_blocks": 1, "disc_filters": 4, "disc_layers": 5, "n_critic": 2},
              # L_SEM off: an f of 3 steps reads no target image confidently (test_dtn turns it on)
              "dtn": {"filters": 4, "features": 8, "encoder_steps": 3, "semantic": 0.0, "semantic_steps": 3}}


def tiny_config(method: str, tmp: Path, source: str | None, **sections) -> config.RunConfig:
    """A run config with tiny networks and shapes (32 px, filters 4, one residual block)."""
    spec = registry.get(method)
    layers = {
        "data": {"data": source, "load_size": 36, "crop_size": 32},
        "model": TINY_MODEL[method],
        # XLA off: compiling each tiny model would cost more than its few steps; float32 whatever
        # the CPU (--precision auto picks bfloat16 on CPUs with BF16 for some methods)
        "train": {"output": str(tmp / "run"), "epochs": 1, "decay_epochs": 1, "steps_per_epoch": 2,
                  "sample_every": 2, "checkpoint_every": 2, "log_every": 1, "jit_compile": "off",
                  "precision": "float32"},
        "export": {"export_dir": str(tmp / "exported")},
    }
    for section, values in sections.items():
        layers[section] = {**layers.get(section, {}), **values}
    return config.build(method, spec.config, spec.overrides, layers)


def write_images(folder: Path, n: int, *, seed: int, size=(40, 36), mode="RGB", names=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        name = names[i] if names else f"img_{i:03d}.png"
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        # a smooth gradient plus noise: something for a generator to learn
        pixels[..., seed % 3] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :]
        path = folder / name
        Image.fromarray(pixels).convert(mode).save(path, format="PNG")
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def unpaired_dir(tmp_path_factory) -> Path:
    """trainA/, trainB/ (6 images each) and testA/, testB/ with matching names (2 each)."""
    root = tmp_path_factory.mktemp("unpaired")
    write_images(root / "trainA", 6, seed=0)
    write_images(root / "trainB", 6, seed=1)
    write_images(root / "testA", 2, seed=2, names=["s1.png", "s2.png"])
    write_images(root / "testB", 2, seed=3, names=["s1.png", "s2.png"])
    return root


@pytest.fixture(scope="session")
def domains_dir(tmp_path_factory) -> Path:
    """Three domain folders of 4 images each (the last of each held out)."""
    root = tmp_path_factory.mktemp("domains")
    for seed, domain in enumerate(("happy", "sad", "sleepy")):
        write_images(root / domain, 4, seed=10 + seed)
    return root


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    """train/ (6 photos) and test/ (2)."""
    root = tmp_path_factory.mktemp("photos")
    write_images(root / "train", 6, seed=4)
    write_images(root / "test", 2, seed=5)
    return root


# Per method, the settings of the one tiny exported model that every export test shares.
EXPORT_SETTINGS = {
    "cyclegan": {"train": {"validate_every": 2}},
    "pix2pix": {"train": {"validate_every": 2}},
    "fast_style": {"train": {"steps_per_epoch": 4, "validate_every": 2, "sample_every": 2}, "data": {"batch_size": 2}},
    "stargan": {"train": {"validate_every": 2}, "data": {"batch_size": 2}},
    "dtn": {"train": {"validate_every": 2}},
}


@pytest.fixture(scope="session")
def exports(tmp_path_factory, request):
    """``exports(method)``: that method's tiny model, trained a few steps with validation and
    exported once per session: (config, version folder)."""

    made = {}

    def get(method: str):
        if method not in made:
            if method in NEEDS_VGG:
                skip_without_vgg()
            tmp = tmp_path_factory.mktemp(f"exported_{method}")
            settings = dict(EXPORT_SETTINGS[method])
            if method == "fast_style":
                style = write_images(tmp / "style", 1, seed=9, size=(48, 40))[0]
                settings["model"] = {"style": (str(style),)}
            cfg = tiny_config(method, tmp, str(request.getfixturevalue(DATA_FIXTURES[method])), **settings)
            made[method] = (cfg, tf_translate.train(cfg))
        return made[method]

    return get


@pytest.fixture(scope="session")
def trained(exports):
    """The tiny CycleGAN, trained for 4 steps with validation and exported: (config, export folder)."""
    return exports("cyclegan")


@pytest.fixture(scope="session")
def strips_dir(tmp_path_factory) -> Path:
    """train/ (6) and test/ (2) strips of 3 frames, 40x36 each: pix2pix with stacked channels."""
    root = tmp_path_factory.mktemp("strips")
    write_images(root / "train", 6, seed=4, size=(120, 36))
    write_images(root / "test", 2, seed=5, size=(120, 36))
    return root


def coded_video(path: Path, n: int, size=(64, 48), fps: float = 10.0) -> Path:
    """A video whose frame i is a solid grey 20 + 5 i, so decoded frames tell their index."""
    from tf_translate.data import video

    frames = (np.full((size[1], size[0], 3), 20 + 5 * i, np.uint8) for i in range(n))
    return video.write_video(path, frames, fps=fps)


def frame_index(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - 20) / 5))


@pytest.fixture(scope="session")
def frames_video(tmp_path_factory) -> Path:
    return coded_video(tmp_path_factory.mktemp("video") / "coded.mp4", 40)


@pytest.fixture(scope="session")
def transfer_dir(tmp_path_factory) -> Path:
    """DTN folders of real digits: source/<0,1,2>/ (scikit-learn's) and target/<0,1,2>/ (MNIST's),
    20 of each class; the last 2 of each class are held out."""
    from tf_translate.data import transfer

    root = tmp_path_factory.mktemp("transfer")
    for role in ("source", "target"):
        images, labels = transfer.digit_arrays(role)
        for k in range(3):
            (root / role / str(k)).mkdir(parents=True)
            for i in np.flatnonzero(labels == k)[:20]:
                Image.fromarray(images[i]).save(root / role / str(k) / f"{role}_{i:04d}.png")
    return root


@pytest.fixture
def op_determinism():
    """Deterministic kernels for one test: left on, they would silently switch XLA off (Keras
    refuses jit_compile under op determinism) in every later test."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # disable_op_determinism: not public

    tf.config.experimental.enable_op_determinism()
    yield
    tf_config.disable_op_determinism()


DATA_FIXTURES = {"cyclegan": "unpaired_dir", "pix2pix": "strips_dir", "fast_style": "photos_dir",
                 "stargan": "domains_dir", "dtn": "transfer_dir"}
NEEDS_VGG = {"fast_style"}


def skip_without_vgg() -> None:
    from tf_translate.nn import features

    if not (features.cache_dir() / features.CACHE_FILE).exists():
        pytest.skip(f"VGG-16 weights not cached at {features.cache_dir()}: run `python scripts/fetch_weights.py` "
                    "(scripts/test.sh does)")


@pytest.fixture
def method_data(request):
    """(method, data folder) for a test parametrized over ``method``."""
    method = request.param
    if method in NEEDS_VGG:
        skip_without_vgg()
    return method, request.getfixturevalue(DATA_FIXTURES[method])


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real development data lives beside the project in ../shared/data")
    return path
