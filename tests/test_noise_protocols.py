"""Label-noise protocols (B10) and the susceptibility metric (B11 / J8)."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import numpy as np
import pytest
import torch

import lossatlas as la
from lossatlas.data import noise as LN


def _balanced(c=10, per=100):
    return np.repeat(np.arange(c), per)


def _check_record(out, y, c):
    assert out.labels.dtype == np.int64 and out.labels.shape == y.shape
    assert out.flipped.dtype == bool
    np.testing.assert_array_equal(out.flipped, out.labels != y)
    assert out.transition.shape == (c, c) and out.transition.dtype == np.float64
    np.testing.assert_allclose(out.transition.sum(1), 1.0)
    # realised matrix = counts of (true, noisy) pairs
    for k in range(c):
        m = y == k
        if m.any():
            np.testing.assert_allclose(out.transition[k], np.bincount(out.labels[m], minlength=c) / m.sum())


# ------------------------------------------------------------------------- symmetric
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.29, 0.4, 0.8, 1.0])
def test_symmetric_exact_counts_per_class(rate):
    y = _balanced(10, 100)
    out = LN.symmetric(y, rate, seed=3)
    _check_record(out, y, 10)
    expected = int(round(rate * 100, 9))  # int(r·N/C), without the 0.29·100 = 28.99… drop
    for k in range(10):
        assert int(out.flipped[y == k].sum()) == expected
    assert out.noise_rate == pytest.approx(expected / 100)
    # a flipped label always changes, and the targets cover the other classes
    assert (out.labels[out.flipped] != y[out.flipped]).all()
    if rate >= 0.4:
        assert set(out.labels[(y == 0) & out.flipped]) == set(range(1, 10))


def test_symmetric_matches_apl_count_on_cifar_sizes():
    y = _balanced(10, 5000)
    out = LN.symmetric(y, 0.4, seed=0)
    assert int(out.flipped.sum()) == int(int(0.4 * 50000) / 10) * 10  # the APL formula


def test_symmetric_imbalanced_counts_and_num_classes():
    y = np.concatenate([np.zeros(50, int), np.ones(7, int), np.full(3, 3)])
    out = LN.symmetric(y, 0.5, num_classes=5, seed=1)
    assert [int(out.flipped[y == k].sum()) for k in (0, 1, 3)] == [25, 3, 1]
    assert out.transition.shape == (5, 5)
    np.testing.assert_array_equal(out.transition[2], np.eye(5)[2])  # absent class: identity row
    assert out.labels.max() < 5


def test_reproducible_and_seed_dependent():
    y = _balanced(10, 50)
    for fn in (LN.symmetric, LN.pair_flip, LN.asymmetric_cifar10):
        a, b, c = fn(y, 0.4, seed=7), fn(y, 0.4, seed=7), fn(y, 0.4, seed=8)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert (a.labels != c.labels).any()
    x = np.random.default_rng(0).normal(size=(500, 6))
    a, b = LN.instance_dependent(x, y, 0.3, seed=1), LN.instance_dependent(x, y, 0.3, seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    # global RNGs are neither used nor disturbed
    np.random.seed(0)
    torch.manual_seed(0)
    state = np.random.get_state()[1].copy()
    LN.symmetric(y, 0.4, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_tensor_and_list_inputs():
    y = _balanced(4, 10)
    a = LN.symmetric(torch.from_numpy(y), 0.5, seed=0)
    b = LN.symmetric(y.tolist(), 0.5, seed=0)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert isinstance(a.labels, np.ndarray)


# ------------------------------------------------------------------------- class maps
def test_asymmetric_cifar10_class_map():
    y = _balanced(10, 100)
    out = LN.asymmetric_cifar10(y, 0.4, seed=0)
    _check_record(out, y, 10)
    expected = np.eye(10)
    for s, t in {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}.items():  # truck→automobile, bird→airplane, cat↔dog, deer→horse
        expected[s, s], expected[s, t] = 0.6, 0.4
    np.testing.assert_allclose(out.transition, expected)
    for k in (0, 1, 6, 7, 8):
        assert not out.flipped[y == k].any()
    with pytest.raises(ValueError, match="num_classes=10"):
        LN.asymmetric_cifar10(np.arange(11), 0.4)


def test_cifar100_superclass_contiguous():
    y = _balanced(100, 10)
    out = LN.cifar100_superclass(y, 0.3, seed=0)
    _check_record(out, y, 100)
    for k in range(100):
        nxt = 5 * (k // 5) + (k % 5 + 1) % 5
        assert out.transition[k, k] == pytest.approx(0.7) and out.transition[k, nxt] == pytest.approx(0.3)
    assert out.transition[4, 0] == pytest.approx(0.3)  # circular within the block


def test_cifar100_superclass_coarse_grouping():
    coarse = np.array(LN.CIFAR100_FINE_TO_COARSE)
    assert coarse.shape == (100,) and (np.bincount(coarse) == 5).all()
    y = _balanced(100, 10)
    out = LN.cifar100_superclass(y, 0.5, seed=0, grouping="coarse")
    src, dst = np.nonzero(out.transition - np.diag(np.diag(out.transition)))
    assert len(src) == 100 and (coarse[src] == coarse[dst]).all()
    # each super-class is one 5-cycle
    succ = dict(zip(src.tolist(), dst.tolist()))
    k, seen = 0, set()
    while k not in seen:
        seen.add(k)
        k = succ[k]
    assert len(seen) == 5
    with pytest.raises(ValueError, match="grouping"):
        LN.cifar100_superclass(y, 0.5, grouping="alphabetical")


def test_pair_flip():
    y = _balanced(6, 20)
    out = LN.pair_flip(y, 0.45, seed=0)
    _check_record(out, y, 6)
    for k in range(6):
        assert out.transition[k, k] == pytest.approx(0.45 * 0 + 11 / 20)
        assert out.transition[k, (k + 1) % 6] == pytest.approx(9 / 20)


# ------------------------------------------------------------------------- IDN
def test_instance_dependent_rate_and_feature_dependence():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 16))
    y = rng.integers(0, 10, 4000)
    out = LN.instance_dependent(x, y, 0.4, seed=0)
    _check_record(out, y, 10)
    assert abs(out.noise_rate - 0.4) < 0.03
    # the flip target is a function of the features: identical, large feature vectors send every
    # flipped sample of a class to (almost) the same class, unlike symmetric noise
    same = LN.instance_dependent(np.tile(100 * rng.normal(size=(1, 16)), (4000, 1)), y, 0.4, seed=0)
    off = same.transition - np.diag(np.diag(same.transition))
    share = off.max(1) / off.sum(1)
    assert share.mean() > 0.8 and share.min() > 0.4, share  # symmetric noise: about 1/9
    # rate 0 leaves labels clean; features of any trailing shape are flattened
    assert not LN.instance_dependent(rng.normal(size=(4000, 4, 4)), y, 0.0, seed=0).flipped.any()
    z = LN.instance_dependent(torch.from_numpy(x), torch.from_numpy(y), 0.4, seed=0)
    np.testing.assert_array_equal(z.labels, out.labels)


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call,exc", [
    (lambda: LN.symmetric([0, 1, 2], 1.5), ValueError),
    (lambda: LN.symmetric([0, 1, 2], -0.1), ValueError),
    (lambda: LN.symmetric([0, 1, 2], "0.2"), TypeError),
    (lambda: LN.symmetric([0, -1, 2], 0.2), ValueError),
    (lambda: LN.symmetric([[0, 1]], 0.2), ValueError),
    (lambda: LN.symmetric([0.5, 1.0], 0.2), TypeError),
    (lambda: LN.symmetric([0, 1, 5], 0.2, num_classes=3), ValueError),
    (lambda: LN.symmetric([0, 0, 0], 0.5, num_classes=1), ValueError),
    (lambda: LN.symmetric([0, 1], 0.2, seed=1.5), TypeError),
    (lambda: LN.pair_flip([0, 1], 0.2, num_classes=0), ValueError),
    (lambda: LN.instance_dependent(np.zeros((3, 2)), [0, 1], 0.2), ValueError),
    (lambda: LN.instance_dependent(np.full((2, 2), np.nan), [0, 1], 0.2), ValueError),
    (lambda: LN.cifar100_superclass([100], 0.2), ValueError),
])
def test_protocol_errors(call, exc):
    with pytest.raises(exc):
        call()


def test_empty_labels():
    out = LN.symmetric(np.zeros(0, dtype=np.int64), 0.3)
    assert out.labels.shape == (0,) and out.noise_rate == 0.0


def test_exported_from_data_and_only_numpy_torch_imported():
    assert la.data.symmetric is LN.symmetric and la.data.NoisyLabels is LN.NoisyLabels
    tree = ast.parse(Path(LN.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots <= {"numpy", "torch", "math", "dataclasses", "typing", "__future__"}, roots


def test_module_doctests():
    assert doctest.testmod(LN, optionflags=doctest.ELLIPSIS).failed == 0


# ------------------------------------------------------------------------- susceptibility
tm = pytest.importorskip("torchmetrics")
from lossatlas.metrics import susceptibility as SU  # noqa: E402


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_susceptibility_metric_mean_and_reset():
    z = SU.Susceptibility()
    assert torch.isnan(z.compute())
    z.update(2.0, 1.5)
    z.update(torch.tensor(3.0), torch.tensor(1.0))
    assert float(z.compute()) == pytest.approx(1.25)
    assert isinstance(z, tm.Metric)
    z.reset()
    assert torch.isnan(z.compute())
    with pytest.raises(ValueError, match="scalars"):
        z.update(torch.ones(2), 1.0)
    with pytest.raises(ValueError, match="finite"):
        z.update(float("nan"), 1.0)


def test_probe_restores_model_optimizer_and_rng():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, t = torch.randn(32, 6), SU.random_labels(32, 3, seed=0)
    # one normal step so that the optimiser has momentum state
    torch.nn.functional.cross_entropy(net(x), t).backward()
    opt.step()
    net.eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    mom = {k: v["momentum_buffer"].clone() for k, v in opt.state_dict()["state"].items()}
    rng = torch.get_rng_state()
    before, after = SU.susceptibility_probe(net, opt, x, t)
    assert after < before  # one step on S̃ lowers its loss
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k])
    for k, v in opt.state_dict()["state"].items():
        torch.testing.assert_close(v["momentum_buffer"], mom[k])
    assert not net.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in net.parameters())


def test_susceptibility_higher_for_memorising_model():
    # a wide model that can fit random labels in one step is more susceptible than a tiny-lr one
    torch.manual_seed(0)
    x, t = torch.randn(64, 20), SU.random_labels(64, 5, seed=1)
    zs = []
    for lr in (1.0, 0.001):
        net = torch.nn.Linear(20, 5)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        zeta = SU.Susceptibility()
        for _ in range(3):
            zeta.probe(net, opt, x, t)
        zs.append(float(zeta.compute()))
    assert zs[0] > 10 * zs[1] > 0


def test_random_labels_and_errors():
    a = SU.random_labels(1000, 7, seed=3)
    assert a.dtype == torch.int64 and a.min() >= 0 and a.max() == 6
    assert torch.equal(a, SU.random_labels(1000, 7, seed=3))
    with pytest.raises(ValueError):
        SU.random_labels(10, 0)
    with pytest.raises(TypeError):
        SU.susceptibility_probe("net", None, torch.zeros(1), torch.zeros(1))
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="same non-zero"):
        SU.susceptibility_probe(net, torch.optim.SGD(net.parameters(), lr=0.1), torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    assert doctest.testmod(SU).failed == 0
