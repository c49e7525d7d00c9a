"""Datasets for the benchmark: MNIST-1D (embedded default), scikit-learn digits, the
CIFAR-10/100 python-pickle format at a user-given path, and generic ``.npz`` files.

Every loader returns a :class:`DatasetSplits` (numpy arrays, float32 features, int64
labels). Nothing here downloads: MNIST-1D is generated procedurally with
``mnist1d.data.make_dataset`` (never its ``get_dataset``, which tries a download first),
digits ship with scikit-learn, CIFAR and ``.npz`` data are read from paths the user gives.
Optional dependencies are imported inside the functions.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DatasetSplits", "load_mnist1d", "load_digits", "load_cifar", "load_npz", "load_dataset", "DATASETS", "NPZ_LAYOUT"]


@dataclass(frozen=True)
class DatasetSplits:
    """A train/test split: ``x_*`` float32 [N, ...], ``y_*`` int64 [N] in ``[0, num_classes)``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(f"{self.name}: x_{split} has {x.shape[0]} rows but y_{split} has shape {y.shape}")
            if y.size and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"{self.name}: y_{split} must hold class ids in [0, {self.num_classes}), got range [{int(y.min())}, {int(y.max())}]")

    def subset_train(self, indices: np.ndarray, y_train: np.ndarray | None = None) -> DatasetSplits:
        """A copy whose training split keeps ``indices`` (and optionally new labels)."""
        y = self.y_train[indices] if y_train is None else np.asarray(y_train, dtype=np.int64)
        return DatasetSplits(self.name, self.x_train[indices], y, self.x_test, self.y_test, self.num_classes, self.class_names)

    def with_train_labels(self, y_train: np.ndarray) -> DatasetSplits:
        """A copy with the training labels replaced (e.g. by noisy ones)."""
        return DatasetSplits(self.name, self.x_train, np.asarray(y_train, dtype=np.int64), self.x_test, self.y_test, self.num_classes, self.class_names)


def _as_splits(name: str, x_tr: Any, y_tr: Any, x_te: Any, y_te: Any, num_classes: int | None = None, class_names: tuple[str, ...] = ()) -> DatasetSplits:
    y_tr = np.asarray(y_tr).astype(np.int64).reshape(-1)
    y_te = np.asarray(y_te).astype(np.int64).reshape(-1)
    if num_classes is None:
        num_classes = int(max(y_tr.max(initial=-1), y_te.max(initial=-1))) + 1
    return DatasetSplits(name, np.ascontiguousarray(x_tr, dtype=np.float32), y_tr, np.ascontiguousarray(x_te, dtype=np.float32), y_te, int(num_classes), tuple(class_names))


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@functools.lru_cache(maxsize=4)
def _mnist1d_cached(num_samples: int, seed: int, train_split: float) -> DatasetSplits:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("MNIST-1D needs the mnist1d package: pip install 'lossatlas[bench]'") from exc
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = train_split
    d = make_dataset(args)  # procedural and offline; never get_dataset() (it downloads)
    return _as_splits("mnist1d", d["x"], d["y"], d["x_test"], d["y_test"], 10, tuple(str(i) for i in range(10)))


def load_mnist1d(num_samples: int = 5000, seed: int = 42, train_split: float = 0.8) -> DatasetSplits:
    """MNIST-1D (Greydanus & Kobak 2020), generated offline: 10 classes, length-40 signals.

    ``mnist1d.data.make_dataset`` with the package's default arguments except
    ``num_samples`` (default 5,000 as in the package), ``seed`` (default 42, the package's)
    and ``train_split`` (default 0.8). Results are cached per process.
    Features are float32 [N, 40]; labels roughly balanced.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 20:
        raise ValueError(f"num_samples must be an int >= 20, got {num_samples!r}")
    if not 0.0 < float(train_split) < 1.0:
        raise ValueError(f"train_split must be in (0, 1), got {train_split!r}")
    return _mnist1d_cached(int(num_samples), int(seed), float(train_split))


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
    """scikit-learn's bundled 8×8 digits (1,797 images, 10 classes; no download).

    Features are the 64 pixel values scaled to [0, 1]; split stratified by class with
    ``test_fraction`` and ``seed``.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the digits data set needs scikit-learn: pip install 'lossatlas[bench]'") from exc
    d = _sk_load_digits()
    x = d.data.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    tr, te = _stratified_split(y, test_fraction, seed)
    return _as_splits("digits", x[tr], y[tr], x[te], y[te], 10, tuple(str(i) for i in range(10)))


def _unpickle(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        obj = pickle.load(f, encoding="bytes")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict (CIFAR python format), got {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_arrays(batches: list[dict[str, Any]], label_key: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for b in batches:
        if "data" not in b or label_key not in b:
            raise ValueError(f"{path}: CIFAR batch without 'data' / {label_key!r} keys (found {sorted(b)})")
        data = np.asarray(b["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{path}: CIFAR 'data' must be uint8 [N, 3072] (3×32×32, channel-major), got {data.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(b[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar(path: str | os.PathLike[str], label: str = "fine", normalize: bool = True) -> DatasetSplits:
    """CIFAR-10 / CIFAR-100 from the official python-pickle files in the folder ``path``.

    CIFAR-10: ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` (dicts with ``data``
    uint8 [N, 3072] and ``labels``; ``batches.meta`` gives names). CIFAR-100: ``train`` and
    ``test`` (``fine_labels`` / ``coarse_labels``; pick with ``label="fine"|"coarse"``;
    ``meta`` gives names). Nothing is downloaded. Images become float32 [N, 3, 32, 32] in
    [0, 1], standardised per channel with the training mean and std when ``normalize``.
    """
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"CIFAR folder {root!r} does not exist: pass the folder holding data_batch_1..5/test_batch (CIFAR-10) or train/test (CIFAR-100)")
    names: list[str] = []
    if os.path.exists(os.path.join(root, "test_batch")):
        train_files = sorted(f for f in os.listdir(root) if f.startswith("data_batch_"))
        if not train_files:
            raise FileNotFoundError(f"{root}: found test_batch but no data_batch_* files")
        x_tr, y_tr = _cifar_arrays([_unpickle(os.path.join(root, f)) for f in train_files], "labels", root)
        x_te, y_te = _cifar_arrays([_unpickle(os.path.join(root, "test_batch"))], "labels", root)
        meta = os.path.join(root, "batches.meta")
        if os.path.exists(meta):
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(meta).get("label_names", [])]
        name, num_classes = "cifar10", 10
    elif os.path.exists(os.path.join(root, "train")) and os.path.exists(os.path.join(root, "test")):
        if label not in ("fine", "coarse"):
            raise ValueError(f"label must be 'fine' or 'coarse' for CIFAR-100, got {label!r}")
        key = f"{label}_labels"
        x_tr, y_tr = _cifar_arrays([_unpickle(os.path.join(root, "train"))], key, root)
        x_te, y_te = _cifar_arrays([_unpickle(os.path.join(root, "test"))], key, root)
        meta = os.path.join(root, "meta")
        if os.path.exists(meta):
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(meta).get(f"{label}_label_names", [])]
        name, num_classes = "cifar100", (100 if label == "fine" else 20)
    else:
        raise FileNotFoundError(f"{root}: no CIFAR python-format files (expected data_batch_*/test_batch or train/test)")
    xf_tr = x_tr.astype(np.float32) / 255.0
    xf_te = x_te.astype(np.float32) / 255.0
    if normalize:
        mean = xf_tr.mean(axis=(0, 2, 3), keepdims=True)
        std = xf_tr.std(axis=(0, 2, 3), keepdims=True) + 1e-6
        xf_tr, xf_te = (xf_tr - mean) / std, (xf_te - mean) / std
    num_classes = max(num_classes, int(max(y_tr.max(initial=-1), y_te.max(initial=-1))) + 1)
    return _as_splits(name, xf_tr, y_tr, xf_te, y_te, num_classes, tuple(names))


NPZ_LAYOUT = """\
A ``.npz`` file (``numpy.savez`` / ``numpy.savez_compressed``, no pickled objects) in one of two layouts:

- split given: ``x_train`` [N, ...] and ``x_test`` [M, ...] features (real numbers: any float
  or integer dtype, finite; the same shape after the first axis), ``y_train`` [N] and ``y_test``
  [M] labels (an integer dtype, class ids in ``[0, C)``);
- one set, split here stratified by class (``test_fraction``, ``seed``): ``features`` [N, ...]
  and ``labels`` [N] (or ``x`` and ``y``), with the same rules.

Optional ``num_classes``: an integer scalar C (default ``max(label) + 1``; give it when the
rarest classes may be absent from a split). Other arrays are ignored. Features are cast to
float32 and labels to int64."""


def _npz_array(z: Any, key: str, p: str) -> np.ndarray:
    try:
        a: np.ndarray = z[key]
    except ValueError as exc:  # an object array while allow_pickle=False
        raise ValueError(f"{p}: array {key!r} cannot be read without unpickling ({exc}); store plain numeric arrays") from None
    return a


def _check_features(x: np.ndarray, key: str, p: str) -> None:
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{p}: array {key!r} must hold real numbers (a float or integer dtype), got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{p}: array {key!r} must be [N, ...] with at least one feature axis, got shape {x.shape} (one feature per sample: reshape to [N, 1])")
    if x.shape[0] == 0:
        raise ValueError(f"{p}: array {key!r} has no rows")
    if np.issubdtype(x.dtype, np.floating):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise ValueError(f"{p}: array {key!r} holds {bad} non-finite values (NaN or inf)")


def _check_labels(y: np.ndarray, key: str, x: np.ndarray, xkey: str, p: str, num_classes: int | None) -> None:
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{p}: array {key!r} must hold integer class ids (an integer dtype), got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{p}: array {key!r} must be one-dimensional [N], got shape {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{p}: array {key!r} has {y.shape[0]} labels but {xkey!r} has {x.shape[0]} rows (length mismatch)")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise ValueError(f"{p}: array {key!r} holds a label out of range: {lo} (class ids start at 0)")
    if num_classes is not None and hi >= num_classes:
        raise ValueError(f"{p}: array {key!r} holds a label out of range: {hi} (num_classes is {num_classes}, so ids are 0..{num_classes - 1})")


def load_npz(path: str | os.PathLike[str], test_fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
    """A user's own data from a ``.npz`` file, every array checked before use.

    {layout}

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file, the
    array and the problem (missing, wrong dtype or shape, length mismatch, label out of range,
    non-finite features, not an ``.npz`` file).
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"npz file {p!r} does not exist")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as exc:  # zipfile.BadZipFile, a pickle refused, a truncated file, ...
        raise ValueError(f"{p}: not a readable .npz file ({type(exc).__name__}: {exc}); write it with numpy.savez") from None
    if not hasattr(z, "files"):  # a plain .npy array
        raise ValueError(f"{p}: a single .npy array, not an .npz archive of named arrays; write it with numpy.savez(x_train=..., ...)")
    with z:
        keys = set(z.files)
        num_classes = None
        if "num_classes" in keys:
            nc = _npz_array(z, "num_classes", p)
            if nc.size != 1 or nc.dtype == np.bool_ or not np.issubdtype(nc.dtype, np.integer) or int(nc.reshape(-1)[0]) < 1:
                raise ValueError(f"{p}: array 'num_classes' must be one positive integer, got dtype {nc.dtype} shape {nc.shape}")
            num_classes = int(nc.reshape(-1)[0])
        split = ("x_train", "y_train", "x_test", "y_test")
        if keys & set(split):
            missing = [k for k in split if k not in keys]
            if missing:
                raise ValueError(f"{p}: missing array {missing[0]!r}" + (f" (and {missing[1:]})" if missing[1:] else "")
                                 + f": the split layout needs {list(split)}; found {sorted(keys)}")
            x_tr, y_tr, x_te, y_te = (_npz_array(z, k, p) for k in split)
            for xk, yk, x, y in (("x_train", "y_train", x_tr, y_tr), ("x_test", "y_test", x_te, y_te)):
                _check_features(x, xk, p)
                _check_labels(y, yk, x, xk, p, num_classes)
            if x_tr.shape[1:] != x_te.shape[1:]:
                raise ValueError(f"{p}: array 'x_test' has samples of shape {x_te.shape[1:]} but 'x_train' has {x_tr.shape[1:]}")
        else:
            pair = next(((f, lab) for f, lab in (("features", "labels"), ("x", "y")) if f in keys or lab in keys), None)
            if pair is None:
                raise ValueError(f"{p}: expected arrays x_train/y_train/x_test/y_test, or features/labels (or x/y); found {sorted(keys)}")
            absent = [k for k in pair if k not in keys]
            if absent:
                raise ValueError(f"{p}: missing array {absent[0]!r} (the one-set layout needs {pair[0]!r} and {pair[1]!r}); found {sorted(keys)}")
            x, y = _npz_array(z, pair[0], p), _npz_array(z, pair[1], p)
            _check_features(x, pair[0], p)
            _check_labels(y, pair[1], x, pair[0], p, num_classes)
            tr, te = _stratified_split(y.astype(np.int64), test_fraction, seed)
            x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
    name = os.path.splitext(os.path.basename(p))[0]
    return _as_splits(name, x_tr, y_tr, x_te, y_te, num_classes=num_classes)


load_npz.__doc__ = (load_npz.__doc__ or "").replace("{layout}", NPZ_LAYOUT.replace("\n", "\n    "))


#: Loader of each data-set name a recipe's ``data.name`` may use.
DATASETS: dict[str, Callable[..., DatasetSplits]] = {"mnist1d": load_mnist1d, "digits": load_digits, "cifar": load_cifar, "npz": load_npz}


def load_dataset(name: str, **kwargs: Any) -> DatasetSplits:
    """Load the data set ``name`` (a key of :data:`DATASETS`) with the loader's ``kwargs``.

    Example:
        >>> from lossatlas.data.datasets import load_dataset
        >>> d = load_dataset("digits")
        >>> d.num_classes, d.x_train.shape[1]
        (10, 64)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: choose one of {sorted(DATASETS)} (cifar and npz need path=)")
    return DATASETS[name](**kwargs)
