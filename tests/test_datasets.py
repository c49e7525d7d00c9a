"""Long-tail protocol and dataset loaders (MNIST-1D offline, digits, CIFAR pickle, npz)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lossatlas.data.datasets import DatasetSplits, load_cifar, load_dataset, load_digits, load_mnist1d, load_npz
from lossatlas.data.longtail import longtail_counts, make_longtail


# -- long-tail protocol -------------------------------------------------------------------
def test_exp_profile_matches_formula_and_ldam_cifar10():
    counts = longtail_counts(5000, 10, 100)
    assert counts == [int(5000 * 100 ** (-j / 9)) for j in range(10)]
    assert counts[0] == 5000 and counts[-1] == 50  # CIFAR-10-LT rho=100 head and tail
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_step_profile_and_balanced_limit():
    assert longtail_counts(100, 4, 10, profile="step") == [100, 100, 10, 10]
    assert longtail_counts(100, 5, 10, profile="step") == [100, 100, 10, 10, 10]
    assert longtail_counts(100, 6, 1) == [100] * 6
    assert longtail_counts(7, 1, 100) == [7]


@pytest.mark.parametrize("kwargs, match", [
    ({"imbalance_ratio": 0.5}, "imbalance_ratio"),
    ({"imbalance_ratio": float("inf")}, "imbalance_ratio"),
    ({"profile": "linear"}, "profile"),
    ({"n_max": 0}, "n_max"),
    ({"num_classes": 0}, "num_classes"),
])
def test_longtail_counts_errors(kwargs, match):
    args = {"n_max": 100, "num_classes": 10, "imbalance_ratio": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        longtail_counts(**args)


def test_make_longtail_realises_counts_and_is_seeded():
    y = np.repeat(np.arange(5), 200)
    np.random.default_rng(0).shuffle(y)
    idx = make_longtail(y, 20, seed=3)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)  # sorted, unique
    assert np.bincount(y[idx], minlength=5).tolist() == longtail_counts(200, 5, 20)
    assert np.array_equal(idx, make_longtail(y, 20, seed=3))
    assert not np.array_equal(idx, make_longtail(y, 20, seed=4))
    step = make_longtail(y, 20, profile="step", n_max=100)
    assert np.bincount(y[step]).tolist() == [100, 100, 5, 5, 5]


def test_make_longtail_errors():
    y = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match="n_max"):
        make_longtail(y, 2, n_max=10)  # class 1 cannot supply 5
    with pytest.raises(ValueError, match="integer"):
        make_longtail(np.array([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="empty"):
        make_longtail(np.array([], dtype=np.int64), 2)
    with pytest.raises(ValueError, match="no samples"):
        make_longtail(np.array([0, 0, 2, 2]), 2)


# -- MNIST-1D ------------------------------------------------------------------------------
def test_mnist1d_generated_offline(monkeypatch):
    import mnist1d.data

    def no_download(*a, **k):
        raise AssertionError("get_dataset downloads; lossatlas must generate with make_dataset")

    monkeypatch.setattr(mnist1d.data, "get_dataset", no_download)
    d = load_mnist1d(num_samples=200, seed=7)
    assert isinstance(d, DatasetSplits) and d.num_classes == 10
    assert d.x_train.shape == (160, 40) and d.x_test.shape == (40, 40)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    again = load_dataset("mnist1d", num_samples=200, seed=7)
    assert np.array_equal(d.x_train, again.x_train)
    other = load_mnist1d(num_samples=200, seed=8)
    assert not np.array_equal(d.x_train, other.x_train)
    with pytest.raises(ValueError, match="num_samples"):
        load_mnist1d(num_samples=5)


def test_digits_bundled_and_stratified():
    d = load_digits()
    assert d.x_train.shape[0] + d.x_test.shape[0] == 1797 and d.x_train.shape[1] == 64
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    frac = np.bincount(d.y_test) / (np.bincount(d.y_test) + np.bincount(d.y_train))
    assert np.allclose(frac, 0.2, atol=0.02)


# -- CIFAR python-pickle format ------------------------------------------------------------
def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_cifar10_pickle_reader(tmp_path):
    rng = np.random.default_rng(0)
    batches = []
    for i in (1, 2):
        data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 6)]
        batches.append((data, labels))
        _dump(tmp_path / f"data_batch_{i}", {b"batch_label": b"x", b"data": data, b"labels": labels})
    test = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    _dump(tmp_path / "test_batch", {b"data": test, b"labels": [0, 1, 2, 9]})
    _dump(tmp_path / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    d = load_cifar(tmp_path, normalize=False)
    assert d.name == "cifar10" and d.num_classes == 10 and d.class_names[9] == "c9"
    assert d.x_train.shape == (12, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    assert d.y_train.tolist() == batches[0][1] + batches[1][1] and d.y_test.tolist() == [0, 1, 2, 9]
    # channel-major rows: the first 1024 bytes are the red plane
    assert np.allclose(d.x_train[0, 0].reshape(-1), batches[0][0][0, :1024] / 255.0)
    z = load_cifar(tmp_path)  # standardised with the training statistics
    assert np.allclose(z.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)


def test_cifar100_pickle_reader_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 8), ("test", 4)):
        _dump(tmp_path / split, {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                                 b"fine_labels": list(range(90, 90 + n)), b"coarse_labels": [19] * n})
    fine = load_cifar(tmp_path)
    assert fine.name == "cifar100" and fine.num_classes == 100 and fine.y_train.tolist() == list(range(90, 98))
    coarse = load_cifar(tmp_path, label="coarse")
    assert coarse.num_classes == 20 and set(coarse.y_test.tolist()) == {19}


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no CIFAR"):
        load_cifar(tmp_path)
    _dump(tmp_path / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    _dump(tmp_path / "data_batch_1", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match="3072"):
        load_cifar(tmp_path)


# -- npz -----------------------------------------------------------------------------------
def test_npz_split_and_pair_formats(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)).astype(np.float64)
    y = np.repeat(np.arange(5), 10)
    np.savez(tmp_path / "pair.npz", features=x, labels=y)
    d = load_npz(tmp_path / "pair.npz", test_fraction=0.2)
    assert d.name == "pair" and d.num_classes == 5 and d.x_train.dtype == np.float32
    assert np.bincount(d.y_test).tolist() == [2] * 5 and d.x_train.shape == (40, 3)
    np.savez(tmp_path / "split.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:], num_classes=7)
    s = load_npz(tmp_path / "split.npz")
    assert s.num_classes == 7 and s.x_test.shape == (20, 3)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="features/labels"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "float.npz", x=np.zeros((4, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match="integer"):
        load_npz(tmp_path / "float.npz")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet")
