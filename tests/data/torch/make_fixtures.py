"""Writes the PyTorch fixtures that tests/test_torch_import.py reads where torch is absent:
two tiny reference generators' state dicts (one in the zip format, one in the legacy one)
and their outputs, computed by torch, on a fixed input. Run with torch installed
(pip install torch==2.13.0): python tests/data/torch/make_fixtures.py"""

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import torch_reference  # noqa: E402

# name: (arch, ngf, norm, dropout, test.py --eval, input size, zip format)
FIXTURES = {
    "resnet_6blocks": ("resnet_6blocks", 2, "instance", False, False, (36, 44), True),
    "unet_128": ("unet_128", 2, "batch", True, True, (128, 128), False),
}


def main():
    arrays = {}
    rng = np.random.default_rng(0)
    for name, (arch, ngf, norm, dropout, running, size, zipped) in FIXTURES.items():
        net = torch_reference.build(arch, ngf, norm, dropout)
        torch.save(net.state_dict(), HERE / f"{name}.pth", _use_new_zipfile_serialization=zipped)
        pixels = rng.integers(0, 256, (1, *size, 3), dtype=np.uint8)
        images = pixels.astype(np.float32) / 255  # [0, 1], as the signatures take them
        net.eval() if running else net.train()
        with torch.no_grad():
            out = net(torch.from_numpy(images * 2 - 1).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        arrays[f"{name}_input"] = pixels
        arrays[f"{name}_output"] = ((out + 1) / 2).astype(np.float16)  # [0, 1]
    np.savez_compressed(HERE / "reference.npz", **arrays)


if __name__ == "__main__":
    main()
