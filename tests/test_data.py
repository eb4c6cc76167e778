"""Data sources: folder layouts, TFDS, bad input named in one line, nothing written on failure."""

import numpy as np
import pytest

from tests.conftest import shared_data, tiny_config, write_images
from tf_translate import cli
from tf_translate import data as tf_data
from tf_translate.data.images import DataError


def _train(tmp_path, source, capsys):
    out = tmp_path / "run"
    code = cli.main(["--method", "cyclegan", "--data", str(source), "--output", str(out), "--image-size", "32",
                     "--filters", "4", "--n-blocks", "1", "--disc-filters", "4", "--epochs", "1",
                     "--decay-epochs", "0", "--steps-per-epoch", "1"], command="train")
    return code, capsys.readouterr().err, out


@pytest.mark.parametrize("case,expected", [
    ("missing", "no such folder"),
    ("one_domain", "missing trainB/"),
    ("empty_domain", "folder is empty"),
    ("all_broken", "only 1 usable image(s) of 3 file(s)"),
])
def test_bad_folders_stop_before_training(tmp_path, capsys, case, expected):
    root = tmp_path / "data"
    if case != "missing":
        write_images(root / "trainA", 3, seed=0)
    if case == "empty_domain":
        (root / "trainB").mkdir()
    if case == "all_broken":
        write_images(root / "trainB", 1, seed=1)
        (root / "trainB" / "truncated.png").write_bytes((root / "trainB" / "img_000.png").read_bytes()[:60])
        (root / "trainB" / "empty.jpg").write_bytes(b"")
    code, err, out = _train(tmp_path, root, capsys)
    assert code == 2
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert not (out / "checkpoints").exists()
    if case == "all_broken":
        assert "truncated.png" in err and "empty.jpg" in err


def test_unusual_images_are_read_and_broken_ones_skipped(tmp_path, capsys):
    root = tmp_path / "data"
    write_images(root / "trainA", 3, seed=0, mode="L")  # greyscale, like the Yale faces
    write_images(root / "trainB", 2, seed=1, mode="RGBA", names=["x.png", "y.png"])
    write_images(root / "trainB", 1, seed=2, mode="P", names=["z"])  # palette, no extension
    (root / "trainB" / "README.txt").write_text("stray notes")
    cfg = tiny_config("cyclegan", tmp_path, str(root))
    data = tf_data.load("unpaired", cfg)
    assert len(data.train[0]) == 3 and len(data.train[1]) == 3
    assert "README.txt" in capsys.readouterr().err
    image = data.train[0].load(0)
    assert image.shape == (36, 36, 3) and np.array_equal(image[..., 0], image[..., 2])  # grey -> RGB


def test_crop_larger_than_load_is_refused(tmp_path, unpaired_dir):
    cfg = tiny_config("cyclegan", tmp_path, str(unpaired_dir), data={"crop_size": 64, "load_size": 40})
    with pytest.raises(DataError, match="crop size 64 is larger than load size 40"):
        tf_data.load("unpaired", cfg)


def test_tfds_source_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    cfg = tiny_config("cyclegan", tmp_path, "tfds:cycle_gan/horse2zebra")
    with tfds.testing.mock_data(num_examples=3):
        data = tf_data.load("unpaired", cfg)
    assert data.domains == ("horse", "zebra")
    assert len(data.train[0]) == 3 and data.test is not None
    batch = next(iter(data.training(batch_size=1, flip=True, seed=0, first_step=0, steps=1)))
    assert batch[0].shape == (1, 32, 32, 3)


def test_embedded_default_data_is_shipped(tmp_path):
    cfg = tiny_config("cyclegan", tmp_path, None, data={"domains": ("cartoon", "photo")})
    data = tf_data.load("unpaired", cfg)
    assert len(data.train[0]) >= 50 and len(data.train[1]) >= 50 and data.test is not None


def test_yale_faces_read_as_rgb():
    folder = shared_data("yalefaces")
    path = sorted(p for p in folder.iterdir() if p.name.startswith("subject01."))[0]
    from tf_translate.data.images import read_image

    image = read_image(path)
    assert image.shape == (243, 320, 3) and np.array_equal(image[..., 0], image[..., 1])
