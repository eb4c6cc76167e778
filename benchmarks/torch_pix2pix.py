#!/usr/bin/env python
"""The pix2pix training loop of the PyTorch reference implementation, for a same-machine timing.

Re-implements (written here, not copied) what ``train.py --model pix2pix`` of
junyanz/pytorch-CycleGAN-and-pix2pix runs per iteration, with its defaults:

- data: ``aligned`` mode, each file an A|B pair split in half, ``--preprocess resize_and_crop``
  (both halves resized to ``--load-size`` with PIL bicubic, the same random crop and flip),
  ToTensor + Normalize(0.5, 0.5); a DataLoader with ``--num-threads 4`` workers, shuffled,
  batch 1;
- generator ``unet_128`` (7 levels) or ``unet_256`` (8), ngf 64, BatchNorm2d (the reference's
  pix2pix default ``--norm batch``, so convolutions without bias except the outermost ones),
  dropout 0.5 in the three innermost non-bottleneck blocks, Tanh;
- discriminator ``basic`` (70x70 PatchGAN, ndf 64, n_layers 3, BatchNorm, LeakyReLU 0.2);
- init N(0, 0.02); ``gan_mode vanilla`` (BCEWithLogitsLoss), ``lambda_L1 100``;
  Adam 2e-4, betas (0.5, 0.999);
- ``optimize_parameters``: G forward, D update on (real, detached fake) with the loss halved,
  then G update against the updated D.

The visualiser, HTML pages and loss printing of the reference are not run (they add time
there). Times ``--iterations`` iterations after ``--warmup``: per iteration the wall time from
asking the loader for the next pair to the end of the optimiser steps ("with data"), and the
step alone ("bare").

``make_step(size)`` gives one bare step on random inputs, for ``benchmarks/benchmark.py --method
pix2pix --torch`` (interleaved with ours in one run).

Usage:
    python benchmarks/torch_pix2pix.py --data ../shared/data/people2outline/train --direction BtoA \\
        [--size 128] [--load-size 143] [--iterations 200] [--warmup 5] [--num-threads 4]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image


class UnetBlock(nn.Module):
    """``UnetSkipConnectionBlock``: down, submodule, up; the input concatenated to the output
    except in the outermost block."""

    def __init__(self, outer, inner, input_nc=None, sub=None, outermost=False, innermost=False, dropout=False):
        super().__init__()
        input_nc = input_nc or outer
        self.outermost = outermost
        downconv = nn.Conv2d(input_nc, inner, 4, 2, 1, bias=False)
        if outermost:
            model = [downconv, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            model = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True),
                     nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
        else:
            model = [nn.LeakyReLU(0.2, True), downconv, nn.BatchNorm2d(inner), sub, nn.ReLU(True),
                     nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            model += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def unet(levels: int, ngf: int = 64) -> nn.Module:
    block = UnetBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(levels - 5):
        block = UnetBlock(ngf * 8, ngf * 8, sub=block, dropout=True)
    for outer in (4, 2, 1):
        block = UnetBlock(ngf * outer, ngf * outer * 2, sub=block)
    return UnetBlock(3, ngf, input_nc=3, sub=block, outermost=True)


def patch_discriminator(input_nc: int = 6, ndf: int = 64) -> nn.Module:
    layers = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    for prev, mult, stride in ((1, 2, 2), (2, 4, 2), (4, 8, 1)):
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                   nn.LeakyReLU(0.2, True)]
    return nn.Sequential(*layers, nn.Conv2d(ndf * 8, 1, 4, 1, 1))


def init_normal(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


class AlignedDataset(torch.utils.data.Dataset):
    def __init__(self, folder: str, load_size: int, crop_size: int, b2a: bool, names=None):
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                            and (names is None or p.name in names))
        self.load, self.crop, self.b2a = load_size, crop_size, b2a

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
        return (b, a) if self.b2a else (a, b)


class Pix2PixStep:
    """The reference's networks, optimisers and ``optimize_parameters``; call with (A, B)."""

    def __init__(self, size: int = 128):
        self.G, self.D = init_normal(unet({128: 7, 256: 8}[size])), init_normal(patch_discriminator())
        self.opt_g = torch.optim.Adam(self.G.parameters(), 2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.5, 0.999))
        self.bce = nn.BCEWithLogitsLoss()

    def __call__(self, real_a, real_b):
        G, D, bce = self.G, self.D, self.bce
        fake_b = G(real_a)
        for q in D.parameters():
            q.requires_grad_(True)
        self.opt_d.zero_grad()
        pred_fake, pred_real = D(torch.cat([real_a, fake_b.detach()], 1)), D(torch.cat([real_a, real_b], 1))
        loss_d = 0.5 * (bce(pred_fake, torch.zeros_like(pred_fake)) + bce(pred_real, torch.ones_like(pred_real)))
        loss_d.backward()
        self.opt_d.step()
        for q in D.parameters():
            q.requires_grad_(False)
        self.opt_g.zero_grad()
        pred_fake = D(torch.cat([real_a, fake_b], 1))
        loss_g = bce(pred_fake, torch.ones_like(pred_fake)) + 100.0 * nn.functional.l1_loss(fake_b, real_b)
        loss_g.backward()
        self.opt_g.step()


def make_step(size: int = 128, **_):
    """A zero-argument callable: one reference training step on a fixed random (1, 3, S, S)
    pair in [-1, 1], no data loading (``benchmarks/benchmark.py --method pix2pix --torch``)."""
    torch.manual_seed(0)
    step = Pix2PixStep(size)
    a, b = (torch.rand(1, 3, size, size) * 2 - 1 for _ in range(2))
    return lambda: step(a, b)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder of A|B image files")
    p.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"))
    p.add_argument("--size", type=int, default=128, help="crop size (unet_128 for 128, unet_256 for 256)")
    p.add_argument("--load-size", type=int, default=143)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--num-threads", type=int, default=4, help="DataLoader workers (the reference's --num_threads)")
    p.add_argument("--train-names", help="a text file of the file names to train on (default: all)")
    p.add_argument("--predict", nargs=2, metavar=("IN_NPZ", "OUT_NPZ"),
                   help="after training, translate IN_NPZ's uint8 'inputs' (N, H, W, 3) into OUT_NPZ's 'outputs', "
                        "as the reference's test.py does by default (no --eval: batch statistics, dropout on)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    random.seed(0)
    train_step = Pix2PixStep(args.size)
    names = set(Path(args.train_names).read_text().split()) if args.train_names else None
    dataset = AlignedDataset(args.data, args.load_size, args.size, args.direction == "BtoA", names)
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
        real_a, real_b = next(it)
        step_start = time.perf_counter()
        train_step(real_a, real_b)
        end = time.perf_counter()
        if i >= args.warmup:
            with_data.append(end - start)
            bare.append(end - step_start)
    total = time.perf_counter() - start_all
    print(f"PyTorch reference pix2pix, {args.size} px, {torch.get_num_threads()} threads, "
          f"{args.num_threads} loader workers, {args.iterations} timed iterations:")
    print(f"  with data: mean {statistics.mean(with_data):.3f} s/it (median {statistics.median(with_data):.3f})")
    print(f"  bare step: mean {statistics.mean(bare):.3f} s/it (median {statistics.median(bare):.3f})")
    print(f"  wall {total:.1f} s for {args.warmup + args.iterations} iterations incl. warm-up; "
          f"2,000 iterations at the mean with data: {2000 * statistics.mean(with_data):.0f} s")
    if args.predict:
        inputs = np.load(args.predict[0])["inputs"]
        with torch.no_grad():
            x = torch.from_numpy(inputs.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
            out = torch.cat([train_step.G(x[i: i + 1]) for i in range(len(x))]).permute(0, 2, 3, 1).numpy()
        np.savez(args.predict[1], outputs=np.clip(np.round((out + 1.0) * 127.5), 0, 255).astype(np.uint8))


if __name__ == "__main__":
    main()
