"""Lockstep: our training steps against the reference implementations' own code.

CycleGAN and pix2pix against junyanz/pytorch-CycleGAN-and-pix2pix's ``CycleGANModel`` and
``Pix2PixModel``, StarGAN against yunjey/stargan's ``Generator``, ``Discriminator`` and the
update code of ``solver.py``, read from ``../shared/peers`` (never copied here). Both sides
start from the reference's initial weights (mapped by ``export.torch_import``), take the same
batches with every random element aligned (no image pool, no dropout, the same StarGAN
targets and gradient-penalty weights), and run the same optimizer steps: every logged loss
must agree at every step (relative 1e-4) and every weight after them (1e-3 of the weight's
update, or of one Adam step, the learning rate, where that is larger), in float64 on the CPU
(``PRECISION``, below). A failure names the first step and loss, or the tensor, that diverges.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tf_translate import registry
from tf_translate.export import torch_import
from tf_translate.nn.layers import ImagePool
from tf_translate.training import trainer

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
STEPS = 5
# float64 on both sides: in float32 the two frameworks' gradients differ by rounding (2e-4 of
# the largest with TF's oneDNN kernels on an AVX-512 CPU, 3e-6 without), which Adam's first
# steps blow up wherever a weight's gradient is near zero (a bias before a norm, a kernel
# fed by a dead channel): the losses part by 6e-4 at step 3 (CycleGAN). LOCKSTEP_PRECISION=float32
# runs the same comparisons in float32.
PRECISION = os.environ.get("LOCKSTEP_PRECISION", "float64")
LOSS_TOLERANCE, WEIGHT_TOLERANCE = 1e-4, 1e-3


def peer_modules(folder: str, *names: str):
    """The reference's modules ``names``, imported from ``../shared/peers/<folder>``; skips
    without torch or the folder."""
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[test]' brings it)")
    root = PEERS / folder
    if not root.is_dir():
        pytest.skip(f"{root} is absent: the reference implementations lie beside the project, not in it")
    if "torchvision" not in sys.modules:  # solver.py imports save_image, which no update uses
        stub = types.ModuleType("torchvision")
        stub.utils = types.SimpleNamespace(save_image=None)
        sys.modules.update({"torchvision": stub, "torchvision.utils": stub.utils})
    sys.path.insert(0, str(root))
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(root))


def nchw(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def start_from(nets: dict, modules: dict, *more) -> dict:
    """Our ``nets`` (role -> (net, plan)) set to the reference's ``modules`` (role -> module),
    those and ``more`` of its modules in float64 when the comparison runs in it (their
    optimizers keep the same parameters); returns copies of our nets as they start."""
    if PRECISION == "float64":
        for module in (*modules.values(), *more):
            module.double()
    for role, (net, plan) in nets.items():
        load(net, plan, modules[role], f"the reference's {role}")
    return {role: keras_clone(net) for role, (net, _) in nets.items()}


def state(module) -> dict:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def load(net, plan, module, label: str):
    """Our ``net`` set to the reference ``module``'s weights."""
    torch_import.assign(net, plan, state(module), label)


def compare_losses(step: int, ours: dict, reference: dict, worst: list):
    """Every loss of the reference's at this step against ours; appends the largest relative
    difference to ``worst``."""
    for name, want in reference.items():
        got = float(ours[name])
        difference = abs(got - want) / max(abs(want), 1e-3)
        assert difference <= LOSS_TOLERANCE, (
            f"step {step + 1}: loss {name} diverges: ours {got:.7g}, the reference's {want:.7g}")
        worst.append(difference)


def report(method: str, losses: list, weights: tuple):
    """The largest differences, printed (pytest -s shows them)."""
    print(f"\nlockstep {method} ({PRECISION}, {STEPS} steps): largest relative difference of a loss "
          f"{max(losses):.1e}, of a weight {weights[0]:.1e} of its update ({weights[1]})")


def compare_weights(nets: dict, references: dict, initial: dict, lr: float) -> tuple[float, str]:
    """Every mapped weight of our ``nets`` (role -> (net, plan)) against the reference's modules
    after the steps; returns the largest difference relative to the weight's update, and where."""
    worst = (0.0, "")
    for role, (net, plan) in nets.items():
        expected = keras_clone(net)
        load(expected, plan, references[role], f"the reference's {role}")
        for layer in net.layers:
            for got, want, start, variable in zip(layer.get_weights(), expected.get_layer(layer.name).get_weights(),
                                                  initial[role].get_layer(layer.name).get_weights(), layer.weights):
                if "moving_variance" in variable.path:  # PyTorch's running variance is unbiased (n - 1)
                    continue
                # a weight's update, at least one step of Adam (which moves a weight by about lr)
                scale = max(float(np.abs(want - start).max()), lr)
                difference = float(np.abs(got - want).max()) / scale
                assert difference <= WEIGHT_TOLERANCE, (
                    f"after {STEPS} steps: {role} {variable.path} differs from the reference's by {difference:.2e} "
                    f"of its update")
                worst = max(worst, (difference, f"{role} {variable.path}"))
    return worst


def keras_clone(net):
    import keras

    copy = keras.models.clone_model(net)
    copy.set_weights(net.get_weights())
    return copy


def our_model(method: str, tmp_path, size: int, data=None, train=None, **model):
    """Our model of ``method`` at ``size`` px, a constant learning rate over the steps."""
    cfg = tiny_config(method, tmp_path, None, model=model, data={"load_size": size, "crop_size": size, **(data or {})},
                      train={"epochs": 100, "decay_epochs": 100, **(train or {})})
    return trainer.build_model(cfg, registry.get(method), steps_per_epoch=100, precision=PRECISION)


def our_step(model, batch) -> dict:
    """One training step's losses (the trackers reset: this step's values, not means)."""
    for tracker in model.trackers.values():
        tracker.reset_state()
    return {k: float(v) for k, v in model.train_step(batch).items()}


def options(**more):
    """The reference's options (train.py's fields its model classes read), tiny networks."""
    return types.SimpleNamespace(**{
        "isTrain": True, "gpu_ids": [], "name": "lockstep", "preprocess": "resize_and_crop", "input_nc": 3,
        "output_nc": 3, "ngf": 4, "ndf": 4, "netD": "basic", "n_layers_D": 3, "no_dropout": True,
        "init_type": "normal", "init_gain": 0.02, "pool_size": 0, "lr": 2e-4, "beta1": 0.5, "direction": "AtoB",
        "lr_policy": "linear", "epoch_count": 1, "n_epochs": 100, "n_epochs_decay": 100, "continue_train": False,
        "load_iter": 0, "epoch": "latest", "verbose": False, **more})


def batches(n: int, shape, seed: int):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, shape).astype(PRECISION) for _ in range(n)]


def run_model_class(method: str, reference, model, nets: dict, modules: dict, size: int, seed: int, losses):
    """STEPS of the reference's ``optimize_parameters()`` and of our train step on the same
    (A, B) batches, every loss compared (``losses``: the reference's logged losses as ours),
    then every weight."""
    initial = start_from(nets, modules, reference.criterionGAN)
    worst = []
    pairs = zip(batches(STEPS, (1, size, size, 3), seed), batches(STEPS, (1, size, size, 3), seed + 1))
    for step, (a, b) in enumerate(pairs):
        reference.set_input({"A": nchw(a), "B": nchw(b), "A_paths": ["a"], "B_paths": ["b"]})
        reference.optimize_parameters()
        ours = our_step(model, (tf.constant(a), tf.constant(b)))
        compare_losses(step, ours, losses(reference.get_current_losses()), worst)
    report(method, worst, compare_weights(nets, modules, initial, lr=reference.opt.lr))


def test_cyclegan_trains_in_lockstep_with_the_reference(tmp_path):
    (cycle_gan_model,) = peer_modules("pytorch-CycleGAN-and-pix2pix", "models.cycle_gan_model")
    import torch

    torch.manual_seed(0)
    reference = cycle_gan_model.CycleGANModel(options(
        checkpoints_dir=str(tmp_path), netG="resnet_6blocks", norm="instance", gan_mode="lsgan", lambda_A=10.0,
        lambda_B=10.0, lambda_identity=0.5))
    model = our_model("cyclegan", tmp_path, 32, filters=4, n_blocks=6, disc_filters=4, pool_size=0, gan_loss="lsgan",
                      lambda_cycle=10.0, lambda_identity=0.5)
    # netG_A: A -> B is our G, netD_A judges B (our D_Y); netG_B and netD_B are F and D_X
    nets = {"G": (model.G, torch_import.resnet_plan(6, False)), "F": (model.F, torch_import.resnet_plan(6, False)),
            "D_Y": (model.D_Y, torch_import.patch_plan(3)), "D_X": (model.D_X, torch_import.patch_plan(3))}
    modules = {"G": reference.netG_A, "F": reference.netG_B, "D_Y": reference.netD_A, "D_X": reference.netD_B}
    run_model_class("cyclegan", reference, model, nets, modules, 32, 1, lambda r: {
        "G_adv": r["G_A"] + r["G_B"], "cycle": (r["cycle_A"] + r["cycle_B"]) / 10.0,
        "identity": (r["idt_A"] + r["idt_B"]) / 5.0, "D_Y": r["D_A"], "D_X": r["D_B"],
        "G_total": sum(r[k] for k in ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"))})


def test_pix2pix_trains_in_lockstep_with_the_reference(tmp_path):
    (pix2pix_model,) = peer_modules("pytorch-CycleGAN-and-pix2pix", "models.pix2pix_model")
    import torch

    torch.manual_seed(0)
    reference = pix2pix_model.Pix2PixModel(options(
        checkpoints_dir=str(tmp_path), netG="unet_128", norm="batch", gan_mode="vanilla", lambda_L1=100.0))
    model = our_model("pix2pix", tmp_path, 128, filters=4, disc_filters=4, norm="batch", dropout=0.0, depth=7,
                      frames_per_image=2, residual="off", generator="unet", gan_loss="vanilla", lambda_l1=100.0)
    nets = {"G": (model.G, torch_import.unet_plan(7)), "D": (model.D, torch_import.patch_plan(3))}
    modules = {"G": reference.netG, "D": reference.netD}
    run_model_class("pix2pix", reference, model, nets, modules, 128, 3, lambda r: {
        "G_adv": r["G_GAN"], "L1": r["G_L1"] / 100.0, "D": 0.5 * (r["D_real"] + r["D_fake"]),
        "G_total": r["G_GAN"] + r["G_L1"]})


def stargan_generator_plan(n_blocks: int) -> list:
    """yunjey/stargan's Generator ``main``: conv, IN, ReLU; twice conv, IN, ReLU; residual
    blocks (``main``: conv, IN, ReLU, conv, IN); twice transposed conv, IN, ReLU; conv, tanh."""
    Mapped = torch_import.Mapped
    plan = [Mapped("main.0", "c7s1_conv", "conv"), Mapped("main.1", "c7s1_norm", "norm")]
    for i in range(2):
        plan += [Mapped(f"main.{3 + 3 * i}", f"d{i + 1}_conv", "conv"),
                 Mapped(f"main.{4 + 3 * i}", f"d{i + 1}_norm", "norm")]
    for i in range(n_blocks):
        block = f"main.{9 + i}.main"
        plan += [Mapped(f"{block}.0", f"r{i + 1}_a_conv", "conv"), Mapped(f"{block}.1", f"r{i + 1}_a_norm", "norm"),
                 Mapped(f"{block}.3", f"r{i + 1}_b_conv", "conv"), Mapped(f"{block}.4", f"r{i + 1}_b_norm", "norm")]
    up = 9 + n_blocks
    for i in range(2):
        plan += [Mapped(f"main.{up + 3 * i}", f"u{i + 1}_deconv", "deconv"),
                 Mapped(f"main.{up + 1 + 3 * i}", f"u{i + 1}_norm", "norm")]
    return plan + [Mapped(f"main.{up + 6}", "out_conv", "conv")]


def stargan_discriminator_plan(n_layers: int) -> list:
    """Its Discriminator: ``main`` (conv, LeakyReLU per layer), ``conv1`` (D_src), ``conv2`` (D_cls)."""
    Mapped = torch_import.Mapped
    return [*(Mapped(f"main.{2 * i}", f"c{i + 1}_conv", "conv") for i in range(n_layers)),
            Mapped("conv1", "D_src", "conv"), Mapped("conv2", "D_cls", "conv")]


@pytest.mark.parametrize("dataset", ["RaFD", "CelebA"])
def test_stargan_trains_in_lockstep_with_the_reference(tmp_path, dataset):
    """solver.py's D update every step and G's after every n_critic-th, RaFD's softmax domains
    or CelebA's attributes."""
    model_py, solver_py = peer_modules("stargan", "model", "solver")
    import torch

    n_domains, size, n_blocks, d_layers, n_critic, lambdas = 3, 32, 2, 3, 2, {"cls": 1.0, "rec": 10.0, "gp": 10.0}
    torch.manual_seed(0)
    G, D = model_py.Generator(8, n_domains, n_blocks), model_py.Discriminator(size, 8, n_domains, d_layers)
    g_optimizer = torch.optim.Adam(G.parameters(), 1e-4, [0.5, 0.999])
    d_optimizer = torch.optim.Adam(D.parameters(), 1e-4, [0.5, 0.999])
    solver = solver_py.Solver.__new__(solver_py.Solver)  # its loss functions, without data loaders
    solver.device = torch.device("cpu")
    model = our_model("stargan", tmp_path, size, data={"domains": ("a", "b", "c")}, train={"lr": 1e-4},
                      filters=8, n_blocks=n_blocks, disc_filters=8, disc_layers=d_layers, n_critic=n_critic,
                      lambda_cls=lambdas["cls"], lambda_rec=lambdas["rec"], lambda_gp=lambdas["gp"],
                      attrs=("a", "b", "c") if dataset == "CelebA" else ())
    assert model.multi_label == (dataset == "CelebA")
    nets = {"G": (model.G, stargan_generator_plan(n_blocks)), "D": (model.D, stargan_discriminator_plan(d_layers))}
    modules = {"G": G, "D": D}
    initial = start_from(nets, modules)

    def classification(logit, target):
        return solver.classification_loss(logit, target if dataset == "CelebA" else target.argmax(1), dataset)

    rng = np.random.default_rng(5)
    worst = []
    for i in range(STEPS):
        x = rng.uniform(-1, 1, (2, size, size, 3)).astype(PRECISION)
        if dataset == "CelebA":
            c_org = rng.integers(0, 2, (2, n_domains)).astype(PRECISION)
            c_trg = c_org[rng.permutation(2)]
        else:
            c_org, c_trg = (np.eye(n_domains, dtype=PRECISION)[rng.integers(0, n_domains, 2)] for _ in range(2))
        alpha = rng.uniform(size=2).astype(PRECISION)
        x_real, label_org, label_trg = nchw(x), torch.from_numpy(c_org), torch.from_numpy(c_trg)
        # solver.py's train(), its update code as written there
        out_src, out_cls = D(x_real)
        d_loss_real = -torch.mean(out_src)
        d_loss_cls = classification(out_cls, label_org)
        x_fake = G(x_real, label_trg)
        out_src, out_cls = D(x_fake.detach())
        d_loss_fake = torch.mean(out_src)
        mix = torch.from_numpy(alpha).view(2, 1, 1, 1)
        x_hat = (mix * x_real.data + (1 - mix) * x_fake.data).requires_grad_(True)
        out_src, _ = D(x_hat)
        d_loss_gp = solver.gradient_penalty(out_src, x_hat)
        d_loss = d_loss_real + d_loss_fake + lambdas["cls"] * d_loss_cls + lambdas["gp"] * d_loss_gp
        g_optimizer.zero_grad(), d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        want = {"D_total": d_loss.item(), "D_adv": d_loss_real.item() + d_loss_fake.item(), "D_cls": d_loss_cls.item(),
                "gp": d_loss_gp.item()}
        if (i + 1) % n_critic == 0:
            x_fake = G(x_real, label_trg)
            out_src, out_cls = D(x_fake)
            g_loss_fake = -torch.mean(out_src)
            g_loss_cls = classification(out_cls, label_trg)
            x_reconst = G(x_fake, label_org)
            g_loss_rec = torch.mean(torch.abs(x_real - x_reconst))
            g_loss = g_loss_fake + lambdas["rec"] * g_loss_rec + lambdas["cls"] * g_loss_cls
            g_optimizer.zero_grad(), d_optimizer.zero_grad()
            g_loss.backward()
            g_optimizer.step()
            want.update({"G_total": g_loss.item(), "G_adv": g_loss_fake.item(), "G_cls": g_loss_cls.item(),
                         "rec": g_loss_rec.item()})
        # the reference's draws in place of ours
        model.target_labels = lambda labels, c=c_trg: tf.constant(c)
        model.mixing_weights = lambda images, a=alpha: tf.constant(a)
        compare_losses(i, our_step(model, (tf.constant(x), tf.constant(c_org))), want, worst)
    assert int(model.g_optimizer.iterations.numpy()) == STEPS // n_critic
    report(f"stargan {dataset}", worst, compare_weights(nets, modules, initial, lr=1e-4))


def test_linear_decay_is_the_references_learning_rate_rule():
    """Our LinearDecay against networks.get_scheduler's 'linear' rule, epoch by epoch."""
    (networks,) = peer_modules("pytorch-CycleGAN-and-pix2pix", "models.networks")
    import torch

    from tf_translate.methods.base import LinearDecay

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=2e-4)
    scheduler = networks.get_scheduler(optimizer, options(n_epochs=3, n_epochs_decay=4))
    ours = LinearDecay(2e-4, epochs=3, decay_epochs=4, steps_per_epoch=10)
    for epoch in range(3 + 4):  # (after them the reference's rate goes negative, ours stays 0)
        assert float(ours(epoch * 10 + 5)) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-6, abs=1e-12), epoch
        optimizer.step()
        scheduler.step()


def test_image_pool_makes_the_references_choices_in_distribution():
    """Their random streams cannot be aligned: with the same pool size and 50 % rule, ours
    and util/image_pool.py return the incoming image, and older ones at the same ages, as
    often (a shift of one image in the pool's filling or a 25 % rule would show)."""
    (image_pool,) = peer_modules("pytorch-CycleGAN-and-pix2pix", "util.image_pool")
    import random

    import torch

    size, queries, runs = 5, 60, 40

    def ages(query) -> np.ndarray:
        """Per query, how many queries ago the returned image came in (0: the incoming one)."""
        out = []
        for k in range(queries):
            out.append(k - int(query(k)))
        return np.array(out)

    ours, theirs = [], []
    for run in range(runs):
        pool = ImagePool(size, (1, 1, 1), seed=run)
        ours.append(ages(lambda k, pool=pool: pool.query(tf.fill([1, 1, 1, 1], float(k)), k).numpy()[0, 0, 0, 0]))
        random.seed(run)
        reference = image_pool.ImagePool(size)
        theirs.append(ages(lambda k, pool=reference: pool.query(torch.full((1, 1, 1, 1), float(k))).item()))
    ours, theirs = np.array(ours), np.array(theirs)
    # filling: every image comes straight back in both
    assert (ours[:, :size] == 0).all() and (theirs[:, :size] == 0).all()
    later_ours, later_theirs = ours[:, size:].ravel(), theirs[:, size:].ravel()
    n = later_ours.size
    for label, a, b in (("fresh", later_ours == 0, later_theirs == 0),
                        ("1-5 queries old", (later_ours >= 1) & (later_ours <= 5),
                         (later_theirs >= 1) & (later_theirs <= 5)),
                        ("older", later_ours > 5, later_theirs > 5)):
        p, q = a.mean(), b.mean()
        sigma = np.sqrt((p * (1 - p) + q * (1 - q)) / n)
        assert abs(p - q) <= 4 * sigma + 1e-9, f"{label}: ours {p:.3f}, the reference's {q:.3f} (n={n})"
    assert abs(later_ours.mean() - later_theirs.mean()) <= 4 * np.sqrt((later_ours.var() + later_theirs.var()) / n)
