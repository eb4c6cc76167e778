"""Import of PyTorch CycleGAN / pix2pix reference generators (scripts/import_torch.py).

Where torch is installed (pip install torch==2.13.0) every architecture and norm mode is
checked against the reference network run by torch; elsewhere the committed fixtures
(tests/data/torch, written by make_fixtures.py with torch) stand in for it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tf_translate import cli
from tf_translate.export import Exported, torch_import
from tf_translate.nn.torch_checkpoint import CheckpointError, read_state_dict

FIXTURES = Path(__file__).resolve().parent / "data" / "torch"


def reference(name: str):
    arrays = np.load(FIXTURES / "reference.npz")
    return arrays[f"{name}_input"].astype(np.float32) / 255, arrays[f"{name}_output"].astype(np.float32)


# (arch, norm, use_dropout, test.py --eval, input height and width)
CASES = [("resnet_6blocks", "instance", False, False, (36, 44)),
         ("resnet_9blocks", "batch", True, True, (20, 28)),
         ("resnet_9blocks", "batch", False, False, (20, 28)),
         ("unet_128", "batch", True, False, (128, 128)),
         ("unet_256", "batch", False, True, (256, 256)),
         ("unet_256", "instance", False, False, (256, 256))]


@pytest.mark.parametrize("arch,norm,dropout,running,size", CASES)
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_generator_equals_pytorch_reference(tmp_path, arch, norm, dropout, running, size, zipped):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    from tests import torch_reference

    net = torch_reference.build(arch, 4, norm, dropout)
    path = tmp_path / "latest_net_G.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zipped)
    ours, info = torch_import.generator(arch, read_state_dict(path), running_stats=running)
    assert info["batch_norm"] == (norm == "batch")
    x = np.random.default_rng(1).uniform(-1, 1, (2, *size, 3)).astype(np.float32)
    net.train(not running)
    for module in net.modules():  # the export is deterministic: dropout off
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    with torch.no_grad():  # one image per call: batch statistics of one image, as test.py runs it
        want = np.concatenate([net(torch.from_numpy(image[None]).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
                               for image in x])
    np.testing.assert_allclose(ours(x).numpy(), want, atol=1e-4)


def test_state_dict_reader_matches_torch(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    state = {"a": torch.randn(3, 4), "b": torch.randn(4, 5).t(), "c": torch.randn(6).half(),
             "d": torch.randn(2, 2).bfloat16(), "e": torch.arange(10)[2:5], "module.f": torch.tensor(7)}
    for zipped in (True, False):
        torch.save(state, tmp_path / "x.pth", _use_new_zipfile_serialization=zipped)
        got = read_state_dict(tmp_path / "x.pth")
        assert set(got) == set(state)
        for key, value in state.items():
            np.testing.assert_array_equal(got[key], value.float().numpy() if value.is_floating_point() else value.numpy())


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The committed ResNet fixture through the command line, with every TFLite variant."""
    root = tmp_path_factory.mktemp("imported")
    calibration = root / "calibration"
    calibration.mkdir()
    from PIL import Image

    images, _ = reference("resnet_6blocks")
    Image.fromarray((images[0] * 255).round().astype(np.uint8)).save(calibration / "one.png")
    assert cli.main([str(FIXTURES / "resnet_6blocks.pth"), "--arch", "resnet_6blocks", "--export-dir",
                     str(root / "exported"), "--name", "horse2zebra", "--tflite", "float16,int8",
                     "--calibration", str(calibration)], command="import-torch") == 0
    return root / "exported" / "1"


def test_imported_export_equals_pytorch_outputs(imported):
    """The SavedModel signature and the float32 TFLite model give torch's outputs."""
    model = Exported(imported)
    assert model.names == ["horse2zebra"] and model.domains == ("horse", "zebra")
    images, want = reference("resnet_6blocks")
    np.testing.assert_allclose(model(images, to="zebra"), want, atol=2e-3)  # float16-stored reference
    from tf_translate.export import litert_interpreter, run_tflite

    interpreter = litert_interpreter((imported / "model.tflite").read_bytes())
    np.testing.assert_allclose(run_tflite(interpreter, "horse2zebra", images), want, atol=2e-3)
    report = __import__("json").loads((imported / "tflite_parity.json").read_text())
    assert set(report["variants"]) == {"float16", "int8"}
    assert report["variants"]["float16"]["horse2zebra"]["psnr_db"] > 40


def test_legacy_unet_with_running_statistics_equals_pytorch(tmp_path):
    """The legacy (pre-1.6) format, batch norm with running statistics (test.py --eval)."""
    ours, info = torch_import.generator("unet_128", read_state_dict(FIXTURES / "unet_128.pth"), running_stats=True)
    assert info["norm"] == "batch norm, running statistics"
    images, want = reference("unet_128")
    np.testing.assert_allclose((ours(images * 2 - 1).numpy() + 1) / 2, want, atol=2e-3)
    # each image's own statistics (test.py's default) is another function of the same weights
    other, _ = torch_import.generator("unet_128", read_state_dict(FIXTURES / "unet_128.pth"))
    assert np.abs((other(images * 2 - 1).numpy() + 1) / 2 - want).max() > 0.01


def test_wrong_architecture_names_what_does_not_match():
    state = read_state_dict(FIXTURES / "resnet_6blocks.pth")
    with pytest.raises(CheckpointError, match=r"resnet_6blocks.pth as resnet_9blocks: does not match: missing "
                                              r"model\.16\.conv_block\.1\.weight.*unexpected model\.16\.bias, model\.16\.weight.*"
                                              r"\(its keys fit --arch resnet_6blocks\)$"):
        torch_import.generator("resnet_9blocks", state, label="resnet_6blocks.pth")
    with pytest.raises(CheckpointError, match=r"missing model\.model\.0\.weight.*unexpected model\.1\.bias, model\.1\.weight"):
        torch_import.generator("unet_256", state)
    state["model.4.weight"] = state["model.4.weight"][:, :1]
    with pytest.raises(CheckpointError, match=r"wrong shape: model\.4\.weight is \(4, 1, 3, 3\), "
                                              r"expected \(4, 2, 3, 3\)"):
        torch_import.generator("resnet_6blocks", state)


def test_bad_checkpoint_files(tmp_path, capsys):
    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("hello")
    data = (FIXTURES / "resnet_6blocks.pth").read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    legacy_truncated = tmp_path / "legacy.pth"
    legacy_truncated.write_bytes((FIXTURES / "unet_128.pth").read_bytes()[:-100])
    # a pickle of something other than tensors (a whole module would be): refused, never run
    other = tmp_path / "module.pth"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("module/data.pkl", pickle.dumps({"net": __import__("collections").Counter()}))
    for path, message in [(not_torch, "not a PyTorch checkpoint"), (truncated, "damaged or truncated zip"),
                          (legacy_truncated, "truncated"), (other, "not a plain state dict: it pickles "
                                                                   "collections.Counter"),
                          (tmp_path / "absent.pth", "no such checkpoint file")]:
        assert cli.main([str(path), "--arch", "resnet_6blocks"], command="import-torch") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}") and message in err and "\n" not in err, err


def test_int8_needs_calibration_images(tmp_path, capsys):
    assert cli.main([str(FIXTURES / "resnet_6blocks.pth"), "--arch", "resnet_6blocks", "--tflite", "int8",
                     "--export-dir", str(tmp_path)], command="import-torch") == 2
    assert "--calibration DIR" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_signature_names_from_the_checkpoint_name():
    assert torch_import.signature_name(Path("horse2zebra.pth")) == "horse2zebra"
    assert torch_import.signature_name(Path("latest_net_G_B.pth")) == "b2a"
    assert torch_import.signature_name(Path("latest_net_G_A.pth")) == "a2b"
    assert torch_import.signature_name(Path("latest_net_G.pth")) == "a2b"
