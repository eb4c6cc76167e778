#!/usr/bin/env python
"""The pix2pix training loop of the PyTorch reference implementation, for a same-machine timing.

Each step is the reference's own code: ``Pix2PixModel.set_input`` and ``optimize_parameters()``
of junyanz/pytorch-CycleGAN-and-pix2pix (``models/pix2pix_model.py``, ``models/networks.py``),
imported unmodified from ``../shared/peers/pytorch-CycleGAN-and-pix2pix`` beside the project
(never copied into it; needs ``torch``). Options are its ``train.py --model pix2pix`` defaults:
``unet_128`` at 128 px or ``unet_256`` at 256 px, ngf = ndf = 64, ``basic`` PatchGAN, batch norm,
dropout on, ``normal`` init 0.02, ``vanilla`` GAN, ``lambda_L1 100``, Adam 2e-4, betas (0.5, 0.999),
a constant learning rate (its per-epoch linear decay is not run).

The data loading is written here (the reference's ``data/`` package is not among the peer
files): its ``aligned`` mode, each file an A|B pair split in half, ``--preprocess resize_and_crop``
(both halves resized to ``--load-size`` with PIL bicubic, the same random crop and flip),
to [-1, 1]; a DataLoader with ``--num-threads`` workers, shuffled, batch 1. The visualiser,
HTML pages and loss printing of ``train.py`` are not run. Times ``--iterations`` iterations
after ``--warmup``: per iteration the wall time from asking the loader for the next pair to the
end of the step ("with data"), and the step alone ("bare"). ``--predict`` translates with the
model's ``test()``, as the reference's ``test.py`` does by default (no ``--eval``).

``make_step(size)`` gives one bare step on random inputs, for ``benchmarks/benchmark.py --method
pix2pix --torch`` (interleaved with ours in one run).

Usage:
    python benchmarks/torch_pix2pix.py --data ../shared/data/people2outline/train --direction BtoA \\
        [--size 128] [--load-size 143] [--iterations 200] [--warmup 5] [--num-threads 4]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

from peers import REFERENCE, load_or_exit

NET_G = {128: "unet_128", 256: "unet_256"}  # the reference's U-Nets: 7 and 8 stride-2 levels

torch, pix2pix_model = load_or_exit("pix2pix_model", "torch_pix2pix.py", __name__ == "__main__")

import numpy as np  # after the reference check, for its one-line message when torch is absent
from PIL import Image


def options(size: int = 128, direction: str = "AtoB") -> types.SimpleNamespace:
    """The fields ``Pix2PixModel.__init__`` reads, at the reference's train.py defaults for pix2pix."""
    if size not in NET_G:
        raise ValueError(f"the reference's U-Nets take 128 px (unet_128) or 256 px (unet_256), not {size}")
    return types.SimpleNamespace(
        isTrain=True, gpu_ids=[], checkpoints_dir=tempfile.gettempdir(), name="torch_pix2pix_benchmark",
        preprocess="resize_and_crop", direction=direction, input_nc=3, output_nc=3, ngf=64, ndf=64,
        netG=NET_G[size], netD="basic", n_layers_D=3, norm="batch", no_dropout=False, init_type="normal",
        init_gain=0.02, gan_mode="vanilla", pool_size=0, lambda_L1=100.0, lr=2e-4,
        beta1=0.5)  # checkpoints_dir: never written (no save_networks)


def make_model(size: int = 128, direction: str = "AtoB"):
    """The reference's ``Pix2PixModel`` (train mode), its networks initialised after ``torch.manual_seed(0)``."""
    opt = options(size, direction)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(sys.stderr):  # networks.init_weights prints "initialize network with normal"
        return pix2pix_model.Pix2PixModel(opt)


def make_step(size: int = 128, **_):
    """A zero-argument callable: one reference training step (``model.optimize_parameters()``) on a
    fixed random (1, 3, S, S) pair in [-1, 1], no data loading (``benchmarks/benchmark.py --method
    pix2pix --torch``). It returns the step's losses as Python floats; ``.model`` is the model."""
    model = make_model(size)
    a, b = (torch.rand(1, 3, size, size) * 2 - 1 for _ in range(2))
    model.set_input({"A": a, "B": b, "A_paths": ["random"], "B_paths": ["random"]})

    def step() -> dict:
        model.optimize_parameters()
        return {name: getattr(model, "loss_" + name).detach().item() for name in model.loss_names}

    step.model = model
    return step


class AlignedDataset:
    """The reference's ``aligned`` dataset mode (``data/aligned_dataset.py``), written here, for a
    DataLoader: items are ``{"A", "B", "A_paths", "B_paths"}`` as ``Pix2PixModel.set_input`` takes them."""

    def __init__(self, folder: str, load_size: int, crop_size: int, names=None):
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                            and (names is None or p.name in names))
        self.load, self.crop = load_size, crop_size

    def __len__(self):
        return len(self.paths)

    def _transform(self, image, x, y, flip):
        image = image.resize((self.load, self.load), Image.BICUBIC).crop((x, y, x + self.crop, y + self.crop))
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (t - 0.5) / 0.5

    def __getitem__(self, i):
        ab = Image.open(self.paths[i]).convert("RGB")
        w, h = ab.size
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        x, y = (random.randint(0, self.load - self.crop) for _ in range(2))
        flip = random.random() > 0.5
        a, b = (self._transform(v, x, y, flip) for v in (a, b))
        return {"A": a, "B": b, "A_paths": str(self.paths[i]), "B_paths": str(self.paths[i])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder of A|B image files")
    p.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"))
    p.add_argument("--size", type=int, default=128, choices=sorted(NET_G),
                   help="crop size (unet_128 for 128, unet_256 for 256)")
    p.add_argument("--load-size", type=int, default=143)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--num-threads", type=int, default=4, help="DataLoader workers (the reference's --num_threads)")
    p.add_argument("--train-names", help="a text file of the file names to train on (default: all)")
    p.add_argument("--predict", nargs=2, metavar=("IN_NPZ", "OUT_NPZ"),
                   help="after training, translate IN_NPZ's uint8 'inputs' (N, H, W, 3) into OUT_NPZ's 'outputs', "
                        "as the reference's test.py does by default (no --eval: batch statistics, dropout on)")
    args = p.parse_args(argv)
    model = make_model(args.size, args.direction)
    random.seed(0)
    names = set(Path(args.train_names).read_text().split()) if args.train_names else None
    dataset = AlignedDataset(args.data, args.load_size, args.size, names)
    print(f"training on {len(dataset)} pairs")
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=True, num_workers=args.num_threads)

    def batches():
        while True:
            yield from loader

    with_data, bare = [], []
    start_all = time.perf_counter()
    it = batches()
    for i in range(args.warmup + args.iterations):
        start = time.perf_counter()
        data = next(it)
        step_start = time.perf_counter()
        model.set_input(data)
        model.optimize_parameters()
        end = time.perf_counter()
        if i >= args.warmup:
            with_data.append(end - start)
            bare.append(end - step_start)
    total = time.perf_counter() - start_all
    print(f"PyTorch reference pix2pix (its Pix2PixModel, {REFERENCE}), {args.size} px, {torch.get_num_threads()} "
          f"threads, {args.num_threads} loader workers, {args.iterations} timed iterations:")
    print(f"  with data: mean {statistics.mean(with_data):.3f} s/it (median {statistics.median(with_data):.3f})")
    print(f"  bare step: mean {statistics.mean(bare):.3f} s/it (median {statistics.median(bare):.3f})")
    print(f"  wall {total:.1f} s for {args.warmup + args.iterations} iterations incl. warm-up; "
          f"2,000 iterations at the mean with data: {2000 * statistics.mean(with_data):.0f} s")
    if args.predict:
        inputs = np.load(args.predict[0])["inputs"]
        x = torch.from_numpy(inputs.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
        out = []
        for i in range(len(x)):  # the input as both halves, so set_input takes it as real_A in either direction
            model.set_input({"A": x[i: i + 1], "B": x[i: i + 1], "A_paths": [f"{i}"], "B_paths": [f"{i}"]})
            model.test()  # forward() under no_grad, as test.py calls it
            out.append(model.fake_B)
        out = torch.cat(out).permute(0, 2, 3, 1).numpy()
        np.savez(args.predict[1], outputs=np.clip(np.round((out + 1.0) * 127.5), 0, 255).astype(np.uint8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
