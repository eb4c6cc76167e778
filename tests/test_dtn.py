"""DTN: ternary losses, TV, frozen f, stage 1 (training, resume, reuse), held-out splits, export."""

import dataclasses
import hashlib
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage

import tf_translate
from tests.conftest import tiny_config
from tf_translate import data as tf_data
from tf_translate import registry
from tf_translate.data import transfer
from tf_translate.data.images import DataError
from tf_translate.errors import UsageError
from tf_translate.export import Exported
from tf_translate.methods import dtn
from tf_translate.nn import augment, classifier, losses
from tf_translate.training import trainer


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_ternary_losses_match_numpy():
    rng = np.random.default_rng(0)
    on_fake_s, on_fake_t, on_real_t = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(3))
    # classes: 0 = G(source), 1 = G(target), 2 = real target
    want_d = -log_softmax(on_fake_s)[:, 0] - log_softmax(on_fake_t)[:, 1] - log_softmax(on_real_t)[:, 2]
    want_g = -log_softmax(on_fake_s)[:, 2] - log_softmax(on_fake_t)[:, 2]
    np.testing.assert_allclose(losses.dtn_discriminator_loss(on_fake_s, on_fake_t, on_real_t), want_d, rtol=1e-5)
    np.testing.assert_allclose(losses.dtn_generator_loss(on_fake_s, on_fake_t), want_g, rtol=1e-5)


def test_anisotropic_total_variation_matches_numpy():
    images = np.random.default_rng(1).normal(size=(2, 5, 7, 3)).astype(np.float32)
    want = (np.abs(np.diff(images, axis=1)).sum(axis=(1, 2, 3)) + np.abs(np.diff(images, axis=2)).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(losses.anisotropic_total_variation(images), want, rtol=1e-5)
    assert float(losses.anisotropic_total_variation(np.ones((1, 4, 4, 1)))[0]) == 0.0


def test_mode_seeking_matches_numpy_over_pairs_of_one_class():
    rng = np.random.default_rng(2)
    images, codes = rng.normal(size=(5, 4, 4, 1)).astype(np.float32), rng.normal(size=(5, 1, 1, 3)).astype(np.float32)
    labels = np.array([0, 1, 0, 0, 2])
    want = np.zeros(5)
    for i in range(5):
        js = [j for j in range(5) if j != i and labels[j] == labels[i]]
        if js:
            r = np.mean([np.abs(images[i] - images[j]).mean() / np.abs(codes[i] - codes[j]).mean() for j in js])
            want[i] = 1 / (r + 1e-5)
    got = losses.mode_seeking(images, codes, labels).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[1] == got[4] == 0.0  # alone in their class
    spread = losses.mode_seeking(images * 2, codes, labels).numpy()  # unlike images for unlike codes: lower
    np.testing.assert_allclose(spread[[0, 2, 3]], want[[0, 2, 3]] / 2, rtol=1e-3)


def build(tmp_path, folder, **sections):
    cfg = tiny_config("dtn", tmp_path, str(folder), **sections)
    data = tf_data.load("transfer", cfg)
    cfg = data.complete(cfg)
    return cfg, data, trainer.build_model(cfg, registry.get("dtn"), steps_per_epoch=2)


def snapshot(net):
    return [v.numpy().copy() for v in net.variables]


def test_stage2_step_keeps_f_and_updates_g_and_d(tmp_path, transfer_dir):
    cfg, data, model = build(tmp_path, transfer_dir)
    assert cfg.model.classes == ("0", "1", "2") and model.settings["alpha"] == 5.0
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    frozen, trained = model.classifier.variables, model.g.trainable_variables + model.D.trainable_variables
    before = [v.numpy().copy() for v in frozen + trained]
    for _ in range(2):
        logs = model.train_step(batch)
    assert float(logs["finite"]) == 1.0 and all(np.isfinite(float(v)) for v in logs.values())
    assert not model.f.trainable_variables
    for v, old in zip(frozen, before):  # f and its head
        np.testing.assert_array_equal(old, v.numpy(), err_msg=v.path)
    for v, old in zip(trained, before[len(frozen):]):  # g and D
        assert not np.array_equal(old, v.numpy()), f"{v.path} did not change"


def test_semantic_h_learns_from_the_target_labelled_by_f_then_stays_frozen(tmp_path, transfer_dir, monkeypatch):
    """Stage 1b: h learns from adversarial examples (--semantic-eps) of target images labelled
    without the target's own labels: with --h-labels confident, those f's classifier reads with
    probability CONFIDENT or more, labelled with f's reading; with --h-labels centroid, every one,
    by its nearest class centroid of f's features. In stage 2, L_SEM moves g and not h;
    with --semantic 0 there is no h."""
    assert build(tmp_path / "off", transfer_dir, model={"semantic": 0.0})[2].h is None
    with pytest.raises(ValueError, match="--semantic-eps -0.1: a move per pixel"):
        build(tmp_path / "eps", transfer_dir, model={"semantic": 1.0, "semantic_eps": -0.1})
    cfg, data, model = build(tmp_path / "confident", transfer_dir,
                             model={"semantic": 1.0, "semantic_eps": 0.3, "h_labels": "confident"})
    monkeypatch.setattr(dtn, "CONFIDENT", 1.01)
    with pytest.raises(DataError, match="f reads none of the 54 target images"):
        model.before_fit(data, cfg.run_dir)  # stage 1 is done and saved by then
    images = data.images(data.target)
    probabilities = tf.nn.softmax(model.classifier(images)).numpy()
    monkeypatch.setattr(dtn, "CONFIDENT", float(np.median(probabilities.max(axis=1))))
    x, y, _ = model.target_labels(data)
    confident = probabilities.max(axis=1) >= dtn.CONFIDENT
    assert 0 < len(x) == confident.sum() < len(images)
    np.testing.assert_array_equal(x, images[confident])
    np.testing.assert_array_equal(y, probabilities.argmax(axis=1)[confident])

    cfg, data, model = build(tmp_path, transfer_dir,
                             model={"semantic": 1.0, "semantic_eps": 0.3, "h_labels": "centroid"})
    seen, trained = [], []
    original, train = dtn.transfer.array_batches, dtn.classifier.train
    monkeypatch.setattr(dtn.transfer, "array_batches",
                        lambda x, y, **kw: seen.append((x, y, kw)) or original(x, y, **kw))
    monkeypatch.setattr(dtn.classifier, "train", lambda net, *a, **kw: trained.append(kw) or train(net, *a, **kw))
    model.before_fit(data, cfg.run_dir)
    (x, y, kw), = seen[-1:]
    assert kw["augment"] is True  # distorted as f's images are (--encoder-augment)
    assert [(t["adversarial"], t["steps"]) for t in trained][-1] == (0.3, 3)  # h's last (f's first when trained)
    np.testing.assert_array_equal(x, images)
    features = dtn.classifier.outputs(model.f, images)
    probabilities = tf.nn.softmax(model.classifier(images)).numpy()
    np.testing.assert_array_equal(y, dtn.classifier.centroid_labels(features, probabilities))
    assert (cfg.run_dir / "encoder" / "h.keras").is_file()
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    h_before, g_before = snapshot(model.h), snapshot(model.g)
    logs = model.train_step(batch)
    assert float(logs["SEM"]) > 0 and float(logs["finite"]) == 1.0
    for old, v in zip(h_before, model.h.variables):
        np.testing.assert_array_equal(old, v.numpy())
    assert any(not np.array_equal(old, v.numpy()) for old, v in zip(g_before, model.g.variables))
    assert "val_h_accuracy" in model.validate(data.held_out())
    # the whole run with h: stage 1 and 1b are reused from the folder, stage 2 trains and checkpoints
    tf_translate.train(dataclasses.replace(cfg, export=dataclasses.replace(cfg.export, export=False)))
    restored = trainer.restore(cfg)
    for a, b in zip(snapshot(model.h), snapshot(restored.h)):
        np.testing.assert_array_equal(a, b)


def test_embedded_digits_held_out_split_never_trained_on(tmp_path):
    cfg = tiny_config("dtn", tmp_path, None, data={"load_size": 32})
    data = tf_data.load("transfer", cfg)
    assert [len(s.images) for s in (data.source, data.source_test, data.target, data.target_test)] == [1500, 297,
                                                                                                     4000, 1000]
    digest = lambda image: hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()  # noqa: E731
    channels = lambda split: np.asarray(data.to_channels(  # noqa: E731
        np.stack([split.images.load(i) for i in range(len(split.images))]).astype(np.float32) / 127.5 - 1.0))
    for train, test, role in ((data.source, data.source_test, "source"), (data.target, data.target_test, "target")):
        seen = {digest(x) for x in channels(train)}
        held = {digest(x) for x in channels(test)} - seen  # a few digits occur twice in the raw data
        assert len(held) > 0.95 * len(test.images)
        batches = list(data.labelled(role, batch_size=64, seed=0, first_step=0, steps=30))  # stage 1 (source)
        batches += [(b[0] if role == "source" else b[2], None)
                    for b in data.training(batch_size=64, flip=False, seed=0, first_step=0, steps=30)]  # stage 2
        drawn = {digest(x) for batch, _ in batches for x in batch.numpy()}
        assert drawn <= seen and not drawn & held
        assert len(drawn) > 0.6 * len(train.images)


def test_stage1_resume_equals_uninterrupted(tmp_path, transfer_dir, op_determinism):
    def run(name, stop_at=None):
        cfg, data, model = build(tmp_path / name, transfer_dir)

        def batches(first, count):
            for i, batch in enumerate(data.labelled("source", batch_size=2, seed=0, first_step=first, steps=count)):
                if stop_at is not None and first + i == stop_at:
                    raise KeyboardInterrupt
                yield batch

        model.f.trainable = True
        classifier.train(model.classifier, batches, steps=6, lr=1e-3, folder=tmp_path / name / "encoder",
                         checkpoint_every=2)
        return snapshot(model.classifier)

    straight = run("straight")
    with pytest.raises(SystemExit):
        run("resumed", stop_at=3)  # killed during step 4: the checkpoint of step 3 is on disk
    assert tf.train.latest_checkpoint(str(tmp_path / "resumed" / "encoder" / "checkpoints")).endswith("ckpt-3")
    resumed = run("resumed")
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert any(not np.array_equal(a, b) for a, b in zip(straight, snapshot(build(tmp_path / "fresh", transfer_dir)[2]
                                                                           .classifier)))


def test_history_pool_feeds_d_and_is_off_by_default(tmp_path, transfer_dir):
    """--pool-size: D's G(x) of both kinds go through history pools, which fill step by step
    and are checkpointed; off (the paper), the model holds no pool variables."""
    _, _, plain = build(tmp_path / "plain", transfer_dir)
    assert plain.pools is None and not any("pool" in v.path for v in plain.variables)
    cfg, data, model = build(tmp_path, transfer_dir, model={"pool_size": 3, "g_steps": 1, "conditional_d": False})
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    model.train_step(batch)
    model.train_step(batch)
    source, target = model.pools
    assert int(source.count.numpy()) == 3 and int(target.count.numpy()) == 3  # 2 + 2 images, capped at 3
    stored = source.images.numpy()
    assert np.abs(stored).max() > 0 and not np.array_equal(stored, target.images.numpy())
    assert sum("pool" in v.path for v in model.variables) == 4


def first_step_logs(tmp_path, transfer_dir, flag: str) -> dict:
    """The losses of one training step from the same start with ``flag`` at 0 and at 2 (one g step)."""
    logs = {}
    for weight in (0.0, 2.0):
        _, data, model = build(tmp_path / str(weight), transfer_dir, model={flag: weight, "g_steps": 1})
        batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
        logs[weight] = {name: float(value) for name, value in model.train_step(batch).items()}
    return logs


def test_l_stroke_is_the_presets_and_weighs_in_g_s_loss(tmp_path, transfer_dir, monkeypatch):
    # a g just initialised draws no marks, so L_STROKE is stood in for by a fixed share per drawing
    monkeypatch.setattr(losses, "one_stroke",
                        lambda images, threshold=0.5, below=1.0: (images, tf.fill(tf.shape(images)[:1], 0.25)))
    monkeypatch.setattr(dtn.DTN, "stroke_ramp", lambda self: tf.constant(1.0))
    logs = first_step_logs(tmp_path, transfer_dir, "stroke")
    assert logs[0.0]["STROKE"] == 0.0 and logs[2.0]["STROKE"] == 0.5  # G(source)'s and G(target)'s
    assert build(tmp_path / "default", transfer_dir)[2].settings["stroke"] == 10.0
    assert build(tmp_path / "paper", transfer_dir, model={"preset": "digits"})[2].settings["stroke"] == 0.0
    assert logs[2.0]["G_total"] - logs[0.0]["G_total"] == pytest.approx(1.0, abs=1e-4)


def test_l_stroke_reads_g_s_drawing_before_the_one_stroke_layer(tmp_path, transfer_dir):
    """With --one-stroke, what g drew before its last layer kept the largest stroke is what
    L_STROKE costs (the drawing every other loss sees has no ink apart from its stroke)."""
    _, data, model = build(tmp_path, transfer_dir, model={"g_steps": 1})
    last = [layer for layer in model.g.layers if layer.name.endswith("_deconv")][-1]
    last.kernel.assign(last.kernel * 300.0)  # g then draws ink in scattered pieces
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    x_s, _, x_t = model.static_batch(batch)
    drawn = [model.g_raw(features, training=True) for features in (model.source_features(x_s), model.f(x_t))]
    want = float(tf.reduce_mean(losses.erased_share(drawn[0]) + losses.erased_share(drawn[1])))
    assert want > 0.01 and float(tf.reduce_max(losses.erased_share(model.g(model.f(x_t))))) == 0.0
    assert float(model.train_step(batch)["STROKE"]) == pytest.approx(want, rel=1e-4)


def test_l_stroke_comes_in_after_stroke_after_steps_rising_linearly(tmp_path, transfer_dir):
    _, _, model = build(tmp_path, transfer_dir)
    assert model.run_config.model.stroke_after == 250
    shares = []
    for step in (0, 250, 375, 500, 1000):
        model.step.assign(step)
        shares.append(float(model.stroke_ramp()))
    assert shares == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    _, _, model = build(tmp_path / "now", transfer_dir, model={"stroke_after": 0})
    assert float(model.stroke_ramp()) == 1.0


def test_tid_l1_is_l_tid_as_the_mean_absolute_difference(tmp_path, transfer_dir):
    """--tid l1 makes L_TID the mean |x - G(x)| of the target batch, l2 (the paper's, every
    preset's default) the mean squared difference; the distance is the only change."""
    logged = {}
    for tid, distance in (("l2", losses.mse), ("l1", losses.l1)):
        _, data, model = build(tmp_path / tid, transfer_dir, model={"tid": tid, "g_steps": 1})
        batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
        x_t = batch[2]
        expected = float(tf.reduce_mean(distance(x_t, model.G(x_t, training=True))))
        logged[tid] = float(model.train_step(batch)["TID"])
        assert logged[tid] == pytest.approx(expected, rel=1e-4)
    assert logged["l1"] != pytest.approx(logged["l2"], rel=1e-2)
    assert build(tmp_path / "default", transfer_dir)[2].settings["tid"] == "l2"


def test_upsample_resize_doubles_g_s_side_by_a_resize_and_a_3x3_convolution(tmp_path, transfer_dir):
    """--upsample resize: g's doublings (4 -> 8 -> 16 -> 32) are each a nearest-neighbour resize
    and a 3x3 convolution, only the first block (1x1 -> 4x4) a transposed convolution; the
    default is the paper's four transposed convolutions. The resized g trains and draws images
    of the input's shape."""
    for upsample, resizes, transposed in (("transpose", 0, 4), ("resize", 3, 1)):
        _, data, model = build(tmp_path / upsample, transfer_dir, model={"upsample": upsample})
        kinds = [type(layer).__name__ for layer in model.g.layers]
        assert (kinds.count("NearestUpsampling2D"), kinds.count("Conv2DTranspose")) == (resizes, transposed)
    assert model.g.get_layer("u4_conv").kernel.shape[:2] == (3, 3)
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    before = snapshot(model.g)
    assert float(model.train_step(batch)["finite"]) == 1.0
    assert all(not np.array_equal(old, new) for old, new in zip(before, snapshot(model.g)) if old.ndim == 4)
    assert model.G(batch[2]).shape == batch[2].shape
    with pytest.raises(UsageError, match="upsample"):
        build(tmp_path / "bad", transfer_dir, model={"upsample": "bilinear"})


def test_stray_marks_draw_ink_apart_from_the_digit_or_cut_its_stroke():
    """--d-negatives' negatives: each real digit either gains ink only where it had none (a dot
    or dash centred 3 pixels or more from it, not touching it), or loses ink only (a gap in its
    stroke), about half of each; drawn from the seed alone."""
    x, _ = transfer.digit_arrays("target")
    digits = x[:64].astype(np.float32)[..., None] / 127.5 - 1.0
    seed = tf.constant([3, 4], tf.int32)
    marked = augment.stray_marks(tf.constant(digits), seed).numpy()
    np.testing.assert_array_equal(marked, augment.stray_marks(tf.constant(digits), seed).numpy())
    assert not np.array_equal(marked, augment.stray_marks(tf.constant(digits), tf.constant([3, 5])).numpy())
    ink, new = (digits[..., 0] + 1) / 2, (marked[..., 0] + 1) / 2
    touching, near = (ndimage.binary_dilation(ink > 0.2, np.ones((1, k, k), bool)) for k in (3, 7))
    kinds = []
    for before, after, touch, close in zip(ink, new, touching, near):
        if np.all(after >= before - 1e-6):  # a mark: ink added, apart from the digit only
            np.testing.assert_allclose(after[touch], before[touch], atol=1e-6)
            assert after[~close].max() >= 0.6  # centred 3 pixels or more away
            kinds.append("mark")
        else:  # a gap: ink taken, nothing added
            assert np.all(after <= before + 1e-6) and np.sum(before - after > 0.5) >= 2
            kinds.append("gap")
    assert 16 <= kinds.count("mark") <= 48


def test_d_negatives_add_d_s_loss_on_marked_digits_read_as_made(tmp_path, transfer_dir, monkeypatch):
    """--d-negatives W: L_D gains W times -log D_2 of the marked target images; off by default."""
    monkeypatch.setattr(losses, "dtn_negative_loss", lambda logits: tf.fill(tf.shape(logits)[:1], 0.75))
    logs = first_step_logs(tmp_path, transfer_dir, "d_negatives")
    assert build(tmp_path / "default", transfer_dir)[2].run_config.model.d_negatives == 0.0
    assert logs[2.0]["D"] - logs[0.0]["D"] == pytest.approx(1.5, abs=1e-4)
    with pytest.raises(UsageError, match="--d-negatives"):
        build(tmp_path / "rgb", transfer_dir, model={"d_negatives": 1.0, "channels": 3, "one_stroke": False})


def test_instance_noise_is_seeded_by_step_and_off_by_default(tmp_path, transfer_dir):
    _, _, plain = build(tmp_path / "plain", transfer_dir, model={"preset": "digits"})
    images = tf.zeros([2, 32, 32, 1])
    assert plain.seen_by_d(images, 0) is images  # the paper's D sees the images as they are
    _, _, model = build(tmp_path, transfer_dir, model={"instance_noise": 0.2, "d_augment": False})
    first, again, other = model.seen_by_d(images, 0), model.seen_by_d(images, 0), model.seen_by_d(images, 1)
    np.testing.assert_array_equal(first.numpy(), again.numpy())  # (seed, step, k): a resume draws the same
    assert not np.array_equal(first.numpy(), other.numpy())
    assert float(tf.math.reduce_std(first)) == pytest.approx(0.2, rel=0.1)
    model.step.assign_add(1)
    assert not np.array_equal(first.numpy(), model.seen_by_d(images, 0).numpy())


def test_d_augment_shifts_and_cuts_what_d_sees_seeded_by_step(tmp_path, transfer_dir):
    """--d-augment: every image D sees, real or made, goes through DiffAugment drawn from
    (seed, step, k), shifted only unless --d-cutout asks for a blanked square, and D still
    learns through it."""
    images = tf.ones([4, 32, 32, 1])
    _, _, shifted = build(tmp_path / "shift", transfer_dir, model={"d_augment": True})
    for image in shifted.seen_by_d(images, 0).numpy()[..., 0] == 1.0:  # what is left is one rectangle
        assert image.sum() == image.any(0).sum() * image.any(1).sum() >= 28 * 28
    _, data, model = build(tmp_path, transfer_dir, model={"d_augment": True, "d_cutout": 0.5})
    first, again, other = model.seen_by_d(images, 0), model.seen_by_d(images, 0), model.seen_by_d(images, 1)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.array_equal(first.numpy(), other.numpy())
    assert np.all(np.sum(first.numpy() == -1.0, axis=(1, 2, 3)) >= 16 * 16 // 4)  # a cutout, at least clipped
    with pytest.raises(UsageError, match="--d-cutout 1.0"):
        build(tmp_path / "whole", transfer_dir, model={"d_augment": True, "d_cutout": 1.0})
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    before = [w.numpy() for w in model.D.trainable_weights]
    assert np.isfinite(float(model.train_step(batch)["D"]))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.D.trainable_weights))


def test_averaged_g_follows_g_and_is_what_is_exported(tmp_path, transfer_dir):
    cfg, data, model = build(tmp_path, transfer_dir, model={"g_average": 0.75, "g_steps": 1})
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    start = snapshot(model.g)
    for a, w in zip(snapshot(model.g_average), start):
        np.testing.assert_array_equal(a, w)
    model.train_step(batch)
    after = snapshot(model.g)
    assert any(not np.array_equal(a, b) for a, b in zip(start, after))
    for a, w0, w1 in zip(snapshot(model.g_average), start, after):  # the first update: d = 1 / 10
        np.testing.assert_allclose(a, 0.1 * w0 + 0.9 * w1, rtol=1e-5, atol=1e-7)
    model.update_average(1000)  # late in training: the decay asked for
    for a, w0, w1 in zip(snapshot(model.g_average), start, after):
        np.testing.assert_allclose(a, 0.75 * (0.1 * w0 + 0.9 * w1) + 0.25 * w1, rtol=1e-5, atol=1e-7)
    assert model.generators()["translate"][0].get_layer("g_average") is model.g_average
    with pytest.raises(ValueError, match="--g-average 1.5"):
        build(tmp_path / "bad", transfer_dir, model={"g_average": 1.5})


@pytest.fixture(scope="module")
def trained_dtn(exports):
    """The tiny dtn model every export test shares (conftest.exports)."""
    return exports("dtn")


def test_stage1_saves_f_and_encoder_reuse(trained_dtn, tmp_path, transfer_dir, capsys):
    cfg, _ = trained_dtn
    saved = cfg.run_dir / "encoder" / "f.keras"
    assert saved.is_file()
    # f's own classifier as the --judge: its reading of G(x) must equal val_f_accuracy
    reuse = tiny_config("dtn", tmp_path, str(transfer_dir), model={"encoder": str(saved), "judge": str(saved)},
                        export={"export": False}, train={"validate_every": 2})
    tf_translate.train(reuse)
    assert not (reuse.run_dir / "encoder").exists()  # no stage 1
    best = json.loads((reuse.run_dir / "best" / "best.json").read_text())
    assert best["val_judge"] == pytest.approx(best["val_f_accuracy"])
    assert {"val_judge_0", "val_judge_1", "val_judge_2"} <= set(best)
    assert "val_judge" in capsys.readouterr().out
    restored = trainer.restore(tf_data.load("transfer", reuse).complete(reuse))
    first = trainer.restore(tf_data.load("transfer", cfg).complete(cfg))
    for a, b in zip(snapshot(first.classifier), snapshot(restored.classifier)):
        np.testing.assert_array_equal(a, b)


def test_saved_run_keeps_the_presets_values(trained_dtn, tmp_path, transfer_dir):
    """config.json holds the resolved alpha, beta, gamma, semantic, d_augment and channels,
    not only the preset's name, so that a run saved under other preset values is refused
    rather than resumed with today's."""
    cfg, _ = trained_dtn
    saved = json.loads((cfg.run_dir / "config.json").read_text())
    kept = {k: saved["model"][k] for k in ("alpha", "beta", "gamma", "semantic", "d_augment", "align", "one_stroke",
                                           "channels")}
    assert kept == {"alpha": 5.0, "beta": 50.0, "gamma": 0.0, "semantic": 0.0, "d_augment": True, "align": True,
                    "one_stroke": True, "channels": 1}
    older = tiny_config("dtn", tmp_path, str(transfer_dir))
    older.run_dir.mkdir(parents=True)
    saved["model"]["alpha"] = 15.0  # digits-small before its alpha was lowered
    (older.run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(trainer.TrainingError, match="alpha 15.0 -> 5.0"):
        trainer.prepare(older)


def test_encoder_errors(trained_dtn, tmp_path, transfer_dir):
    cfg, _ = trained_dtn
    saved = cfg.run_dir / "encoder" / "f.keras"
    wider = tiny_config("dtn", tmp_path / "a", str(transfer_dir), model={"encoder": str(saved), "features": 16})
    with pytest.raises(DataError, match=r"output \(1, 1, 8\) does not fit g, which takes \(1, 1, 16\)"):
        tf_translate.train(wider)
    missing = tiny_config("dtn", tmp_path / "b", str(transfer_dir), model={"encoder": str(tmp_path / "nope.keras")})
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        tf_translate.train(missing)
    rgb = tiny_config("dtn", tmp_path / "c", str(transfer_dir),
                      model={"encoder": str(saved), "channels": 3, "one_stroke": False})
    with pytest.raises(DataError, match=r"takes images of \(32, 32, 1\); this run's are \(32, 32, 3\)"):
        tf_translate.train(rgb)
    # unlabelled source images: fine with an encoder, an error when f must be trained or L_SEM or a
    # class-conditional D is asked for
    flat = tmp_path / "flat"
    shutil.copytree(transfer_dir / "target", flat / "target")
    (flat / "source").mkdir()
    for path in (transfer_dir / "source").glob("*/*.png"):
        shutil.copy(path, flat / "source" / path.name)
    with pytest.raises(DataError, match="source images are unlabelled"):
        tf_translate.train(tiny_config("dtn", tmp_path / "d", str(flat)))
    tf_translate.train(tiny_config("dtn", tmp_path / "e", str(flat), model={"encoder": str(saved)}, export={"export": False}))
    with pytest.raises(DataError, match="--semantic: L_SEM reads G"):
        tf_translate.train(tiny_config("dtn", tmp_path / "f", str(flat), model={"encoder": str(saved), "semantic": 1.0}))
    with pytest.raises(DataError, match="--conditional-d: D reads G"):
        tf_translate.train(tiny_config("dtn", tmp_path / "g", str(flat), model={"encoder": str(saved),
                                                                                "conditional_d": True}))
    with pytest.raises(DataError, match="--align: f"):
        tf_translate.train(tiny_config("dtn", tmp_path / "h", str(flat), model={"encoder": str(saved), "align": True}))


def test_export_signatures_and_parity(trained_dtn, tmp_path):
    cfg, version = trained_dtn
    model = Exported(version)
    assert model.in_channels == 1 and model.input_size == 32 and model.names == ["translate"]
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    out = model(x)
    assert out.shape == (2, 32, 32, 1) and 0 <= out.min() and out.max() <= 1
    assert model.classify(x).shape == (2, 3) and np.allclose(model.classify(x).sum(1), 1, atol=1e-5)
    assert model.encode(x).shape == (2, 8)
    # the Keras model restored from the run agrees with the export: a source image is drawn from
    # f(x) moved by --align (on in digits-small), with the statistics fitted before stage 2
    keras_model = trainer.restore(tf_data.load("transfer", cfg).complete(cfg))
    np.testing.assert_allclose(out, (keras_model.G_source(x * 2 - 1).numpy() + 1) / 2, atol=1e-5)
    align = keras_model.align
    mean_s, mean_t, ratio, projection = (w.numpy() for w in (align.source_mean, align.target_mean, align.ratio,
                                                             align.projection))
    assert np.any(mean_s != mean_t) and np.any(mean_s != 0)
    deviation = np.einsum("bkf,kfg->bkg", model.encode(x)[:, None] - mean_s, projection)
    moved = np.einsum("bk,bkd->bd", model.classify(x), mean_t + ratio[:, None] * deviation)
    np.testing.assert_allclose(model.encode_source(x), np.maximum(moved, 0), rtol=1e-4, atol=1e-4)
    report = __import__("json").loads((version / "tflite_parity.json").read_text())
    assert report["signatures"]["translate"]["max_abs_error"] < 1e-4
    with pytest.raises(ValueError, match="takes 1-channel NHWC images"):
        model(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="takes 32x32 images"):
        model(np.zeros((1, 28, 28, 1), np.float32))
    # bytes in: an RGB photo of another size is made grey and 32x32
    photo = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(photo)
    png = model.module.signatures["translate_bytes"](image_bytes=tf.constant([photo.read_bytes()]))["output_bytes"]
    decoded = tf.io.decode_png(png[0]).numpy()
    assert decoded.shape == (32, 32, 1)


def test_translate_cli_resizes_and_writes_grey(trained_dtn, tmp_path):
    from tf_translate.cli import main

    _, version = trained_dtn
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (45, 60, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    assert main(["--model", str(version), str(tmp_path / "a.jpg"), "--output", str(tmp_path / "out")],
                command="translate") == 0
    written = Image.open(tmp_path / "out" / "a.png")
    assert written.mode == "L" and written.size == (32, 32)


def test_evaluate_reports_the_papers_measure(trained_dtn, tmp_path):
    from tf_translate.metrics import evaluate

    cfg, version = trained_dtn
    data = tf_data.load("transfer", cfg)
    path = tmp_path / "judge.keras"
    judge = evaluate.target_classifier(data, path, steps=5)
    assert path.is_file()
    report = evaluate.evaluate(version, pictures=tmp_path, classifier_path=path)
    c = report["target_classifier"]
    x, labels, _ = data.held_out()
    assert c["untranslated_source"] == classifier.accuracy(judge, x, labels)
    assert set(c["translated_per_class"]) == {"0", "1", "2"}
    assert report["diversity"]["real_target"] > 0
    assert Image.open(report["panel"]).width > 6 * 64
    # judges of other families, on pixels: what they read is what a fresh one reads
    from sklearn.neighbors import KNeighborsClassifier

    others = report["other_judges"]
    assert set(others) == {"3 nearest neighbours", "random forest"}
    flat = lambda images: images.reshape(len(images), -1)  # noqa: E731
    train, real = data.images(data.target), data.images(data.target_test)
    knn = KNeighborsClassifier(3).fit(flat(train), data.target.labels)
    assert others["3 nearest neighbours"]["real_target"] == np.mean(knn.predict(flat(real)) == data.target_test.labels)
    assert others["3 nearest neighbours"]["untranslated_source"] == np.mean(knn.predict(flat(x)) == labels)
    judges = [c, *others.values()]
    assert report["judges_disagree"] == [k for k in "012" if np.ptp([j["translated_per_class"][k] for j in judges]) > 0.15]
    text = evaluate.markdown(report)
    assert "| target classifier (CNN) |" in text and "| random forest (pixels) |" in text
    assert f"random forest on pixels: {others['random forest']['translated_source']:.1%}" in evaluate.headline(report)
    # the classifier-free measure: a digit of the bank is at distance 0 from it, a shifted one is not
    bank = (train + 1.0) / 2.0
    assert evaluate.nearest_distance(bank[:4], bank) == pytest.approx(0.0, abs=1e-6)
    assert evaluate.nearest_distance(np.roll(bank[:4], 3, axis=2), bank) > 0.05
    assert 0 < report["nearest_real_distance"]["translated_source"] < 1
    assert 0 <= report["stray_ink"]["translated_source"] <= 1 and "outside each drawing's largest stroke" in text
    assert 0 <= report["marks"]["real_target"] <= report["stray_ink"]["real_target"] and "ink in marks" in text
    assert 0 <= report["in_pieces"]["real_target"] <= 1 and "more than one piece" in text


def test_stray_ink_is_the_share_outside_the_largest_stroke():
    from tf_translate.metrics import evaluate

    digit = np.zeros((1, 12, 12, 1), np.float32)
    digit[0, 2:10, 5:7] = 1.0  # one stroke of 16 pixels
    assert evaluate.stray_ink(digit) == 0.0
    digit[0, 2, 9] = digit[0, 10, 1] = 1.0  # two dots apart from it
    assert evaluate.stray_ink(digit) == pytest.approx(2 / 18)
    digit[0, 10, 7] = 1.0  # a diagonal neighbour of the stroke belongs to it (8-connected)
    assert evaluate.stray_ink(digit) == pytest.approx(2 / 19)
    assert evaluate.stray_ink(digit, below=0.1) == pytest.approx(2 / 19)  # a dot holds under a tenth of 17
    barred = digit.copy()
    barred[0, 0, 4:8] = 1.0  # and a bar of 4 pixels apart from the stroke, as a five's lifted one
    assert evaluate.stray_ink(barred) == pytest.approx(6 / 23)
    assert evaluate.stray_ink(barred, below=evaluate.MARK) == pytest.approx(2 / 23)  # the bar is no mark
    clean = np.zeros_like(digit)
    clean[0, 2:10, 5:7] = 0.9
    assert evaluate.in_pieces(np.concatenate([digit, clean, np.zeros_like(digit)])) == pytest.approx(1 / 3)
    assert sorted(evaluate.pieces(digit[0])) == pytest.approx([1.0, 1.0, 17.0])


def test_l_stroke_is_the_ink_apart_from_the_largest_stroke_and_darkens_only_it():
    from tf_translate.metrics import evaluate

    ink = np.zeros((5, 12, 12, 1), np.float32)
    ink[0, 2:10, 5:7] = 1.0  # a stroke of 16 pixels,
    ink[0, 4, 7] = 0.3  # a faint pixel beside it (its edge: no mark),
    ink[0, 4, 9] = 0.3  # a faint one two pixels off,
    ink[0, 2, 10] = ink[0, 11, 0] = 0.8  # and two dots apart from it
    ink[1, 1:3, 1:3] = 1.0  # the second drawing: a blob of 4 pixels and a longer stroke apart from it
    ink[1, 9, 2:10] = 1.0
    ink[2] = np.where(ink[0] == 1.0, 1.0, 0.15)  # the third: the first's stroke on a faint haze
    ink[3, 2:10, 2] = 1.0  # the fourth: a stroke, and a row of dots joined to it by fainter ink
    ink[3, 10, 2:10, 0] = [0.8, 0.3] * 4
    ink[4, 5, 5] = 0.4  # the fifth: faint ink only
    for image, got in zip(ink, losses.largest_stroke(tf.constant(ink), 0.5).numpy()):
        assert (image * got).sum() == pytest.approx(evaluate.pieces(image).max() if image.max() > 0.5 else 0.0)
    images = tf.constant(ink * 2 - 1)
    with tf.GradientTape() as tape:
        tape.watch(images)
        stray = losses.erased_share(images)
    haze = 0.15 * (144 - 40)  # all but the stroke grown by a pixel (10 x 4)
    np.testing.assert_allclose(stray, [1.9 / 18.2, 4 / 12, haze / (16 + 0.15 * 128), 3.3 / 12.4, 0.0], rtol=1e-3)
    darken = tape.gradient(stray, images).numpy()[..., 0]
    seen = np.zeros((5, 12, 12), bool)  # each largest stroke grown by a pixel; all of a page without one
    seen[0, 1:11, 4:8] = seen[2, 1:11, 4:8] = seen[1, 8:11, 1:11] = seen[3, 1:12, 1:4] = seen[4] = True
    assert not darken[seen].any()  # the digit and its faint edge are left alone,
    assert (darken[~seen] > 0).all()  # descent darkens the rest: marks, haze, background (held at 0 by g's tanh)
    assert float(losses.erased_share(-tf.ones((1, 12, 12, 1)))[0]) == 0.0  # a blank page


def test_largest_stroke_alone_erases_the_marks_and_passes_gradient_through_the_stroke_only():
    ink = np.zeros((3, 12, 12, 1), np.float32)
    ink[0, 2:10, 5] = 1.0  # a stroke,
    ink[0, 2:10, 6] = 0.4  # its faint edge (below 0.5: kept as the stroke grown by a pixel),
    ink[0, 2:10, 8] = 0.3  # a faint line two pixels off (erased),
    ink[0, 11, 0] = 0.9  # and a dot apart from it (erased)
    ink[1, 1:3, 1:3] = 1.0  # a blob of 4 pixels and a longer stroke: the blob is erased
    ink[1, 9, 2:10] = 1.0
    ink[2, 5, 5] = 0.4  # no ink above 0.5: kept whole
    images = tf.Variable(ink * 2 - 1)
    with tf.GradientTape() as tape:
        read = losses.largest_stroke_alone(images)
        total = tf.reduce_sum(read)
    kept = ink.copy()
    kept[0, :, 8] = kept[0, 11, 0] = kept[1, 1:3, 1:3] = 0.0
    np.testing.assert_allclose(read.numpy(), kept * 2 - 1)
    through = tape.gradient(total, images).numpy()
    assert through[0, 1:11, 4:7].all() and not through[0, :, 7].any()
    assert through[2].all() and through[1, 8:11, 1:11].all()
    assert not through[0, :, 8].any() and not through[0, 11, 0] and not through[1, 1:3, 1:3].any()


def test_mark_below_keeps_a_piece_with_that_share_of_the_stroke_s_ink_and_erases_and_costs_smaller_ones(
        tmp_path, transfer_dir):
    ink = np.zeros((1, 12, 12, 1), np.float32)
    ink[0, 2:12, 5] = 1.0  # a stroke of 10 pixels,
    ink[0, 0, 2:5] = 1.0  # a bar of 3 apart from it (a five's lifted bar: 0.3 of the stroke's ink),
    ink[0, 11, 0] = 1.0  # and a dot (0.1 of it)
    images = tf.constant(ink * 2 - 1)
    for below, erased in ((1.0, 4), (0.2, 1), (0.05, 0)):
        kept, share = losses.one_stroke(images, below=below)
        assert float(tf.reduce_sum(ink) - tf.reduce_sum((kept + 1) / 2)) == pytest.approx(erased)
        assert float(share[0]) == pytest.approx(erased / (14 + 1e-3), rel=1e-4)
        assert float(losses.erased_share(images, below=below)[0]) == float(share[0])
    model = build(tmp_path, transfer_dir)[2]
    assert model.run_config.model.mark_below == 0.1 and model.g.get_layer("one_stroke").below == 0.1
    layer = build(tmp_path / "one", transfer_dir, model={"mark_below": 1.0})[2].g.get_layer("one_stroke")
    np.testing.assert_array_equal(layer(images).numpy(), losses.largest_stroke_alone(images).numpy())


def test_one_stroke_g_draws_its_largest_stroke_alone_and_every_loss_sees_that(tmp_path, transfer_dir):
    """--one-stroke (on in digits-small, off in the paper's presets): g's last layer keeps each
    drawing's largest stroke (``losses.largest_stroke_alone``), so G, what D and the losses see
    and the export draw one piece of ink; grey images only."""
    _, data, model = build(tmp_path, transfer_dir)
    assert model.settings["one_stroke"] and model.g.layers[-1].name == "one_stroke"
    tanh = model.g.get_layer("tanh")
    last = [layer for layer in model.g.layers if layer.name.endswith("_deconv")][-1]
    last.kernel.assign(last.kernel * 300.0)  # g then draws ink in scattered pieces
    raw = keras.Model(model.g.input, tanh.output)
    features = model.source_features(data.held_out()[0][:4])
    drawn, made = raw(features), model.g(features)
    np.testing.assert_array_equal(made.numpy(), losses.largest_stroke_alone(drawn).numpy())
    assert float(tf.reduce_min(losses.erased_share(drawn))) > 0.0  # every drawing was in pieces,
    for image in made.numpy():  # and each is one 8-connected piece now
        assert ndimage.label(image[..., 0] > 0.0, structure=np.ones((3, 3)))[1] == 1
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    x_t = batch[2]
    np.testing.assert_allclose(model.G(x_t).numpy(), losses.largest_stroke_alone(raw(model.f(x_t))).numpy())
    paper = build(tmp_path / "paper", transfer_dir, model={"preset": "digits"})[2]
    assert not paper.settings["one_stroke"] and paper.g.layers[-1].name == "tanh"
    with pytest.raises(UsageError, match="--one-stroke keeps the largest stroke of grey drawings; these images "
                                         "have 3 channels"):
        build(tmp_path / "rgb", transfer_dir, model={"channels": 3})


def test_read_stroke_makes_l_const_l_sem_and_validation_read_the_largest_stroke_alone(tmp_path, transfer_dir,
                                                                                     monkeypatch):
    """--read-stroke (off by default): L_CONST, L_SEM and the
    validation's f-constancy read G(x) of a source image as ``losses.largest_stroke_alone``
    gives it, D and L_TID the whole drawing."""
    # a g just initialised draws no ink above 0.5, which the real reading keeps whole: here it reads a blank page
    monkeypatch.setattr(losses, "largest_stroke_alone", lambda images: -tf.ones_like(images))
    logged = {}
    for read in (False, True):
        _, data, model = build(tmp_path / str(read), transfer_dir,
                               model={"read_stroke": read, "g_steps": 1, "semantic": 1.0, "one_stroke": False})
        batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
        x_s, y_s, _ = model.static_batch(batch)
        blank = -tf.ones_like(x_s)
        const = float(tf.reduce_mean(losses.mse(model.source_features(x_s), model.f(blank))))
        sem = float(tf.reduce_mean(losses.domain_classification(model.h(blank), tf.one_hot(y_s, 3), False)))
        logged[read] = {name: float(value) for name, value in model.train_step(batch).items()}
        held = data.held_out()
        val_const = float(tf.reduce_mean(losses.mse(model.source_features(held[0]), model.f(-tf.ones_like(held[0])))))
        matches = [logged[read]["CONST"] == pytest.approx(const, rel=1e-4),
                   logged[read]["SEM"] == pytest.approx(sem, rel=1e-4),
                   model.validate(held)["val_const"] == pytest.approx(val_const, rel=1e-4)]
        assert matches == [read] * 3
    assert logged[True]["TID"] == pytest.approx(logged[False]["TID"], rel=1e-4)
    assert build(tmp_path / "default", transfer_dir)[2].run_config.model.read_stroke is False


def test_panel_rows_show_the_most_different_drawings_of_a_class():
    from tf_translate.metrics import evaluate

    # images 0-3 are one writer's (near copies), 4 and 5 two others'; 6 is another class
    images = np.zeros((7, 4, 4, 1), np.float32)
    images[:4, 0, 0, 0] = [1.0, 0.99, 0.98, 0.97]
    images[4, 3, 3] = images[5, 0, 3] = images[6, 1, 1] = 1.0
    assert evaluate.varied(images, np.arange(6), 3) == [0, 4, 5]
    assert evaluate.varied(images, np.array([6]), 3) == [6]
    assert evaluate.varied(images, np.array([], int), 3) == []


def test_faces_preset_is_the_papers_configuration(tmp_path):
    from tf_translate import config

    spec = registry.get("dtn")
    cfg = config.build("dtn", spec.config, spec.overrides, {"data": {"load_size": 64, "crop_size": 64},
                                                            "model": {"preset": "faces", "classes": ("a", "b")}})
    model = spec.model(cfg)
    assert (model.settings["alpha"], model.settings["beta"], model.settings["gamma"]) == (100.0, 1.0, 0.05)
    assert model.G.output_shape == (None, 64, 64, 3) and model.D.output_shape == (None, 3)
    assert sum(layer.name.endswith("_deconv") for layer in model.g.layers) == 5
    assert sum(layer.name.endswith("_act") and "leaky" in type(layer).__name__.lower()
               for layer in model.D.layers) == 6
    with pytest.raises(ValueError, match="g draws 64x64 images"):
        spec.model(config.build("dtn", spec.config, spec.overrides, {"model": {"preset": "faces", "classes": ("a",)}}))
    with pytest.raises(ValueError, match="--preset 'cartoons'"):
        spec.model(config.build("dtn", spec.config, spec.overrides, {"model": {"preset": "cartoons"}}))


def test_class_alignment_moves_each_class_to_the_targets_mean_and_spread():
    """--align's layer: with one-hot classes, the source's features of class k land on the target's
    class mean with the target's within-class spread; a class too few in a domain stays put."""
    from tf_translate.nn.layers import ClassAlignment

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    source = 10 + rng.normal(0, 1, (150, 4)) + labels[:, None]  # far from 0: max(0, .) keeps all
    target = 60 + rng.normal(0, 3, (150, 4)) * (1 + labels[:, None]) - 2 * labels[:, None]
    target_labels = labels.copy()
    target_labels[target_labels == 2] = 1  # the target has no class 2
    layer = ClassAlignment(3, 4)
    ratio = layer.fit(source.reshape(150, 1, 1, 4), labels, target, target_labels)
    moved = layer(tf.constant(source.reshape(150, 1, 1, 4), tf.float32),
                  tf.one_hot(labels, 3)).numpy().reshape(150, 4)
    spread = lambda v: np.sqrt(np.mean(np.sum((v - v.mean(0)) ** 2, 1)))  # noqa: E731
    for k in (0, 1):
        np.testing.assert_allclose(moved[labels == k].mean(0), target[target_labels == k].mean(0), rtol=1e-4)
        assert spread(moved[labels == k]) == pytest.approx(spread(target[target_labels == k]), rel=1e-4)
        assert ratio[k] == pytest.approx(spread(target[target_labels == k]) / spread(source[labels == k]), rel=1e-6)
    assert np.isnan(ratio[2])
    np.testing.assert_allclose(moved[labels == 2], source[labels == 2], rtol=1e-5)
    # probabilities mix the classes' moves
    half = layer(tf.constant(source[:1], tf.float32), tf.constant([[0.5, 0.5, 0.0]])).numpy()
    both = layer(tf.constant(np.repeat(source[:1], 2, 0), tf.float32), tf.one_hot([0, 1], 3)).numpy()
    np.testing.assert_allclose(half[0], both.mean(0), rtol=1e-5)


def test_class_alignment_keeps_only_the_directions_a_target_class_varies_along():
    """With a share below 1, a source image's deviation from its class mean is kept along the
    principal directions of the target's class and dropped along the others, and scaled so the
    moved class has the target's spread."""
    from tf_translate.nn.layers import ClassAlignment

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 200)
    source = 10 + rng.normal(0, 1, (400, 4))
    target = np.full((400, 4), 50.0)
    target[:200, :2] += rng.normal(0, 2, (200, 2))  # class 0 varies along the first two features only,
    target[200:, 2:] += rng.normal(0, 3, (200, 2))  # class 1 along the last two
    layer = ClassAlignment(2, 4, 0.9)
    layer.fit(source, labels, target, labels)
    moved = layer(tf.constant(source, tf.float32), tf.one_hot(labels, 2)).numpy()
    spread = lambda v: np.sqrt(np.mean(np.sum((v - v.mean(0)) ** 2, 1)))  # noqa: E731
    np.testing.assert_allclose(moved[:200, 2:], 50.0, rtol=1e-5)
    np.testing.assert_allclose(moved[200:, :2], 50.0, rtol=1e-5)
    for k in (0, 1):
        assert spread(moved[labels == k]) == pytest.approx(spread(target[labels == k]), rel=1e-4)
        kept = slice(0, 2) if k == 0 else slice(2, 4)  # along the kept directions the source's own deviations
        assert np.corrcoef(moved[labels == k][:, kept].ravel(), source[labels == k][:, kept].ravel())[0, 1] > 0.99
    # share 1 keeps every direction, as the unprojected move
    whole = ClassAlignment(2, 4)
    whole.fit(source, labels, target, labels)
    np.testing.assert_allclose(whole.projection.numpy(), np.stack([np.eye(4)] * 2))


def test_class_alignment_with_covariance_gives_each_class_the_targets_covariance():
    """covariance=True: within the kept directions the moved source class has the target's mean
    and covariance (not only its overall spread: a direction the source hardly varies along is
    widened, one it varies much along narrowed), and nothing outside them."""
    from tf_translate.nn.layers import ClassAlignment

    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 300)
    source = 20 + rng.normal(0, 1, (600, 3)) * [3.0, 0.5, 1.0]
    target = 50 + rng.normal(0, 1, (600, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    for covariance in (False, True):
        layer = ClassAlignment(2, 3, 0.99, covariance)
        layer.fit(source, labels, target, labels)
        moved = layer(tf.constant(source, tf.float32), tf.one_hot(labels, 2)).numpy()
        for k in (0, 1):
            got, want = np.cov(moved[labels == k].T), np.cov(target[labels == k].T)
            np.testing.assert_allclose(moved[labels == k].mean(0), target[labels == k].mean(0), atol=1e-3)
            assert np.abs(got[2]).max() < 1e-6  # the target does not vary along the third feature
            if covariance:
                np.testing.assert_allclose(got, want, atol=0.05 * want.max())  # C_s regularised
            else:  # the scalar ratio keeps the source's shape: the first feature too wide, the second too narrow
                assert got[0, 0] > 2 * want[0, 0] and got[1, 1] < want[1, 1] / 2


def test_centroid_labels_pull_a_misread_stretch_of_a_class_back_to_its_cluster():
    """SHOT's pseudo-labels: a classifier that reads 40 % of one cluster as another (and not
    surely) is overruled by the clusters of the features; a clean reading is kept; the scale of
    a feature vector does not matter (cosine), and a class no image is nearest to is not given."""
    from tf_translate.nn.classifier import centroid_labels

    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 5.0
    truth = np.repeat([0, 1, 2], 50)
    features = (centres[truth] + rng.normal(0, 0.8, (150, 8))) * rng.uniform(0.5, 3.0, (150, 1))
    probabilities = np.full((150, 4), 0.02)
    probabilities[np.arange(150), truth] = 0.94
    misread = np.flatnonzero(truth == 2)[:20]
    probabilities[misread] = [0.02, 0.55, 0.41, 0.02]  # read as 1, not surely
    assert np.mean(probabilities.argmax(1) == truth) < 0.9
    labels = centroid_labels(features[:, None, None, :], probabilities)
    np.testing.assert_array_equal(labels, truth)
    np.testing.assert_array_equal(centroid_labels(features, np.eye(4)[truth]), truth)


def test_align_reads_the_targets_classes_from_the_more_confident_half_of_each():
    """--align's target statistics come from, per class read, the images read at or above the
    class's median confidence: not from the most confident images overall (one class may hold
    them all), and every class read keeps some."""
    from tf_translate.methods.dtn import more_confident

    probabilities = np.array([[0.99, 0.01], [0.98, 0.02], [0.97, 0.03], [0.96, 0.04],  # sure zeros
                              [0.40, 0.60], [0.30, 0.70], [0.45, 0.55], [0.20, 0.80]])  # unsure ones
    np.testing.assert_array_equal(more_confident(probabilities), [1, 1, 0, 0, 0, 1, 0, 1])
    assert more_confident(np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])).tolist() == [True, True, False]  # a class of one


def test_digits_presets_paper_and_small():
    """--preset digits is the paper's objective; the default, digits-small, the same networks
    with alpha 5, beta 50, DiffAugment, L_SEM, a class-conditional D, an adversarially
    trained f, class alignment and a g of one stroke with L_STROKE; flags override either."""
    from tf_translate.cli import config_from_args

    def settings(*flags):
        return config_from_args(["--method", "dtn", *flags]).model.settings

    paper, small = settings("--preset", "digits"), settings()
    assert (paper["alpha"], paper["beta"], paper["gamma"], paper["d_augment"]) == (15.0, 15.0, 0.0, False)
    assert (paper["semantic"], small["semantic"]) == (0.0, 1.0)
    assert (small["alpha"], small["beta"], small["gamma"], small["d_augment"]) == (5.0, 50.0, 0.0, True)
    assert (small["conditional_d"], small["encoder_eps"], paper["conditional_d"], paper["encoder_eps"]) == (
        True, 0.3, False, 0.0)
    assert (small["align"], paper["align"]) == (True, False)
    assert (small["one_stroke"], small["stroke"], paper["one_stroke"], paper["stroke"]) == (True, 10.0, False, 0.0)
    changed = ("alpha", "beta", "d_augment", "semantic", "conditional_d", "encoder_eps", "align", "one_stroke",
               "stroke")
    assert {k: v for k, v in small.items() if k not in changed} == {k: v for k, v in paper.items() if k not in changed}
    assert settings("--no-d-augment", "--alpha", "15", "--beta", "15", "--semantic", "0", "--no-conditional-d",
                    "--encoder-eps", "0", "--no-align", "--no-one-stroke", "--stroke", "0") == paper
    assert settings("--preset", "digits", "--semantic", "1")["semantic"] == 1.0
    assert settings("--preset", "digits", "--d-augment")["d_augment"] is True
    # h learns from f's class centroids and --align colours each class to the target's covariance
    default = config_from_args(["--method", "dtn"]).model
    assert (default.h_labels, default.align_covariance) == ("centroid", True)
    old = config_from_args(["--method", "dtn", "--h-labels", "confident", "--no-align-covariance"]).model
    assert (old.h_labels, old.align_covariance) == ("confident", False)
    # the preset's L_SEM needs the source's classes: off without them, unless asked for (then refused)
    small = config_from_args(["--method", "dtn"]).model
    assert dataclasses.replace(small, classes=("0", "1")).resolved().semantic == 1.0
    assert small.resolved().semantic == 0.0 and small.resolved().align is False
    assert dataclasses.replace(small, semantic=2.0).resolved().semantic == 2.0


def test_stage1_distortion_is_seeded_and_keeps_range():
    from tf_translate import seeding
    from tf_translate.data.transfer import digit_arrays, distort

    image = digit_arrays("target")[0][0][..., None].astype(np.float32) / 127.5 - 1.0
    outs = [distort(tf.constant(image), seeding.derive(0, 13, j)).numpy() for j in (0, 0, 1)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2]) and not np.array_equal(outs[0], image)
    assert outs[0].shape == image.shape and outs[0].min() >= -1 and outs[0].max() <= 1
    # a distorted digit is still mostly where the digit was (small rotation, scale and shift)
    assert np.corrcoef(outs[0].ravel(), image.ravel())[0, 1] > 0.3


def test_adversarial_examples_move_every_pixel_up_the_loss_within_eps():
    """FGSM with random start (h's --semantic-eps): for a linear two-class model the gradient's
    sign at every pixel is sign(w_1 - w_0) for class 0, so every pixel moves that way by 0.25
    eps (the random start at -eps, then 1.25 eps) to eps (clipped to the box), stays in [-1, 1],
    and the loss rises; the same key draws the same examples."""
    import keras

    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2, use_bias=False)])
    model.layers[-1].set_weights([w])
    x = rng.uniform(-0.5, 0.5, (8, 4, 4, 1)).astype(np.float32)
    x[0] = 0.95  # near the top of the range: clipped there
    labels, eps, key = tf.zeros(8, tf.int32), 0.2, tf.constant([3, 7], tf.int64)
    adv = classifier.adversarial_examples(model, tf.constant(x), labels, eps, key).numpy()
    np.testing.assert_array_equal(adv, classifier.adversarial_examples(model, tf.constant(x), labels, eps, key))
    assert not np.array_equal(adv, classifier.adversarial_examples(model, tf.constant(x), labels, eps, key + 1))
    delta = (adv - x).reshape(8, 16)
    uphill = np.sign(w[:, 1] - w[:, 0])
    np.testing.assert_array_equal(np.sign(delta[1:]), np.broadcast_to(uphill, (7, 16)))
    assert np.all(np.abs(delta[1:]) >= 0.25 * eps - 1e-6) and np.all(np.abs(delta) <= eps + 1e-6)
    assert adv.max() <= 1.0 and np.all(adv[0].ravel()[uphill > 0] == 1.0)

    def loss(images):
        return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, model(images))))
    assert loss(adv) > loss(x)


def test_encoder_eps_trains_f_on_adversarial_examples(tmp_path, transfer_dir, monkeypatch):
    with pytest.raises(ValueError, match="--encoder-eps 1.0: a move per pixel"):
        build(tmp_path / "eps", transfer_dir, model={"encoder_eps": 1.0})
    trained, train = [], dtn.classifier.train
    monkeypatch.setattr(dtn.classifier, "train", lambda net, *a, **kw: trained.append(kw) or train(net, *a, **kw))
    cfg, data, model = build(tmp_path, transfer_dir, model={"encoder_eps": 0.3, "semantic": 0.0})
    model.before_fit(data, cfg.run_dir)
    assert [(t["describe"], t["adversarial"]) for t in trained] == [("stage 1: f", 0.3)]
    assert (cfg.run_dir / "encoder" / "f.keras").is_file()


def test_conditional_d_reads_each_image_through_its_class_head(tmp_path, transfer_dir):
    """--conditional-d (on in digits-small): D's logits are the shared three plus the three of the image's class
    (source images: their label; target images: the class f's classifier names when there is no
    h), so that the same picture is judged apart under two classes; a step trains them all."""
    _, _, plain = build(tmp_path / "plain", transfer_dir, model={"conditional_d": False})
    assert plain.namer is None and plain.D.output_shape[-1] == 3
    cfg, data, model = build(tmp_path, transfer_dir, model={"d_augment": False})  # digits-small: on
    assert model.namer is model.classifier and model.D.output_shape[-1] == 3 * (1 + 3)
    images = tf.random.stateless_uniform([4, 32, 32, 1], (1, 2), -1.0, 1.0)
    raw = model.D(images, training=True).numpy().reshape(4, 4, 3)
    labels = np.array([0, 1, 2, 1])
    np.testing.assert_allclose(model.ternary(images, labels, 0).numpy(), raw[:, 0] + raw[np.arange(4), 1 + labels],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.ternary(images, labels, 0).numpy(), model.ternary(images, (labels + 1) % 3, 0))
    batch = next(iter(data.training(batch_size=2, flip=False, seed=0, first_step=0, steps=1)))
    before = snapshot(model.D)
    logs = model.train_step(batch)
    assert float(logs["finite"]) == 1.0 and np.isfinite(float(logs["D"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, snapshot(model.D)))
    with pytest.raises(ValueError, match="--conditional-d keeps each image's class"):
        build(tmp_path / "pool", transfer_dir, model={"conditional_d": True, "pool_size": 4})
