"""Curation by clustering (scripts/cluster.py) on the embedded cartoon and photo images."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tf_translate import cli
from tf_translate.nn import features

SAMPLES = Path(__file__).resolve().parents[1] / "tf_translate" / "samples" / "cartoon2photo"
pytestmark = pytest.mark.skipif(not (features.cache_dir() / features.CACHE_FILE).exists(),
                                reason=f"VGG-16 weights not cached at {features.cache_dir()}: run "
                                       "`python scripts/fetch_weights.py` (scripts/test.sh does)")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """6 cartoon frames and 6 photo crops (of one astronaut) in one folder, and a file that is not an image."""
    folder = tmp_path_factory.mktemp("mixed") / "images"
    folder.mkdir()
    for domain, prefix in (("trainA", "cartoon"), ("trainB", "photo")):
        for path in sorted((SAMPLES / domain).iterdir())[:6]:
            shutil.copy(path, folder / f"{prefix}_{path.name}")
    (folder / "notes.jpg").write_text("not an image")
    return folder


def read(table: Path) -> list[dict]:
    with open(table, newline="") as f:
        return list(csv.DictReader(f))


def test_clusters_separate_cartoons_from_photos_and_drop_keeps_the_rest(mixed, tmp_path, capsys):
    sheets = tmp_path / "sheets"
    assert cli.main([str(mixed), "--k", "2", "--sheets", str(sheets)], command="cluster") == 0
    assert "notes.jpg" in capsys.readouterr().err  # named and skipped
    rows = read(sheets / "clusters.csv")
    assert len(rows) == 12 and {p.name for p in sheets.glob("cluster_*.jpg")} == {"cluster_0.jpg", "cluster_1.jpg"}
    by_kind = {kind: {r["cluster"] for r in rows if r["file"].startswith(kind)} for kind in ("cartoon", "photo")}
    assert len(by_kind["cartoon"]) == 1 and len(by_kind["photo"]) == 1 and by_kind["cartoon"] != by_kind["photo"]
    cartoon = int(by_kind["cartoon"].pop())
    kept = tmp_path / "kept"
    assert cli.main([str(mixed), "--k", "2", "--sheets", str(sheets), "--drop", str(cartoon), "--output", str(kept)],
                    command="cluster") == 0
    assert "reusing" in capsys.readouterr().err  # the same folder and settings: not embedded again
    assert sorted(p.name for p in kept.iterdir()) == sorted(r["file"] for r in rows if r["file"].startswith("photo"))


def test_same_seed_same_clusters(mixed, tmp_path):
    from tf_translate.apps import cluster

    first = read(cluster.cluster_folder(mixed, tmp_path / "one", k=3, seed=4))
    again = read(cluster.cluster_folder(mixed, tmp_path / "two", k=3, seed=4))
    assert [(r["file"], r["cluster"]) for r in first] == [(r["file"], r["cluster"]) for r in again]
    sizes = [sum(r["cluster"] == str(c) for r in first) for c in range(3)]
    assert sizes == sorted(sizes, reverse=True)  # numbered by size, largest first


def test_bad_requests_are_named(mixed, tmp_path, capsys):
    for argv, message in [([str(mixed), "--k", "40", "--sheets", str(tmp_path / "s")], "--k 40: between 1 and"),
                          ([str(tmp_path / "absent")], "absent: no such folder"),
                          ([str(mixed), "--k", "2", "--sheets", str(tmp_path / "s2"), "--drop", "7", "--output",
                            str(tmp_path / "out")], "--drop 7: no such cluster")]:
        assert cli.main(argv, command="cluster") == 2
        assert message in capsys.readouterr().err
