"""StarGAN: the gradient penalty, the domain-classification losses, the two-headed
discriminator and the label-conditioned generator."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_translate
from tf_translate.nn import losses, networks


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm():
    w = np.random.default_rng(0).normal(size=(1, 4, 5, 3)).astype(np.float32)
    critic = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731  gradient w everywhere
    real, fake = (np.random.default_rng(s).normal(size=(3, 4, 5, 3)).astype(np.float32) for s in (1, 2))
    penalty = losses.gradient_penalty(critic, real, fake, tf.constant([0.0, 0.3, 1.0])).numpy()
    np.testing.assert_allclose(penalty, (np.linalg.norm(w) - 1.0) ** 2 * np.ones(3), rtol=1e-5)


def test_gradient_penalty_against_numpy_on_a_patch_critic():
    # patch scores s = x² summed per patch: the gradient of their sum is 2·x̂ at the mix point
    critic = lambda x: tf.nn.avg_pool2d(tf.square(x), 2, 2, "VALID") * 4.0  # noqa: E731
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(2, 4, 6, 3)).astype(np.float32), rng.normal(size=(2, 4, 6, 3)).astype(np.float32)
    alpha = np.array([0.25, 0.8], np.float32)
    mixed = alpha[:, None, None, None] * real + (1 - alpha[:, None, None, None]) * fake
    expected = (np.linalg.norm((2 * mixed).reshape(2, -1), axis=1) - 1.0) ** 2
    np.testing.assert_allclose(losses.gradient_penalty(critic, real, fake, tf.constant(alpha)), expected, rtol=1e-5)


def test_domain_classification_single_and_multi_label_against_numpy():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]], np.float32)
    one_hot = np.array([[0, 0, 1], [1, 0, 0]], np.float32)
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(losses.domain_classification(logits, one_hot, multi_label=False),
                               -np.log((softmax * one_hot).sum(1)), rtol=1e-5)
    attributes = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    p = 1 / (1 + np.exp(-logits))
    bce = -(attributes * np.log(p) + (1 - attributes) * np.log(1 - p)).sum(1)
    np.testing.assert_allclose(losses.domain_classification(logits, attributes, multi_label=True), bce, rtol=1e-5)


@pytest.mark.parametrize("size,kernel", [(64, 1), (128, 2)])
def test_discriminator_cls_kernel_follows_the_training_size(size, kernel):
    d = networks.stargan_discriminator(image_size=size, n_domains=5, filters=4)
    assert d.get_layer("D_cls").kernel_size == (kernel, kernel)
    src, cls = d(np.zeros((2, size, size, 3), np.float32))
    assert src.shape == (2, size // 64, size // 64, 1) and cls.shape == (2, 5)
    assert not [l for l in d.layers if "norm" in l.name]
    assert all(l.negative_slope == pytest.approx(0.01) for l in d.layers if isinstance(l, keras.layers.LeakyReLU))
    with pytest.raises(ValueError, match="multiple of 64"):
        networks.stargan_discriminator(image_size=96, n_domains=5)


def test_generator_with_the_label_at_the_input():
    g = networks.resnet_generator(filters=8, n_blocks=2, conditions=3, condition_at="input", sampling_kernel=4,
                                  pad="zero")
    first = g.get_layer("c7s1_conv")
    assert first.kernel.shape[2] == 3 + 3  # image and label planes enter the first convolution
    assert g.get_layer("d1_conv").kernel_size == (4, 4) and g.get_layer("u1_deconv").kernel_size == (4, 4)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 24, 32, 3)).astype(np.float32)
    planes = lambda k: np.broadcast_to(np.eye(3, dtype=np.float32)[k], (2, 24, 32, 3))  # noqa: E731
    a, b = g([x, planes(0)]).numpy(), g([x, planes(2)]).numpy()
    assert a.shape == x.shape and not np.allclose(a, b, atol=1e-4)


def test_label_planes_tile_each_sample_s_vector_over_its_image():
    from tf_translate.nn.layers import label_planes

    labels = tf.constant([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    tiled = label_planes(labels, tf.zeros((2, 3, 5, 7))).numpy()
    assert tiled.shape == (2, 3, 5, 3)
    for i in range(2):
        np.testing.assert_array_equal(tiled[i].reshape(-1, 3), np.repeat(labels.numpy()[i:i + 1], 15, axis=0))


# --- data: a folder per domain, or an attribute table ---------------------------------------

def _coloured(folder, colours: dict[str, tuple[int, int, int]], n: int, names=None):
    """``n`` flat images of each domain's colour in ``folder/<domain>/`` (no file extension,
    as the Yale faces have none)."""
    from PIL import Image

    for domain, colour in colours.items():
        (folder / domain).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (40, 36), colour).save(folder / domain / f"{(names or 's')}{i:02d}", format="PNG")


COLOURS = {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250)}


def _data_config(source, **values):
    from tf_translate.config import DataConfig

    return DataConfig(**{"data": None if source is None else str(source), "load_size": 36, "crop_size": 32, "domains": (), **values})


def test_a_folder_per_domain_gives_one_hot_labels_with_the_images(tmp_path):
    from tf_translate.data import domains

    _coloured(tmp_path, COLOURS, 10)
    data = domains.load(_data_config(tmp_path))
    assert data.domains == ("blue", "green", "red") and not data.multi_label
    assert (len(data.train), len(data.test)) == (27, 3)  # the last tenth of each domain held out
    batch = next(iter(data.training(batch_size=8, flip=True, seed=0, first_step=0, steps=1)))
    images, labels = batch[0].numpy(), batch[1].numpy()
    assert labels.shape == (8, 3) and np.all(labels.sum(1) == 1)
    for image, label in zip(images, labels):  # each image arrives with its own domain's label
        colour = np.argmax(image.mean(axis=(0, 1)))  # 0 red, 1 green, 2 blue
        assert data.domains[int(np.argmax(label))] == ("red", "green", "blue")[colour]
    held, held_labels = data.held_out()
    assert held.shape == (3, 32, 32, 3) and held_labels.tolist() == np.eye(3).tolist()
    chosen = domains.load(_data_config(tmp_path, domains=("red", "blue")))
    assert chosen.domains == ("red", "blue") and len(chosen.train) == 18


def test_train_and_test_domain_folders(tmp_path):
    from tf_translate.data import domains

    _coloured(tmp_path / "train", COLOURS, 4)
    _coloured(tmp_path / "test", {"red": COLOURS["red"]}, 2)
    data = domains.load(_data_config(tmp_path))
    assert (len(data.train), len(data.test)) == (12, 2)
    assert data.test_labels.tolist() == [[0, 0, 1], [0, 0, 1]]


def test_embedded_default_is_three_textures_held_out_by_folder():
    from tf_translate.data import domains

    data = domains.load(_data_config(None))
    assert data.domains == ("brick", "grass", "gravel") and not data.multi_label
    assert (len(data.train), len(data.test)) == (60, 9)
    assert data.train_labels.sum(0).tolist() == [20, 20, 20] and data.test_labels.sum(0).tolist() == [3, 3, 3]
    held, _ = data.held_out()
    assert held.shape == (9, 32, 32, 3) and np.all(held[..., 0] == held[..., 2])  # greyscale, read as RGB


def test_bad_domain_folders_are_named(tmp_path):
    from tf_translate.data import DataError, domains

    _coloured(tmp_path, {"red": COLOURS["red"]}, 3)
    with pytest.raises(DataError, match="at least two domain folders"):
        domains.load(_data_config(tmp_path))
    with pytest.raises(DataError, match="no folder for domain.* happy"):
        domains.load(_data_config(tmp_path, domains=("red", "happy")))
    with pytest.raises(DataError, match="--attrs Young: .* holds domain folders, not an attribute table"):
        domains.load(_data_config(tmp_path), attrs=("Young",))


def _celeba(folder, rows, names=("Black_Hair", "Blond_Hair", "Male")):
    from PIL import Image

    (folder / "img_align_celeba").mkdir(parents=True)
    for file, _ in rows:
        Image.new("RGB", (40, 36), (120, 80, 40)).save(folder / "img_align_celeba" / file)
    lines = [str(len(rows)), " ".join(names)] + [f"{f} " + " ".join(f"{v:2d}" for v in values) for f, values in rows]
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")


def test_celeba_attribute_table_gives_multi_labels(tmp_path):
    from tf_translate.data import domains

    rows = [(f"{i:06d}.jpg", [1 if i % 2 else -1, -1 if i % 2 else 1, 1 if i % 3 == 0 else -1]) for i in range(10)]
    _celeba(tmp_path, rows)
    data = domains.load(_data_config(tmp_path), attrs=("Male", "Black_Hair"))
    assert data.multi_label and data.domains == ("Male", "Black_Hair")
    assert (len(data.train), len(data.test)) == (9, 1)
    assert data.train_labels[:4].tolist() == [[1, 0], [0, 1], [0, 0], [1, 1]]
    assert domains.load(_data_config(tmp_path / "list_attr_celeba.txt")).domains == ("Black_Hair", "Blond_Hair", "Male")


def test_attribute_csv_and_its_errors(tmp_path):
    from PIL import Image

    from tf_translate.data import DataError, domains

    for i in range(4):
        Image.new("RGB", (40, 36), (i * 50, 0, 0)).save(tmp_path / f"f{i}.png")
    (tmp_path / "attributes.csv").write_text("file,smiling,glasses\nf0.png,1,0\nf1.png,0,1\nf2.png,1,1\nf3.png,0,0\n")
    data = domains.load(_data_config(tmp_path))
    assert data.domains == ("smiling", "glasses") and data.train_labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    with pytest.raises(DataError, match="no attribute Young .*it has: smiling, glasses"):
        domains.load(_data_config(tmp_path), attrs=("Young",))
    with pytest.raises(DataError, match="attribute table: choose its attributes with --attrs, not --domains smiling"):
        domains.load(_data_config(tmp_path, domains=("smiling",)))
    (tmp_path / "attributes.csv").write_text("file,smiling\nf0.png,1\nmissing.png,0\n")
    with pytest.raises(DataError, match="1 listed image.* not found .*missing.png"):
        domains.load(_data_config(tmp_path))
    (tmp_path / "attributes.csv").write_text("file,smiling\nf0.png,yes\n")
    with pytest.raises(DataError, match="line 2: attribute values must be 0/1 or -1/1"):
        domains.load(_data_config(tmp_path))
    (tmp_path / "attributes.csv").write_text("file,smiling,glasses\nf0.png,1\n")
    with pytest.raises(DataError, match="line 2: 1 values for 2 attributes"):
        domains.load(_data_config(tmp_path))


# --- the method -------------------------------------------------------------------------------

def test_n_critic_schedule_counts_discriminator_and_generator_updates(tmp_path, domains_dir):
    from tests.conftest import tiny_config
    from tf_translate import data as tf_data
    from tf_translate import registry
    from tf_translate.training import trainer

    cfg = tiny_config("stargan", tmp_path, str(domains_dir), model={"n_critic": 3})
    data = tf_data.load("domains", cfg)
    cfg = data.complete(cfg)
    model = trainer.build_model(cfg, registry.get("stargan"), steps_per_epoch=6)
    batch = next(iter(data.training(batch_size=2, flip=True, seed=0, first_step=0, steps=1)))
    g_before = [w.numpy().copy() for w in model.G.trainable_weights]
    changed = []
    for step in range(7):
        logs = model.train_step(batch)
        g_now = [w.numpy().copy() for w in model.G.trainable_weights]
        changed.append(any(not np.array_equal(a, b) for a, b in zip(g_before, g_now)))
        g_before = g_now
        assert float(logs["finite"]) == 1.0
    # G after every 3rd update of D, as solver.py's (i + 1) % n_critic == 0: at steps 2 and 5
    assert changed == [False, False, True, False, False, True, False]
    assert int(model.d_optimizer.iterations.numpy()) == 7 and int(model.g_optimizer.iterations.numpy()) == 2
    # the generator's learning rate follows global epochs (6 steps, then decay over 1 more):
    # its next update is at step 8, epoch 1, half the rate; counted as its own epochs it would not be
    lr = cfg.train.lr
    assert float(model.g_optimizer.learning_rate) == pytest.approx(lr / 2)
    assert float(model.d_optimizer.learning_rate) == pytest.approx(lr / 2)


def test_targets_are_other_domains_or_shuffled_attributes(tmp_path, domains_dir):
    from tests.conftest import tiny_config
    from tf_translate import data as tf_data
    from tf_translate import registry
    from tf_translate.training import trainer

    cfg = tiny_config("stargan", tmp_path, str(domains_dir))
    cfg = tf_data.load("domains", cfg).complete(cfg)
    model = trainer.build_model(cfg, registry.get("stargan"), steps_per_epoch=2)
    labels = tf.one_hot([0, 1, 2, 0, 1, 2, 0, 1], 3)
    for step in range(5):
        model.step.assign(step)
        targets = model.target_labels(labels).numpy()
        assert np.all(targets.sum(1) == 1) and not np.any(np.argmax(targets, 1) == np.argmax(labels, 1))
    model.multi_label = True
    attributes = tf.constant([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]], tf.float32)
    shuffled = model.target_labels(attributes).numpy()
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, attributes.numpy()))


@pytest.fixture(scope="module")
def trained_stargan(exports):
    """The tiny stargan model every export test shares (conftest.exports)."""
    return exports("stargan")


def test_trained_stargan_validates_samples_and_exports_with_parity(trained_stargan):
    import json

    cfg, version = trained_stargan
    best = json.loads((cfg.run_dir / "best" / "best.json").read_text())
    assert np.isfinite(best["val_rec_l1"])
    assert sorted((cfg.run_dir / "samples").glob("*.png"))
    parity = json.loads((version / "tflite_parity.json").read_text())
    assert parity["signatures"]["translate"]["max_abs_error"] < 1e-3


def _png(image: np.ndarray) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_exported_stargan_takes_a_label_vector_a_domain_name_or_bytes_with_the_name(trained_stargan):
    from io import BytesIO

    from PIL import Image

    from tf_translate.export import Exported, litert_interpreter, run_tflite

    _, version = trained_stargan
    model = Exported(version)
    assert model.condition == "labels" and model.domains == ("happy", "sad", "sleepy") and not model.multi_label
    assert "classify" not in model.module.signatures  # single-label: the discriminator is not shipped
    pixels = np.random.default_rng(0).integers(0, 256, (1, 48, 40, 3), dtype=np.uint8)  # larger than training's 32
    image = pixels.astype(np.float32) / 255.0
    outs = [model(image, labels=np.eye(3)[k]) for k in range(3)]
    assert outs[0].shape == (1, 48, 40, 3) and not np.allclose(outs[0], outs[2], atol=1e-5)
    np.testing.assert_array_equal(model(image, to="sad"), outs[1])
    both = model(np.concatenate([image, image]), labels=np.eye(3)[[0, 2]])  # one label vector per image
    np.testing.assert_allclose(both, np.concatenate([outs[0], outs[2]]), atol=1e-6)
    # TFLite takes both inputs too
    interpreter = litert_interpreter((version / "model.tflite").read_bytes())
    np.testing.assert_allclose(run_tflite(interpreter, "translate", image, labels=np.eye(3, dtype=np.float32)[1:2]),
                               outs[1], atol=1e-3)
    # the bytes endpoint takes the domain by name
    endpoint = model.module.signatures["translate_bytes"]
    got = endpoint(image_bytes=tf.constant([_png(pixels[0])]), domain=tf.constant(["sad"]))["output_bytes"]
    decoded = np.asarray(Image.open(BytesIO(got[0].numpy())))
    assert np.abs(decoded.astype(int) - model.images(pixels, to="sad")[0]).max() <= 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown domain in .*angry.*; this model knows: happy, sad, sleepy"):
        endpoint(image_bytes=tf.constant([_png(pixels[0])]), domain=tf.constant(["angry"]))
    with pytest.raises(ValueError, match="unknown domain 'angry'; this model's: happy, sad, sleepy"):
        model(image, to="angry")
    with pytest.raises(ValueError, match=r"labels of shape \(2,\) for a model of 3 domains \(happy, sad, sleepy\)"):
        model(image, labels=[1.0, 0.0])
    with pytest.raises(ValueError, match="name one target domain of happy, sad, sleepy"):
        model(image)
    with pytest.raises(ValueError, match=r"style weights do not apply to this model \(it takes labels\)"):
        model(image, style_weights=[1.0, 0.0, 0.0])


def test_translate_cli_by_domain_name_and_grid(trained_stargan, tmp_path, capsys):
    from PIL import Image

    from tf_translate import cli

    _, version = trained_stargan
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "face.jpg")
    run = lambda *flags: cli.main(["--model", str(version), str(tmp_path / "face.jpg"), *flags],  # noqa: E731
                                  command="translate")
    assert run("--output", str(tmp_path / "out"), "--to", "sleepy") == 0
    assert Image.open(tmp_path / "out" / "face.png").size == (56, 40)
    assert run("--output", str(tmp_path / "grid"), "--grid") == 0
    grid = Image.open(tmp_path / "grid" / "face_grid.png")
    assert grid.width > 4 * 56 and grid.height > 40  # the input and three domains, titled
    assert run("--output", str(tmp_path / "bad"), "--to", "angry") == 2
    assert "unknown domain 'angry'" in capsys.readouterr().err and not (tmp_path / "bad" / "face.png").exists()
    assert run("--output", str(tmp_path / "bad"), "--set", "happy=1") == 2
    assert "name one target domain" in capsys.readouterr().err


def test_evaluate_reads_translations_into_every_domain_with_a_domain_classifier(trained_stargan, tmp_path):
    from PIL import Image

    from tf_translate.data import domains
    from tf_translate.data.pipeline import to_uint8
    from tf_translate.export import Exported
    from tf_translate.metrics import evaluate

    cfg, version = trained_stargan
    report = evaluate.evaluate(version, pictures=tmp_path)
    c = report["domain_classifier"]
    assert report["images"] == {"happy": 1, "sad": 1, "sleepy": 1}
    assert "KID not computed" in report["notes"][0]  # one held-out image per domain
    # each domain's translations are the other two held-out images: the mean weighs them so
    assert c["translated"] == pytest.approx(np.mean(list(c["translated_per_domain"].values())))
    line = evaluate.headline(report)
    assert line.startswith(f"a domain classifier reads {c['translated']:.1%} of the translations") and \
        f"the untranslated inputs: {c['untranslated']:.1%}" in line
    text = evaluate.markdown(report)
    assert "| translations into sad |" in text and "PSNR" not in text  # no ground truth to score against
    # the panel: each held-out image, then it translated into every domain
    x, onehot = domains.load(cfg.data).held_out()
    i = int(np.flatnonzero(onehot[:, 1])[0])  # the second row: the first held-out "sad" image
    model = Exported(version)
    picture = np.asarray(Image.open(report["panel"]))
    size, scale = x.shape[1], -(-72 // x.shape[1])
    cell = size * scale + 2
    assert picture.shape[:2] == (14 + 3 * cell + 2, 4 * cell + 2)
    expected = [x[i], *(model((x[i: i + 1] + 1.0) / 2.0, to=name)[0] * 2.0 - 1.0 for name in ("happy", "sad", "sleepy"))]
    for column, image in enumerate(expected):
        left, top = 2 + column * cell, 14 + cell + 2
        np.testing.assert_array_equal(picture[top: top + size * scale: scale, left: left + size * scale: scale],
                                      np.asarray(to_uint8(image)))


@pytest.fixture(scope="module")
def trained_attributes(tmp_path_factory):
    """A tiny multi-label model trained from an attributes.csv table."""
    from tests.conftest import tiny_config, write_images

    tmp = tmp_path_factory.mktemp("attributes")
    paths = write_images(tmp / "table", 8, seed=5)
    rows = "".join(f"{p.name},{i % 2},{(i // 2) % 2},{int(i < 4)}\n" for i, p in enumerate(paths))
    (tmp / "table" / "attributes.csv").write_text("file,smiling,glasses,young\n" + rows)
    cfg = tiny_config("stargan", tmp, str(tmp / "table"), data={"batch_size": 2}, model={"attrs": ("glasses", "smiling")})
    return cfg, tf_translate.train(cfg)


def test_attribute_model_sets_and_unsets_over_what_it_reads_off_the_image(trained_attributes, tmp_path, capsys):
    from io import BytesIO

    from PIL import Image

    from tf_translate import cli, config
    from tf_translate.export import Exported

    cfg, version = trained_attributes
    assert config.load(cfg.run_dir / "config.json").model.attrs == ("glasses", "smiling")  # saved: multi-label
    model = Exported(version)
    assert model.multi_label and model.domains == ("glasses", "smiling")
    pixels = np.random.default_rng(2).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    image = pixels.astype(np.float32) / 255.0
    read = model.classify(image)
    assert read.shape == (2, 2) and np.all((read >= 0) & (read <= 1))
    labels = model.labels_for(image, changes={"smiling": 1})
    np.testing.assert_array_equal(labels[:, 0], np.round(read[:, 0]))  # glasses: as read off the image
    np.testing.assert_array_equal(labels[:, 1], [1, 1])
    np.testing.assert_array_equal(model.labels_for(image, to="glasses", changes={"smiling": 0})[:, :], [[1, 0], [1, 0]])
    # the bytes endpoint: "smiling=1" over the attributes the model reads off the image
    got = model.module.signatures["translate_bytes"](image_bytes=tf.constant([_png(pixels[0])]),
                                                     domain=tf.constant(["smiling=1"]))["output_bytes"]
    decoded = np.asarray(Image.open(BytesIO(got[0].numpy())))
    assert np.abs(decoded.astype(int) - model.images(pixels[:1], labels=labels[0])[0]).max() <= 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="smiling=2.*: attribute values are 0 or 1"):
        model.module.signatures["translate_bytes"](image_bytes=tf.constant([_png(pixels[0])]),
                                                   domain=tf.constant(["smiling=2"]))
    with pytest.raises(ValueError, match="unknown attribute 'Young'; this model's: glasses, smiling"):
        model.labels_for(image, changes={"Young": 0})
    Image.fromarray(pixels[0]).save(tmp_path / "face.png")
    run = lambda *flags: cli.main(["--model", str(version), str(tmp_path / "face.png"), "--output",  # noqa: E731
                                   str(tmp_path / "out"), *flags], command="translate")
    assert run("--set", "smiling=1", "--unset", "glasses") == 0
    written = np.asarray(Image.open(tmp_path / "out" / "face.png"))
    np.testing.assert_array_equal(written, model.images(pixels[:1], labels=[0.0, 1.0])[0])
    assert run("--grid") == 0 and (tmp_path / "out" / "face_grid.png").exists()
    assert run("--set", "smiling=2") == 2 and "expected NAME, NAME=1 or NAME=0" in capsys.readouterr().err


def test_evaluate_refuses_attribute_models_by_name(trained_attributes):
    from tf_translate.data.images import DataError
    from tf_translate.metrics import evaluate

    _, version = trained_attributes
    with pytest.raises(DataError, match="scores single-label domains"):
        evaluate.evaluate(version)
