"""Generators trained with the PyTorch reference implementation of CycleGAN and pix2pix
(``*_net_G*.pth`` of junyanz/pytorch-CycleGAN-and-pix2pix) mapped onto our networks and
exported like a trained model: SavedModel for TF Serving, TFLite for phones.

The two code bases build the same networks with two differences that matter to the numbers:
- layout: PyTorch keeps convolution kernels as (out, in, kh, kw) and transposed ones as
  (in, out, kh, kw); Keras as (kh, kw, in, out) and (kh, kw, out, in);
- grids: the ResNet's ``ConvTranspose2d(k=3, s=2, padding=1, output_padding=1)`` samples
  one pixel later than a Keras ``same`` transposed convolution, so the imported ResNet is
  built with ``transpose_pad="torch"``. The 3x3 stride-2 down-sampling (explicit padding 1)
  and the U-Net's 4x4 kernels already agree.
The U-Net's decoder concatenates [skip, decoded] in PyTorch and [decoded, skip] here: the
input channels of those transposed kernels are swapped.

Normalisation as the reference's ``test.py`` runs it: instance norm without parameters for
CycleGAN (stale running statistics in 2018 checkpoints are ignored, as the reference's loader
deletes them); batch norm for pix2pix with each image's own statistics (test.py without
``--eval``, at batch size 1: the pix2pix paper's "instance normalization" at test time), or
with the running statistics (``running_stats``, test.py ``--eval``). Dropout is left out:
the export is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import keras
import numpy as np

from tf_translate.errors import UsageError
from tf_translate.nn import networks
from tf_translate.nn.layers import InstanceNorm
from tf_translate.nn.torch_checkpoint import CheckpointError, read_state_dict

ARCHS = {"resnet_9blocks": ("resnet", 9), "resnet_6blocks": ("resnet", 6), "unet_256": ("unet", 8),
         "unet_128": ("unet", 7)}


@dataclasses.dataclass(frozen=True)
class Mapped:
    """One PyTorch module's tensors (``torch``: key prefix) -> one Keras layer."""

    torch: str
    keras: str
    kind: str  # conv | deconv | norm
    swap: bool = False  # U-Net decoder: input channels [skip, decoded] -> [decoded, skip]


def resnet_plan(n_blocks: int, dropout: bool) -> list[Mapped]:
    """ResnetGenerator's ``model`` Sequential: pad, c7s1 conv, norm, ReLU, then each stride-2
    conv with norm and ReLU, the residual blocks, each transposed conv with norm and ReLU,
    pad, c7s1 conv, tanh. A residual block's ``conv_block``: pad, conv, norm, ReLU,
    (dropout), pad, conv, norm."""
    second = 6 if dropout else 5
    plan = [Mapped("model.1", "c7s1_conv", "conv"), Mapped("model.2", "c7s1_norm", "norm"),
            Mapped("model.4", "d1_conv", "conv"), Mapped("model.5", "d1_norm", "norm"),
            Mapped("model.7", "d2_conv", "conv"), Mapped("model.8", "d2_norm", "norm")]
    for i in range(n_blocks):
        block = f"model.{10 + i}.conv_block"
        plan += [Mapped(f"{block}.1", f"r{i + 1}_a_conv", "conv"), Mapped(f"{block}.2", f"r{i + 1}_a_norm", "norm"),
                 Mapped(f"{block}.{second}", f"r{i + 1}_b_conv", "conv"),
                 Mapped(f"{block}.{second + 1}", f"r{i + 1}_b_norm", "norm")]
    up = 10 + n_blocks
    plan += [Mapped(f"model.{up}", "u1_deconv", "deconv"), Mapped(f"model.{up + 1}", "u1_norm", "norm"),
             Mapped(f"model.{up + 3}", "u2_deconv", "deconv"), Mapped(f"model.{up + 4}", "u2_norm", "norm"),
             Mapped(f"model.{up + 7}", "out_conv", "conv")]
    return plan


def unet_prefix(level: int) -> str:
    """Key prefix of the U-Net block at ``level`` (0 = outermost): each block's Sequential
    holds the next block at index 1 (outermost) or 3."""
    return "model.model." + "".join("1.model." if k == 0 else "3.model." for k in range(level))


def unet_plan(depth: int) -> list[Mapped]:
    """UnetGenerator's nested blocks. Outermost: [downconv, block, ReLU, upconv, tanh];
    middle: [LeakyReLU, downconv, downnorm, block, ReLU, upconv, upnorm, (dropout)];
    innermost: [LeakyReLU, downconv, ReLU, upconv, upnorm]."""
    plan = [Mapped(unet_prefix(0) + "0", "down1_conv", "conv"), Mapped(unet_prefix(0) + "3", "up1_deconv", "deconv", True)]
    for level in range(1, depth - 1):
        p = unet_prefix(level)
        plan += [Mapped(p + "1", f"down{level + 1}_conv", "conv"), Mapped(p + "2", f"down{level + 1}_norm", "norm"),
                 Mapped(p + "5", f"up{level + 1}_deconv", "deconv", True), Mapped(p + "6", f"up{level + 1}_norm", "norm")]
    p = unet_prefix(depth - 1)
    plan += [Mapped(p + "1", f"down{depth}_conv", "conv"), Mapped(p + "3", f"up{depth}_deconv", "deconv"),
             Mapped(p + "4", f"up{depth}_norm", "norm")]
    return plan


def patch_plan(n_layers: int) -> list[Mapped]:
    """NLayerDiscriminator's ``model`` Sequential (the 70x70 PatchGAN with ``n_layers`` 3):
    conv, LeakyReLU, then per layer conv, norm, LeakyReLU, and the last conv to one channel."""
    plan = [Mapped("model.0", "c1_conv", "conv")]
    for i in range(1, n_layers + 1):
        plan += [Mapped(f"model.{3 * i - 1}", f"c{i + 1}_conv", "conv"), Mapped(f"model.{3 * i}", f"c{i + 1}_norm", "norm")]
    return plan + [Mapped(f"model.{3 * n_layers + 2}", "patch_conv", "conv")]


def plan_for(arch: str, state: dict) -> list[Mapped]:
    family, n = ARCHS[arch]
    if family == "resnet":
        # with use_dropout the second conv of each block moves from index 5 to 6
        dropout = np.ndim(state.get("model.10.conv_block.6.weight")) == 4
        return resnet_plan(n, dropout)
    return unet_plan(n)


def generator(arch: str, state: dict, *, running_stats: bool = False, label: str = "checkpoint"):
    """Our generator for ``arch`` holding the checkpoint's weights, and what was read:
    {in_channels, out_channels, filters, norm}. Keys or shapes that do not fit ``arch``
    raise CheckpointError naming them."""
    if arch not in ARCHS:
        raise UsageError(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHS)}")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from nn.DataParallel
    family, n = ARCHS[arch]
    plan = plan_for(arch, state)
    # the sizes from the first and the last convolution (U-Net: the outermost transposed one)
    first = state.get(f"{plan[0].torch}.weight")
    last = state.get(f"{plan[1 if family == 'unet' else -1].torch}.weight")
    filters, in_channels = first.shape[:2] if np.ndim(first) == 4 else (64, 3)
    out_channels = (last.shape[1] if family == "unet" else last.shape[0]) if np.ndim(last) == 4 else 3
    batch_norm = any(f"{m.torch}.weight" in state for m in plan if m.kind == "norm")
    norm_kind = "batch" if batch_norm and running_stats else "instance"
    if family == "resnet":
        net = networks.resnet_generator(in_channels=int(in_channels), out_channels=int(out_channels),
                                        filters=int(filters), n_blocks=n, norm_kind=norm_kind, transpose_pad="torch",
                                        name="G")
    else:
        net = networks.unet_generator(in_channels=int(in_channels), out_channels=int(out_channels), depth=n,
                                      filters=int(filters), max_filters=8 * int(filters), norm_kind=norm_kind,
                                      dropout=0.0, name="G")
    try:
        assign(net, plan, state, f"{label} as {arch}")
    except CheckpointError as e:
        fits = [a for a in ARCHS if a != arch and keys_fit(plan_for(a, state), state)]
        raise CheckpointError(f"{e} (its keys fit --arch {fits[0]})" if fits else str(e)) from None
    norm = f"batch norm, {'running' if running_stats else 'per-image'} statistics" if batch_norm else "instance norm"
    return net, {"in_channels": int(in_channels), "out_channels": int(out_channels), "filters": int(filters),
                 "norm": norm, "batch_norm": batch_norm}


def keys_fit(plan: list[Mapped], state: dict) -> bool:
    """Whether ``state`` has every convolution of ``plan`` and nothing outside its modules."""
    prefixes = {m.torch for m in plan}
    return (all(f"{m.torch}.weight" in state for m in plan if m.kind != "norm")
            and all(key.rsplit(".", 1)[0] in prefixes for key in state))


def assign(net: keras.Model, plan: list[Mapped], state: dict, label: str) -> None:
    """Set every planned layer's weights from ``state``; all problems are reported at once."""
    used, missing, wrong = set(), [], []
    for m in plan:
        layer = net.get_layer(m.keras)
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        present = {k: state[f"{m.torch}.{k}"] for k in ("weight", "bias", "running_mean", "running_var",
                                                        "num_batches_tracked") if f"{m.torch}.{k}" in state}
        used.update(f"{m.torch}.{k}" for k in present)
        if m.kind == "norm":
            values = norm_weights(layer, present, shapes, m, missing)
        else:
            if "weight" not in present:
                missing.append(f"{m.torch}.weight")
                continue
            weight = present["weight"]
            expected = tuple(shapes[0][i] for i in (3, 2, 0, 1))  # the Keras kernel's shape in PyTorch's order
            if weight.shape != expected:
                wrong.append(f"{m.torch}.weight is {tuple(weight.shape)}, expected {expected}")
                continue
            if m.swap:
                half = weight.shape[0] // 2
                weight = np.concatenate([weight[half:], weight[:half]], axis=0)
            values = [np.transpose(weight, (2, 3, 1, 0))]
            if len(shapes) > 1:
                values.append(present.get("bias", np.zeros(shapes[1], np.float32)))
            elif "bias" in present:
                wrong.append(f"{m.torch}.bias is present, expected none")
                continue
        if values is None:
            continue
        bad = [f"{m.torch}.{key} is {tuple(np.shape(value))}, expected {shape}" for key, value, shape
               in zip(("weight", "bias", "running_mean", "running_var"), values, shapes)
               if tuple(np.shape(value)) != shape]
        wrong.extend(bad)
        if not bad:
            layer.set_weights([np.asarray(v) for v in values])  # in the layer's dtype
    unexpected = sorted(set(state) - used)
    if missing or unexpected or wrong:
        parts = [f"{what} {listing(keys)}" for what, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape:", wrong)) if keys]
        raise CheckpointError(f"{label}: does not match: {'; '.join(parts)}")


def norm_weights(layer, present: dict, shapes: list, m: Mapped, missing: list):
    """A norm layer's Keras weights from PyTorch's: batch norm (weight, bias, running_mean,
    running_var) into BatchNormalization, or its affine part into InstanceNorm (per-image
    statistics); an instance norm without parameters keeps gamma 1, beta 0."""
    if isinstance(layer, InstanceNorm):
        if "weight" not in present:  # nn.InstanceNorm2d(affine=False): nothing to set
            return None
        return [present["weight"], present.get("bias", np.zeros(shapes[1], np.float32))]
    needed = ("weight", "bias", "running_mean", "running_var")
    absent = [f"{m.torch}.{k}" for k in needed if k not in present]
    if absent:
        missing.extend(absent)
        return None
    return [present[k] for k in needed]


def listing(items: list[str], most: int = 4) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" (+{len(items) - most} more)" if len(items) > most else "")


def signature_name(path: Path) -> str:
    """The exported signature's name from the checkpoint's: ``horse2zebra.pth`` ->
    horse2zebra; the reference's ``*_net_G_B.pth`` (CycleGAN's F: B -> A) -> b2a; else a2b."""
    stem = path.stem.lower()
    if re.fullmatch(r"[a-z0-9]+2[a-z0-9]+", stem):
        return stem
    return "b2a" if stem.endswith("net_g_b") else "a2b"


class Imported:
    """An imported generator with what ``export.export_model`` reads of a trained model."""

    def __init__(self, net: keras.Model, name: str, multiple: int):
        self.net, self.name, self.multiple = net, name, multiple

    def generators(self) -> dict:
        return {self.name: (self.net, int(self.net.input_shape[-1]))}

    def down_factor(self) -> int:
        return self.multiple

    def domain_labels(self):
        return None

    def input_size(self):
        return None

    def readers(self) -> dict:
        return {}


def calibration_images(folder, size: int, most: int = 16) -> np.ndarray:
    """Up to ``most`` images of ``folder`` resized to ``size`` squared, float [-1, 1], to
    calibrate an int8 or int16x8 TFLite variant."""
    import tensorflow as tf

    from tf_translate.data.images import image_files, read_image

    files = image_files(folder)[:most]
    images = [tf.image.resize(read_image(f)[None].astype(np.float32) / 255.0, [size, size], antialias=True)[0]
              for f in files]
    return np.clip(np.stack(images), 0.0, 1.0) * 2.0 - 1.0


def import_checkpoint(checkpoint, arch: str, *, export_dir=None, name: str | None = None,
                      running_stats: bool = False, tflite_variants=("float32",), calibration=None) -> Path:
    """Read ``checkpoint``, map it onto ``arch`` and export it as the next version of
    ``export_dir`` (default exported/<checkpoint name>); returns the version folder, which
    also holds torch_import.json (what was read)."""
    from tf_translate import config, export, registry

    checkpoint = Path(checkpoint)
    state = read_state_dict(checkpoint)
    net, info = generator(arch, state, running_stats=running_stats, label=str(checkpoint))
    family, n = ARCHS[arch]
    name = name or signature_name(checkpoint)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name.endswith(("_bytes", "_map", "_tile")):
        raise UsageError(f"--name {name!r}: a signature name is letters, digits and _, starting with a letter")
    unknown = sorted(set(tflite_variants) - set(export.TFLITE_VARIANTS))
    if unknown:
        raise UsageError(f"unknown TFLite variant {', '.join(unknown)}; expected some of "
                         f"{', '.join(export.TFLITE_VARIANTS)}")
    size = 2**n if family == "unet" else 256
    representative = None
    if export.needs_calibration(tflite_variants):
        if calibration is None:
            raise UsageError("the int8 and int16x8 TFLite variants need --calibration DIR: a folder of typical "
                             "input images")
        representative = calibration_images(calibration, size)
    method = "cyclegan" if family == "resnet" else "pix2pix"
    model = {"filters": info["filters"], "norm": "batch" if info["batch_norm"] else "instance",
             **({"n_blocks": n} if family == "resnet" else {"depth": n, "dropout": 0.0})}
    domains = tuple(name.split("2", 1)) if "2" in name and all(name.split("2", 1)) else ("a", "b")
    cfg = config.build(method, registry.get(method).config, {
        "model": model, "data": {"domains": domains, "crop_size": size, "load_size": size},
        "export": {"export_dir": str(export_dir or Path("exported") / checkpoint.stem), "tflite": True,
                   "tflite_variants": ("float32", *(v for v in tflite_variants if v != "float32"))}})
    multiple = 2**n if family == "unet" else 4
    # the TFLite variants are compared with the SavedModel on the calibration images when given
    version = export.export_model(Imported(net, name, multiple), cfg, representative=representative,
                                  examples=None if representative is None else [representative])
    (version / "torch_import.json").write_text(json.dumps({
        "checkpoint": str(checkpoint.resolve()), "arch": arch, "signature": name, **info,
        "running_stats": running_stats}, indent=2))
    return version
