"""Prepared datasets (scripts/prepare.py): every data kind converts to sharded TFRecords that
give training exactly what the original layout gives, record by record from disk."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

import tf_translate
from tests.conftest import DATA_FIXTURES, tiny_config
from tf_translate import cli, registry
from tf_translate import data as tf_data
from tf_translate.data import pipeline, records
from tf_translate.data.images import DataError
from tf_translate.training import trainer

LAYOUT = {"pix2pix": ["--frames-per-image", "3"]}  # as tiny_config's


def prepare(method: str, source, out, *extra) -> None:
    argv = ["--method", method, "--data", str(source), "--output", str(out), "--load-size", "36",
            "--crop-size", "32", *extra]
    assert cli.main(argv, command="prepare") == 0


def batches(data, **kwargs) -> list:
    return [[t.numpy() for t in (b if isinstance(b, tuple) else (b,))]
            for b in data.training(batch_size=2, flip=True, seed=3, first_step=1, steps=3, **kwargs)]


@pytest.mark.parametrize("method", sorted(DATA_FIXTURES))
def test_records_give_what_the_folders_give(method, request, tmp_path, capsys):
    folder = request.getfixturevalue(DATA_FIXTURES[method])
    prepare(method, folder, tmp_path / "records", "--shards", "2", *LAYOUT.get(method, []))
    assert "train with --method" in capsys.readouterr().out
    kind = registry.get(method).data_kind
    original = tiny_config(method, tmp_path, str(folder))
    prepared = dataclasses.replace(original, data=dataclasses.replace(original.data, data=str(tmp_path / "records")))
    a, b = tf_data.load(kind, original), tf_data.load(kind, prepared)
    done_a, done_b = a.complete(original), b.complete(prepared)
    assert done_a.model == done_b.model and done_a.data.domains == done_b.data.domains
    for x, y in zip(batches(a), batches(b)):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    held_a, held_b = a.held_out(), b.held_out()
    for u, v in zip(held_a if isinstance(held_a, tuple) else (held_a,), held_b if isinstance(held_b, tuple) else (held_b,)):
        if u is not None:
            np.testing.assert_array_equal(u, v)


def test_a_record_is_read_alone(unpaired_dir, tmp_path, monkeypatch):
    prepare("cyclegan", unpaired_dir, tmp_path / "records", "--shards", "3")
    cfg = tiny_config("cyclegan", tmp_path, str(tmp_path / "records"))
    source = tf_data.load("unpaired", cfg).train[0]
    assert isinstance(source, records.RecordSource) and len(source.files) == 3
    reads = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: reads.append(n) or real(fd, n, offset))
    for i in range(len(source)):
        source.load(i)
    # one read per image, of that record's bytes only; nothing kept between them
    assert reads == [int(n) for n in source.index[:, 2]] and not hasattr(source, "_cache")
    source.load(0)
    assert len(reads) == len(source) + 1


def test_training_resumes_from_records(unpaired_dir, tmp_path):
    prepare("cyclegan", unpaired_dir, tmp_path / "records")
    cfg = tiny_config("cyclegan", tmp_path, str(tmp_path / "records"), export={"export": False})
    tf_translate.train(cfg)
    assert trainer.checkpoint_step(cfg.run_dir / "checkpoints") == 4


def test_worker_parts_make_up_each_global_batch():
    fn = lambda j: j  # noqa: E731
    whole = [b.numpy().tolist() for b in pipeline.indexed(8, 12, 4, fn)]
    parts = [[b.numpy().tolist() for b in pipeline.indexed(8, 12, 4, fn, part=(i, 2))] for i in range(2)]
    assert whole == [[8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19]]
    assert [p0 + p1 for p0, p1 in zip(*parts)] == whole


def test_bad_records_are_named(unpaired_dir, strips_dir, tmp_path, capsys):
    out = tmp_path / "records"
    prepare("cyclegan", unpaired_dir, out)
    cfg = tiny_config("cyclegan", tmp_path, str(out))
    with pytest.raises(DataError, match="prepared for cyclegan .unpaired data.; --method pix2pix reads paired"):
        tf_data.load("paired", tiny_config("pix2pix", tmp_path, str(out)))
    wrong_size = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, load_size=40))
    with pytest.raises(DataError, match="prepared at load size 36, this run asks --load-size 40"):
        tf_data.load("unpaired", wrong_size)
    shard = next(out.glob("train.0-*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{shard.name}: truncated"):
        tf_data.load("unpaired", cfg)
    shard.unlink()
    with pytest.raises(DataError, match=f"{shard.name}: shard missing"):
        tf_data.load("unpaired", cfg)
    assert cli.main(["--method", "cyclegan", "--data", str(unpaired_dir), "--output", str(out)],
                    command="prepare") == 2
    assert "not empty; prepare into a new folder" in capsys.readouterr().err
    assert cli.main(["--method", "pix2pix", "--data", str(strips_dir), "--output", str(tmp_path / "x"),
                     "--shards", "-1"], command="prepare") == 2
    assert "--shards -1" in capsys.readouterr().err
