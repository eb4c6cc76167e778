#!/usr/bin/env python
"""One CycleGAN training step of the PyTorch reference implementation, for a same-machine timing.

The timed step is the reference's own code: ``CycleGANModel.optimize_parameters()`` of
junyanz/pytorch-CycleGAN-and-pix2pix (``models/cycle_gan_model.py``, ``models/networks.py``,
``util/image_pool.py``), imported unmodified from ``../shared/peers/pytorch-CycleGAN-and-pix2pix``
beside the project (never copied into it; needs ``torch``). Options are its ``train.py``
defaults for CycleGAN: ``resnet_6blocks`` or ``resnet_9blocks`` (``--n-blocks``), ngf = ndf = 64,
``basic`` PatchGAN, instance norm, no dropout, ``normal`` init 0.02, ``lsgan``, pool 50,
``lambda_A = lambda_B = 10``, ``lambda_identity 0.5``, Adam 2e-4, betas (0.5, 0.999).

Inputs are one fixed pair of random (1, 3, S, S) float32 images in [-1, 1] (no data loading),
batch 1, on the CPU, so a call returns only after the step has finished.

Usage:
    python benchmarks/torch_cyclegan.py [--size 128] [--n-blocks 6] [--steps 10] [--warmup 3]
        [--threads N]   # default: torch.set_num_threads(os.cpu_count())

or, from Python, ``step = make_step(size=128)`` and then ``step()`` per training step.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import types

from peers import REFERENCE, load_or_exit

torch, cycle_gan_model = load_or_exit("cycle_gan_model", "torch_cyclegan.py", __name__ == "__main__")


def options(n_blocks: int = 6) -> types.SimpleNamespace:
    """The fields ``CycleGANModel.__init__`` reads, at the reference's train.py defaults for CycleGAN."""
    if n_blocks not in (6, 9):
        raise ValueError(f"the reference has resnet_6blocks and resnet_9blocks only, not {n_blocks} blocks")
    return types.SimpleNamespace(
        isTrain=True, gpu_ids=[], checkpoints_dir=tempfile.gettempdir(), name="torch_cyclegan_benchmark",
        preprocess="resize_and_crop", direction="AtoB", input_nc=3, output_nc=3, ngf=64, ndf=64,
        netG=f"resnet_{n_blocks}blocks", netD="basic", n_layers_D=3, norm="instance", no_dropout=True,
        init_type="normal", init_gain=0.02, gan_mode="lsgan", pool_size=50, lambda_A=10.0, lambda_B=10.0,
        lambda_identity=0.5, lr=2e-4, beta1=0.5)  # checkpoints_dir: never written (no save_networks)


def make_step(size: int = 128, n_blocks: int = 6, threads: int | None = None, seed: int = 0):
    """A zero-argument callable doing one reference training step (``model.optimize_parameters()``).

    It returns the step's losses as Python floats, after the step has finished (CPU, synchronous).
    ``threads`` sets ``torch.set_num_threads`` (default ``os.cpu_count()``; process-wide). ``seed``
    seeds torch (weights, inputs) and Python's ``random`` (the reference's ImagePool draws from it).
    The callable has ``.model`` (the reference's CycleGANModel) and ``.nets`` (its four networks).
    """
    opt = options(n_blocks)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    random.seed(seed)
    with contextlib.redirect_stdout(sys.stderr):  # networks.init_weights prints "initialize network with normal"
        model = cycle_gan_model.CycleGANModel(opt)
    gen = torch.Generator().manual_seed(seed + 1)
    real_A = torch.rand((1, 3, size, size), generator=gen) * 2 - 1
    real_B = torch.rand((1, 3, size, size), generator=gen) * 2 - 1
    model.set_input({"A": real_A, "B": real_B, "A_paths": ["random_A"], "B_paths": ["random_B"]})

    def step() -> dict:
        model.optimize_parameters()
        return {name: getattr(model, "loss_" + name).detach().item() for name in ["G", *model.loss_names]}

    step.model = model
    step.nets = {"G_A": model.netG_A, "G_B": model.netG_B, "D_A": model.netD_A, "D_B": model.netD_B}
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=int, default=128, help="square image size")
    p.add_argument("--n-blocks", type=int, default=6, choices=(6, 9), help="generator residual blocks")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: os.cpu_count())")
    p.add_argument("--seed", type=int, default=0, help="weights, inputs and image-pool draws")
    args = p.parse_args(argv)

    step = make_step(args.size, args.n_blocks, args.threads, args.seed)
    n = {k: sum(q.numel() for q in v.parameters()) for k, v in step.nets.items()}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}, "
          f"ResNet-{args.n_blocks}, batch 1, float32; the reference's CycleGANModel from {REFERENCE}")
    print(f"parameters: generator {n['G_A']:,}, discriminator {n['D_A']:,}, "
          f"total {sum(n.values()):,} (G_A, G_B, D_A, D_B)")
    for _ in range(args.warmup):
        step()
    times, cpu, losses = [], [], {}
    for _ in range(args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        losses = step()
        cpu.append(time.process_time() - start_cpu)
        times.append(time.perf_counter() - start)
    print(f"{args.steps} steps after {args.warmup} warm-up: median {statistics.median(times):.3f} s/step, "
          f"min {min(times):.3f}, max {max(times):.3f}, cores busy {sum(cpu) / sum(times):.2f}, "
          f"torch.get_num_threads() {torch.get_num_threads()}")
    print("last losses: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
