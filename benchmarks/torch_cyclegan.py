#!/usr/bin/env python
"""One CycleGAN training step of the PyTorch reference implementation, for a same-machine timing.

Re-implements (written here, not copied) the training step of the reference implementation
junyanz/pytorch-CycleGAN-and-pix2pix (``models/cycle_gan_model.py``, ``models/networks.py``,
``util/image_pool.py``) with its ``train.py`` defaults for CycleGAN:

- generator ``resnet_6blocks`` (ResnetGenerator: ngf 64, InstanceNorm2d(affine=False,
  track_running_stats=False), no dropout, reflect padding, conv biases on since the norm is
  InstanceNorm; 7x7 stem, 2 stride-2 3x3 downsamplings, 6 residual blocks, 2 ConvTranspose2d
  3x3 stride 2 padding 1 output_padding 1, 7x7 head, Tanh): 7,841,411 parameters;
- discriminator ``basic`` (NLayerDiscriminator, 70x70 PatchGAN: ndf 64, n_layers 3,
  InstanceNorm, LeakyReLU 0.2): 2,764,737 parameters;
- init ``normal`` with gain 0.02 (conv / conv-transpose weights N(0, 0.02), biases 0);
- ``gan_mode lsgan`` (MSELoss against 1/0 targets), cycle L1 with ``lambda_A = lambda_B = 10``,
  identity L1 with ``lambda_identity 0.5``; ``pool_size 50`` ImagePool per direction;
- Adam lr 2e-4, betas (0.5, 0.999), one optimizer for both generators, one for both
  discriminators;
- ``optimize_parameters`` in the reference's order: forward, D frozen, G zero_grad / backward /
  step, D unfrozen, D zero_grad, backward_D_A (pooled fake_B), backward_D_B (pooled fake_A), step.

Inputs are one fixed pair of random (1, 3, S, S) float32 images in [-1, 1] (no data loading),
batch 1, on the CPU, so a call returns only after the step has finished.

Usage:
    python benchmarks/torch_cyclegan.py [--size 128] [--n-blocks 6] [--steps 10] [--warmup 3]
        [--threads N]   # default: torch.set_num_threads(os.cpu_count())

or, from Python, ``step = make_step(size=128)`` and then ``step()`` per training step.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import time

import torch
from torch import nn


def _norm(channels: int) -> nn.Module:
    # networks.get_norm_layer("instance")
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True), _norm(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 6):
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=True),
                 _norm(ngf), nn.ReLU(True)]
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=True),
                      _norm(ngf * mult * 2), nn.ReLU(True)]
        mult = 2 ** n_downsampling
        model += [ResnetBlock(ngf * mult) for _ in range(n_blocks)]
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1,
                                         output_padding=1, bias=True),
                      _norm(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        kw, padw = 4, 1
        sequence = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2 ** n, 8)
            sequence += [nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=True),
                         _norm(ndf * nf_mult), nn.LeakyReLU(0.2, True)]
        nf_mult_prev, nf_mult = nf_mult, min(2 ** n_layers, 8)
        sequence += [nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=True),
                     _norm(ndf * nf_mult), nn.LeakyReLU(0.2, True)]
        sequence += [nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*sequence)

    def forward(self, x):
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """networks.init_weights(init_type="normal", init_gain=0.02)."""
    def init_func(m):
        name = m.__class__.__name__
        if hasattr(m, "weight") and ("Conv" in name or "Linear" in name):
            nn.init.normal_(m.weight.data, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif "BatchNorm2d" in name:  # not used with InstanceNorm; kept as in the reference
            nn.init.normal_(m.weight.data, 1.0, gain)
            nn.init.constant_(m.bias.data, 0.0)
    net.apply(init_func)
    return net


class GANLoss(nn.Module):
    """gan_mode "lsgan": MSE against a target tensor of 1.0 (real) or 0.0 (fake) shaped like the prediction."""

    def __init__(self):
        super().__init__()
        self.register_buffer("real_label", torch.tensor(1.0))
        self.register_buffer("fake_label", torch.tensor(0.0))
        self.loss = nn.MSELoss()

    def forward(self, prediction, target_is_real: bool):
        target = (self.real_label if target_is_real else self.fake_label).expand_as(prediction)
        return self.loss(prediction, target)


class ImagePool:
    """util.image_pool.ImagePool: fill up to pool_size, then with p = 0.5 return a stored image and store the new one."""

    def __init__(self, pool_size: int = 50, rng: random.Random | None = None):
        self.pool_size, self.num_imgs, self.images = pool_size, 0, []
        self.rng = rng or random.Random()

    def query(self, images):
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if self.num_imgs < self.pool_size:
                self.num_imgs += 1
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.pool_size - 1)
                tmp = self.images[i].clone()
                self.images[i] = image
                out.append(tmp)
            else:
                out.append(image)
        return torch.cat(out, 0)


def set_requires_grad(nets, requires_grad: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad = requires_grad


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def make_step(size: int = 128, n_blocks: int = 6, threads: int | None = None, seed: int = 0):
    """A zero-argument callable doing one full CycleGAN training step (``optimize_parameters``).

    It returns the step's losses as Python floats, after the step has finished (CPU, synchronous).
    ``threads`` sets ``torch.set_num_threads`` (default ``os.cpu_count()``; process-wide).
    The callable has ``.nets`` (the four networks) for inspection.
    """
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    lambda_A = lambda_B = 10.0
    lambda_idt = 0.5
    netG_A = init_weights(ResnetGenerator(n_blocks=n_blocks))
    netG_B = init_weights(ResnetGenerator(n_blocks=n_blocks))
    netD_A = init_weights(NLayerDiscriminator())
    netD_B = init_weights(NLayerDiscriminator())
    for net in (netG_A, netG_B, netD_A, netD_B):
        net.train()
    criterionGAN, criterionCycle, criterionIdt = GANLoss(), nn.L1Loss(), nn.L1Loss()
    fake_A_pool, fake_B_pool = ImagePool(50, rng), ImagePool(50, rng)
    optimizer_G = torch.optim.Adam(itertools.chain(netG_A.parameters(), netG_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    optimizer_D = torch.optim.Adam(itertools.chain(netD_A.parameters(), netD_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed + 1)
    real_A = torch.rand((1, 3, size, size), generator=gen) * 2 - 1
    real_B = torch.rand((1, 3, size, size), generator=gen) * 2 - 1

    def backward_D_basic(netD, real, fake):
        loss_D_real = criterionGAN(netD(real), True)
        loss_D_fake = criterionGAN(netD(fake.detach()), False)
        loss_D = (loss_D_real + loss_D_fake) * 0.5
        loss_D.backward()
        return loss_D

    def step() -> dict:
        # forward()
        fake_B = netG_A(real_A)
        rec_A = netG_B(fake_B)
        fake_A = netG_B(real_B)
        rec_B = netG_A(fake_A)
        # G_A and G_B
        set_requires_grad([netD_A, netD_B], False)
        optimizer_G.zero_grad()
        idt_A = netG_A(real_B)
        loss_idt_A = criterionIdt(idt_A, real_B) * lambda_B * lambda_idt
        idt_B = netG_B(real_A)
        loss_idt_B = criterionIdt(idt_B, real_A) * lambda_A * lambda_idt
        loss_G_A = criterionGAN(netD_A(fake_B), True)
        loss_G_B = criterionGAN(netD_B(fake_A), True)
        loss_cycle_A = criterionCycle(rec_A, real_A) * lambda_A
        loss_cycle_B = criterionCycle(rec_B, real_B) * lambda_B
        loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
        loss_G.backward()
        optimizer_G.step()
        # D_A and D_B
        set_requires_grad([netD_A, netD_B], True)
        optimizer_D.zero_grad()
        loss_D_A = backward_D_basic(netD_A, real_B, fake_B_pool.query(fake_B))
        loss_D_B = backward_D_basic(netD_B, real_A, fake_A_pool.query(fake_A))
        optimizer_D.step()
        return {"G": loss_G.item(), "D_A": loss_D_A.item(), "D_B": loss_D_B.item()}

    step.nets = {"G_A": netG_A, "G_B": netG_B, "D_A": netD_A, "D_B": netD_B}
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=int, default=128, help="square image size")
    p.add_argument("--n-blocks", type=int, default=6, help="generator residual blocks")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: os.cpu_count())")
    p.add_argument("--seed", type=int, default=0, help="weights, inputs and image-pool draws")
    args = p.parse_args(argv)

    step = make_step(args.size, args.n_blocks, args.threads, args.seed)
    n = {k: count_parameters(v) for k, v in step.nets.items()}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}, "
          f"ResNet-{args.n_blocks}, batch 1, float32")
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
