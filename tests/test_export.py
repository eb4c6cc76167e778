"""Export: signatures equal the Keras generators, loaded in a fresh process; TFLite parity."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_translate import cli, export
from tf_translate.data import unpaired
from tf_translate.data.pipeline import to_uint8
from tf_translate.metrics import evaluate, fid
from tf_translate.nn import features
from tf_translate.training import trainer


def keras_translate(net, images01, multiple=4):
    h, w = images01.shape[1:3]
    padded = np.pad(images01 * 2 - 1, ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0)), mode="symmetric")
    return (net(padded).numpy()[:, :h, :w] + 1) / 2


@pytest.fixture(scope="module")
def restored(trained):
    cfg, version = trained
    return cfg, version, trainer.restore(cfg)


def test_layout_and_atomic_versions(trained):
    cfg, version = trained
    assert version.name == "1" and version.parent == cfg.export_dir
    for name in ("saved_model.pb", "variables", "config.json", "model.tflite", "tflite_parity.json"):
        assert (version / name).exists(), name
    assert not [p for p in version.parent.iterdir() if p.name.startswith(".tmp")]
    assert json.loads((version / "config.json").read_text())["method"] == "cyclegan"


def test_fresh_process_signatures_equal_keras(restored, tmp_path):
    cfg, version, model = restored
    rng = np.random.default_rng(0)
    images = rng.random((2, 37, 30, 3), dtype=np.float32)  # odd sizes: padded and cropped back
    png = io.BytesIO()
    Image.fromarray((images[0] * 255).round().astype(np.uint8)).save(png, "PNG")
    np.save(tmp_path / "in.npy", images)
    (tmp_path / "in.png").write_bytes(png.getvalue())
    script = f"""
import numpy as np, tensorflow as tf
m = tf.saved_model.load({str(version)!r})
x = np.load({str(tmp_path / 'in.npy')!r})
out = {{}}
for name in ("a2b", "b2a", "serving_default"):
    out[name] = m.signatures[name](images=tf.constant(x))["images"].numpy()
png = open({str(tmp_path / 'in.png')!r}, "rb").read()
out["bytes"] = tf.io.decode_png(m.signatures["a2b_bytes"](image_bytes=tf.constant([png]))["output_bytes"][0]).numpy()
np.savez({str(tmp_path / 'out.npz')!r}, **out)
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["a2b"], keras_translate(model.G, images), atol=1e-5)
    np.testing.assert_allclose(out["b2a"], keras_translate(model.F, images), atol=1e-5)
    np.testing.assert_array_equal(out["serving_default"], out["a2b"])
    expected = np.asarray(to_uint8(keras_translate(model.G, images[:1])[0] * 2 - 1))
    # the bytes endpoint sees the 8-bit PNG of the input, so allow a little rounding
    assert out["bytes"].shape == (37, 30, 3)
    assert np.abs(out["bytes"].astype(int) - expected.astype(int)).max() <= 3


def test_tflite_parity_and_builtin_ops_only(trained):
    _, version = trained
    report = json.loads((version / "tflite_parity.json").read_text())
    assert set(report["signatures"]) == {"a2b", "b2a"}
    for entry in report["signatures"].values():
        assert entry["max_abs_error"] <= export.PARITY_TOLERANCE
    flat = (version / "model.tflite").read_bytes()
    assert export.flex_ops(flat) == []
    interpreter = export.litert_interpreter(flat)
    x = np.random.default_rng(1).random((1, 29, 41, 3), dtype=np.float32)  # another size, resized at run time
    got = export.run_tflite(interpreter, "b2a", x)
    want = export.Exported(version)(x, to="a")
    assert np.abs(got - want).max() <= export.PARITY_TOLERANCE


def test_bytes_endpoint_reads_alpha_grey_and_webp(trained):
    _, version = trained
    m = tf.saved_model.load(str(version))
    rgba = np.zeros((16, 20, 4), np.uint8)
    rgba[..., 0] = 255  # fully transparent red: composited on white, so it equals a white image
    white = np.full((16, 20, 3), 255, np.uint8)

    def encode(array, fmt):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, fmt)
        return buf.getvalue()

    outs = m.signatures["a2b_bytes"](image_bytes=tf.constant(
        [encode(rgba, "PNG"), encode(white, "PNG"), encode(white[..., 0], "GIF"), encode(white, "WEBP")]))
    decoded = [tf.io.decode_png(o).numpy() for o in outs["output_bytes"]]
    assert all(d.shape == (16, 20, 3) for d in decoded)
    for other in decoded[1:]:
        np.testing.assert_array_equal(decoded[0], other)


def test_export_command_best_and_latest(trained, tmp_path, capsys):
    cfg, _ = trained
    code = cli.main(["--run", str(cfg.run_dir), "--export-dir", str(tmp_path / "e"), "--best"], command="export")
    assert code == 0 and (tmp_path / "e" / "1" / "saved_model.pb").exists()
    code = cli.main(["--run", str(tmp_path / "nothing")], command="export")
    assert code == 2 and "config.json" in capsys.readouterr().err
    code = cli.main(["--run", str(cfg.run_dir), "--export-dir", str(tmp_path / "e"), "--tflite",
                     "float16,int8,int16x8"], command="export")
    assert code == 0
    version = tmp_path / "e" / "2"
    assert all((version / export.tflite_file(v)).exists() for v in ("float32", "float16", "int8", "int16x8"))
    report = json.loads((version / "tflite_parity.json").read_text())
    assert sorted(report["variants"]) == ["float16", "int16x8", "int8"]
    assert report["variants"]["float16"]["a2b"]["psnr_db"] > 40
    # int16x8 takes the training size (its signatures have no padding), and is checked there
    runner = export.litert_interpreter((version / export.tflite_file("int16x8")).read_bytes()).get_signature_runner("a2b")
    assert list(runner.get_input_details()["images"]["shape_signature"][1:]) == [cfg.data.crop_size] * 2 + [3]
    assert report["variants"]["int16x8"]["a2b"]["shape"][:2] == [cfg.data.crop_size] * 2
    assert report["variants"]["int16x8"]["a2b"]["psnr_db"] > report["variants"]["int8"]["a2b"]["psnr_db"]
    code = cli.main(["--run", str(cfg.run_dir), "--tflite", "int4"], command="export")
    assert code == 2 and "unknown TFLite variant int4" in capsys.readouterr().err


def test_translate_odd_sized_image_and_domains(trained, tmp_path, capsys):
    _, version = trained
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (33, 47, 3), np.uint8)).save(folder / "odd.jpg")
    (folder / "notes.txt").write_text("not an image")
    code = cli.main(["--model", str(version), str(folder), "--output", str(tmp_path / "out"), "--to", "a"],
                    command="translate")
    assert code == 0
    out = Image.open(tmp_path / "out" / "odd.png")
    assert out.size == (47, 33)
    assert "notes.txt" in capsys.readouterr().err
    code = cli.main(["--model", str(version), str(folder), "--output", str(tmp_path / "o2"), "--to", "zebra"],
                    command="translate")
    assert code == 2 and "zebra" in capsys.readouterr().err


def test_translate_batches_equal_one_at_a_time(trained, tmp_path):
    from tf_translate.apps import translate

    _, version = trained
    rng = np.random.default_rng(4)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, shape in enumerate([(32, 40), (32, 40), (32, 40), (24, 24), (32, 40)]):  # runs of one size
        Image.fromarray(rng.integers(0, 255, (*shape, 3), np.uint8)).save(folder / f"{i}.png")
    batched = translate.translate_files(version, [str(folder)], tmp_path / "b", batch=2)
    single = translate.translate_files(version, [str(folder)], tmp_path / "s", batch=1)
    assert [p.name for p in batched] == [p.name for p in single] == [f"{i}.png" for i in range(5)]
    for a, b in zip(batched, single):
        assert np.abs(np.asarray(Image.open(a), int) - np.asarray(Image.open(b), int)).max() <= 1
    with pytest.raises(ValueError, match="--batch 0"):
        translate.translate_files(version, [str(folder)], tmp_path / "z", batch=0)


def test_evaluate_pairs_by_name(trained, tmp_path):
    _, version = trained
    code = cli.main(["--model", str(version), "--output", str(tmp_path / "report")], command="evaluate")
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["paired"] == 2
    for direction in ("a2b", "b2a"):
        for key in ("translated_vs_target", "input_vs_target"):
            s = report[direction][key]
            assert np.isfinite(s["psnr"]) and -1 <= s["ssim"] <= 1 and 0 <= s["l1"] <= 1
    text = (tmp_path / "report.md").read_text()
    assert "| a2b |" in text and f"Panel: `{tmp_path / 'translations.png'}`" in text
    # the panel: each held-out image of either domain beside its translation, 32 px shown at 96
    picture = np.asarray(Image.open(tmp_path / "translations.png"))
    assert picture.shape == (14 + 2 * 98 + 2, 4 * 98 + 2, 3)
    cfg, _ = trained
    x, _ = unpaired.load(cfg.data).held_out()
    made = np.asarray(to_uint8(export.Exported(version)((x[1:2] + 1.0) / 2.0, to="b") * 2.0 - 1.0))[0]
    tile = picture[14 + 2 + 98: 14 + 2 + 98 + 96: 3, 2 + 98: 2 + 98 + 96: 3]  # row 2, column 2
    assert np.abs(tile.astype(int) - made).max() <= 1
    if (features.cache_dir() / features.CACHE_FILE).exists():  # LPIPS beside PSNR on the pairs
        assert 0 <= report["a2b"]["translated_vs_target"]["lpips"] < 1
        assert report["a2b"]["input_vs_target"]["lpips"] > 0
    if (features.cache_dir() / fid.CACHE_FILE).exists():  # FID and KID over all held-out images
        d = report["distribution"]["b2a"]
        assert d["images"] == [2, 2] and d["translated_vs_target"]["fid"] > 0
        assert np.isfinite(d["input_vs_target"]["kid"]) and "| b2a | translated vs target | 2 vs 2 |" in text
        closer = sum(v["translated_vs_target"]["kid"] < v["input_vs_target"]["kid"]
                     for v in report["distribution"].values())
        assert evaluate.headline(report).endswith(f"in {closer} of 2 directions")


def test_train_with_evaluate_scores_the_export_it_made(trained, monkeypatch, capsys):
    import tf_translate

    cfg, version = trained
    made = []
    monkeypatch.setattr(tf_translate, "train", lambda c: made.append(c) or version)  # the training is tested elsewhere
    assert cli.main(["--method", "cyclegan", "--data", cfg.data.data, "--output", str(cfg.run_dir), "--evaluate"],
                    command="train") == 0
    out = capsys.readouterr().out
    report = json.loads((version / "evaluation.json").read_text())
    assert made and out.startswith(f"{version}\n") and f"in one line: {evaluate.headline(report)}" in out
    assert cli.main(["--method", "cyclegan", "--data", cfg.data.data, "--no-export", "--evaluate"], command="train") == 2
    assert capsys.readouterr().err == "error: --evaluate scores the export: drop --no-export\n" and len(made) == 1


def test_evaluate_run_scores_the_final_and_the_best_checkpoint(trained, tmp_path):
    cfg, _ = trained
    best = json.loads((cfg.run_dir / "best" / "best.json").read_text())["step"]
    assert cli.main(["--run", str(cfg.run_dir), "--output", str(tmp_path / "report")], command="evaluate") == 0
    report = json.loads((tmp_path / "report.json").read_text())
    final = trainer.checkpoint_step(cfg.run_dir / "checkpoints")
    assert report["checkpoints"]["final"]["step"] == final and report["checkpoints"]["best"]["step"] == best
    assert report["best_by"] == "lowest val_cycle_l1"
    for which in ("final", "best"):
        assert np.isfinite(report["checkpoints"][which]["a2b"]["translated_vs_target"]["psnr"])
    text = (tmp_path / "report.md").read_text()
    assert f"## Final checkpoint: {cfg.run_dir} (final checkpoint, step {final})" in text and "optimistic" in text
    assert not list(cfg.run_dir.glob("exported*"))  # the evaluation's exports are temporary


def test_an_op_without_a_builtin_kernel_fails_the_export(tmp_path):
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 1], tf.float32, name="images")])
        def translate(self, images):
            s = tf.linalg.svd(images[..., 0], compute_uv=False)  # no TFLite builtin
            return {"images": images + tf.reduce_sum(s)}

    module = Module()
    tf.saved_model.save(module, str(tmp_path), signatures={"translate": module.translate})
    with pytest.raises(export.ExportError, match="builtin ops only"):
        export.convert_tflite(tmp_path, ["translate"], "float32")


def test_tiled_translation_equals_whole_image(trained):
    """Tiles normalised with the whole image's instance-norm statistics agree with the whole
    image; with each tile's own statistics (what plain tiling does) they visibly do not."""
    _, version = trained
    model = export.Exported(version)
    assert "a2b_tile" in model.module.signatures and "a2b_statistics" in model.module.signatures
    image = np.random.default_rng(5).random((70, 90, 3), dtype=np.float32)
    image[:, 45:] *= 0.3  # halves that differ, so per-tile statistics differ
    whole = model(image[None], to="b")[0]
    tiled = model.tiled(image, to="b", tile=48, overlap=16)
    assert tiled.shape == whole.shape
    naive = np.zeros_like(whole)
    for top in export.tile_starts(70, 48, 16, 4):
        for left in export.tile_starts(90, 48, 16, 4):
            naive[top: top + 48, left: left + 48] = model(image[None, top: top + 48, left: left + 48], to="b")[0]
    ours, theirs = np.abs(tiled - whole), np.abs(naive - whole)
    assert ours.mean() < 0.01 and ours.mean() < theirs.mean() / 4
    assert export.tile_starts(100, 48, 16, 8) == [0, 32, 64] and export.tile_starts(40, 48, 16) == [0]
    with pytest.raises(ValueError, match="overlap must be under half"):
        model.tiled(image, tile=32, overlap=16)


def test_translate_cli_tiles_large_images(trained, tmp_path):
    _, version = trained
    image = (np.random.default_rng(6).random((70, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "big.png")
    whole = export.Exported(version).images(image[None], to="b")[0]
    args = ["--model", str(version), str(tmp_path / "big.png"), "--to", "b", "--output"]
    assert cli.main([*args, str(tmp_path / "t"), "--tile", "48", "--overlap", "20"], command="translate") == 0
    assert cli.main([*args, str(tmp_path / "w"), "--tile", "0"], command="translate") == 0
    tiled = np.asarray(Image.open(tmp_path / "t" / "big.png"), int)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "w" / "big.png")), whole)
    assert tiled.shape == whole.shape and np.abs(tiled - whole).mean() < 3


def test_translate_never_writes_two_inputs_to_one_name(trained, tmp_path, capsys):
    """plain.bmp and plain.webp keep their extension in their outputs' names; the same name in
    another folder, or an input inside the output folder, gets a number; the count printed is
    the count written. With nothing translated, exit 2."""
    _, version = trained
    rng = np.random.default_rng(6)
    folder, other, out = tmp_path / "in", tmp_path / "other", tmp_path / "out"
    for place in (folder, other, out):
        place.mkdir()
    picture = lambda: Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8))  # noqa: E731
    picture().save(folder / "plain.bmp")
    picture().save(folder / "plain.webp")
    picture().save(folder / "solo.jpg")
    picture().save(other / "solo.jpg")
    picture().save(out / "kept.png")
    before = (out / "kept.png").read_bytes()
    code = cli.main(["--model", str(version), str(folder), str(other), str(out / "kept.png"), "--output", str(out)],
                    command="translate")
    captured = capsys.readouterr()
    assert code == 0 and "wrote 5 image(s)" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["kept-2.png", "kept.png", "plain_bmp.png", "plain_webp.png",
                                                     "solo-2.png", "solo.png"]
    assert (out / "kept.png").read_bytes() == before  # the input is never overwritten
    assert f"{other / 'solo.jpg'} -> {out / 'solo-2.png'}" in captured.err and "kept.png would overwrite" in captured.err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (broken / "b.jpg").write_text("not an image")
    code = cli.main(["--model", str(version), str(broken), "--output", str(tmp_path / "none")], command="translate")
    err = capsys.readouterr().err
    assert code == 2 and "a.png" in err and "b.jpg" in err and "nothing written: none of the 2 input file(s)" in err


def test_exported_limit_refuses_and_splits_in_python(trained, tmp_path, capsys):
    """An export made with --max-pixels: its signatures refuse a larger request, Exported splits
    a batch into calls within the limit (same result), and translate names an image over it."""
    from tf_translate.export import Exported

    cfg, version = trained
    code = cli.main(["--run", str(cfg.run_dir), "--export-dir", str(tmp_path / "e"), "--max-pixels", "2000"],
                    command="export")
    assert code == 0
    small = Exported(tmp_path / "e" / "1")
    assert small.max_pixels == 2000 and Exported(version).max_pixels == cfg.export.max_pixels
    images = np.random.default_rng(7).random((5, 24, 32, 3), np.float32)  # 768 pixels each: 2 per call
    np.testing.assert_allclose(small(images), Exported(version)(images), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="5 image.s. of 32x24 = 3840 pixels"):
        small.module.signatures["a2b"](images=tf.constant(images))
    with pytest.raises(ValueError, match="48x48 image is over the limit of 2,000 pixels"):
        small(np.zeros((1, 48, 48, 3), np.float32))
    with pytest.raises(ValueError, match="tiles of 64x64 are over the limit of 2,000 pixels"):
        small.tiled(np.zeros((100, 100, 3), np.float32), tile=64, overlap=8)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(folder / "big.png")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(folder / "fits.png")
    code = cli.main(["--model", str(tmp_path / "e" / "1"), str(folder), "--output", str(tmp_path / "o"),
                     "--tile", "0"], command="translate")
    assert code == 0 and [p.name for p in (tmp_path / "o").iterdir()] == ["fits.png"]
    assert "big.png: 48x48 is over the limit of 2,000 pixels" in capsys.readouterr().err
    code = cli.main(["--run", str(cfg.run_dir), "--export-dir", str(tmp_path / "e"), "--max-pixels", "0"],
                    command="export")
    assert code == 2 and "must be at least 1" in capsys.readouterr().err


def test_export_removes_stale_staging_folders_only(trained, tmp_path, capsys):
    """Staging folders of exports killed part-way (no live owner holds their lock) are removed by
    the next export, which says so; a live export's, numeric versions and other files stay."""
    import fcntl

    cfg, _ = trained
    root = tmp_path / "e"
    (root / "3").mkdir(parents=True)
    (root / "3" / "saved_model.pb").write_bytes(b"a version")
    for name in (".tmp-4-dead0001", ".tmp-4-legacy_x", ".tmp-5-alive001", ".other"):
        (root / name).mkdir()
        (root / name / "variables.data").write_bytes(bytes(1000))
    (root / ".tmp-4-dead0001.lock").touch()  # its owner died: no lock held
    alive = open(root / ".tmp-5-alive001.lock", "w")  # held, as a running export holds it
    fcntl.flock(alive, fcntl.LOCK_EX)
    (root / ".tmp-9-gone0001.lock").touch()  # a lock left without its folder
    try:
        code = cli.main(["--run", str(cfg.run_dir), "--export-dir", str(root)], command="export")
        err = capsys.readouterr().err
    finally:
        alive.close()
    assert code == 0
    assert sorted(p.name for p in root.iterdir()) == [".other", ".tmp-5-alive001", ".tmp-5-alive001.lock", "3", "4"]
    assert "removed the staging folder(s) of 2 interrupted export(s)" in err and ".tmp-4-dead0001" in err
