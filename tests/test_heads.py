"""lossatlas.heads.NormedLinear (LDAM's cosine classifier), LDAM's warning on logits that
cannot be cosines, and the README's LDAM example trained for a few hundred steps.

References are written here from the definitions: the cosine of each feature vector with
each class vector, in float64, and kaidic/LDAM-DRW's NormedLinear in its own layout
(weight [D, C], columns normalised)."""

from __future__ import annotations

import pathlib
import re
import warnings

import pytest
import torch
import torch.nn.functional as F

import lossatlas as la
from lossatlas.functional import imbalance as LFI
from lossatlas.heads import NormedLinear

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


# ---------------------------------------------------------------- NormedLinear

def _ref_cosine(x, w):
    """z_ij = <x_i, w_j> / (|x_i| |w_j|), float64, one pair at a time."""
    x, w = x.double(), w.double()
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        for j in range(w.shape[0]):
            out[i, j] = (x[i] @ w[j]) / (x[i].norm() * w[j].norm())
    return out


def test_normed_linear_is_the_cosine_classifier():
    torch.manual_seed(0)
    head = NormedLinear(7, 4).double()
    x = torch.randn(5, 7, dtype=torch.float64) * 10
    z = head(x)
    torch.testing.assert_close(z, _ref_cosine(x, head.weight), rtol=1e-12, atol=1e-12)
    assert z.abs().max() <= 1 + 1e-12
    # kaidic/LDAM-DRW's layout: weight [D, C], F.normalize(x, dim=1).mm(F.normalize(W, dim=0))
    official = F.normalize(x, dim=1).mm(F.normalize(head.weight.detach().T.clone(), dim=0))
    torch.testing.assert_close(z.detach(), official, rtol=1e-12, atol=1e-12)
    # invariant to the scale of the features and of each class vector
    with torch.no_grad():
        scaled = NormedLinear(7, 4).double()
        scaled.weight.copy_(head.weight * torch.tensor([[0.1], [3.0], [7.0], [1e3]], dtype=torch.float64))
    torch.testing.assert_close(scaled(x * 0.01), z, rtol=1e-10, atol=1e-12)


def test_normed_linear_init_shapes_and_dtype():
    torch.manual_seed(0)
    head = NormedLinear(16, 3)
    assert head.weight.shape == (3, 16) and head.weight.requires_grad
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(3))  # unit class vectors, as the official init
    assert head.weight.abs().max() <= 1
    assert head(torch.randn(2, 5, 16)).shape == (2, 5, 3)  # [..., D] -> [..., C]
    assert head(torch.randn(16)).shape == (3,)
    assert head(torch.randn(4, 16, dtype=torch.float64).float()).dtype == torch.float32
    assert NormedLinear(4, 2, dtype=torch.float64).weight.dtype == torch.float64
    # a zero feature vector gives zero logits, not NaN
    assert torch.equal(head(torch.zeros(1, 16)), torch.zeros(1, 3))
    assert "in_features=16, out_features=3" in repr(head)
    # state dict round trip
    other = NormedLinear(16, 3)
    other.load_state_dict(head.state_dict())
    x = torch.randn(4, 16)
    assert torch.equal(other(x), head(x))


def test_normed_linear_gradcheck():
    torch.manual_seed(0)
    head = NormedLinear(5, 3).double()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    w = head.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: head(x), (x,))
    assert torch.autograd.gradcheck(lambda w: torch.func.functional_call(head, {"weight": w}, (x,)), (w,))


def test_normed_linear_errors_name_the_argument():
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        NormedLinear(0, 3)
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        NormedLinear(3, 2.0)
    with pytest.raises(ValueError, match="eps must be a positive float"):
        NormedLinear(3, 2, eps=0.0)
    head = NormedLinear(3, 2)
    with pytest.raises(ValueError, match=r"input must have shape \[..., in_features\] = \[..., 3\], got \(4, 5\)"):
        head(torch.randn(4, 5))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        head(torch.ones(4, 3, dtype=torch.long))


def test_heads_is_public():
    assert "heads" in la.__all__ and la.heads.NormedLinear is NormedLinear
    assert "NormedLinear" in la.heads.__all__


# ---------------------------------------------------------------- LDAM's warning

@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(LFI, "_LDAM_WARNED", [False])


def _ldam_warnings(logits, target=None, **kw):
    target = torch.zeros(logits.shape[0], dtype=torch.long) if target is None else target
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        la.functional.ldam(logits, target, [10, 5, 2], **kw)
    return [w for w in caught if "LDAM's scale assumes cosine logits" in str(w.message)]


def test_ldam_warns_once_on_logits_that_cannot_be_cosines(fresh_warning):
    z = torch.tensor([[0.2, -0.3, 1.5], [0.1, 0.0, -0.4]])
    caught = _ldam_warnings(z)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "|z| = 1.5" in msg and "scale=30" in msg and "lossatlas.heads.NormedLinear" in msg
    assert caught[0].filename == __file__  # points at the caller, not at lossatlas
    assert _ldam_warnings(z * 10) == []  # once per process
    # the module form warns as well (a fresh process state)
    LFI._LDAM_WARNED[0] = False
    with pytest.warns(UserWarning, match="LDAM's scale assumes cosine logits") as rec:
        la.create("ldam", class_counts=[10, 5, 2])(z, torch.tensor([0, 2]))
    assert rec[0].filename == __file__


@pytest.mark.parametrize("masked", [False, True])
def test_ldam_peak_is_the_largest_magnitude_on_either_side(fresh_warning, masked):
    # the peak comes from the logits' least and largest value (one aminmax); a masked class (-inf)
    # sends it to the exact pass over the finite logits
    z = torch.tensor([[0.2, -2.5, 0.5], [0.1, 0.0, -0.4]])
    if masked:
        z[1, 2] = -torch.inf
    caught = _ldam_warnings(z)
    assert len(caught) == 1 and "|z| = 2.5" in str(caught[0].message)


@pytest.mark.parametrize("case", ["cosines", "scale_1", "no_validate", "masked_class", "bfloat16_cosines", "empty"])
def test_ldam_does_not_warn_on_cosines_or_when_told_not_to(fresh_warning, case):
    torch.manual_seed(0)
    cos = NormedLinear(8, 3)(torch.randn(6, 8)).detach()
    z, kw = {
        "cosines": (cos, {}),
        "scale_1": (cos * 5, {"scale": 1.0}),  # plain logits with scale 1 (the benchmark's LDAM on a linear head)
        "no_validate": (cos * 5, {"validate": False}),
        "masked_class": (torch.cat([cos[:, :2], torch.full((6, 1), -torch.inf)], 1), {}),
        "bfloat16_cosines": (cos.sign().to(torch.bfloat16), {}),  # exactly ±1 after rounding
        "empty": (torch.empty(0, 3), {}),
    }[case]
    assert _ldam_warnings(z, **kw) == []
    assert not LFI._LDAM_WARNED[0]


# ---------------------------------------------------------------- the README's LDAM example trains

def _readme_ldam_block():
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    found = [b for b in blocks if 'la.create("ldam"' in b and "NormedLinear" in b]
    assert found, "the README's LDAM example must use la.heads.NormedLinear"
    return found[0]


def _train(model, crit, steps=300, seed=0):
    """SGD with momentum on Gaussian clusters drawn with the README's long-tailed class counts."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, 32, generator=g) * 2
    probs = torch.tensor(COUNTS, dtype=torch.float) / sum(COUNTS)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        y = torch.multinomial(probs, 64, replacement=True, generator=g)
        x = centers[y] + torch.randn(64, 32, generator=g)
        loss = crit(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_readme_ldam_example_trains_without_nan(fresh_warning, capsys):
    namespace = {"__name__": "readme_ldam"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the README's own call: cosine logits, no warning
        exec(compile(_readme_ldam_block(), f"{README}[ldam block]", "exec"), namespace)
    model, crit = namespace["model"], namespace["crit"]
    assert isinstance(model[-1], NormedLinear)
    torch.manual_seed(0)
    losses = _train(model, crit)
    assert all(v == v and abs(v) < float("inf") for v in losses)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.25 * first, (first, last)


def test_the_same_loop_with_a_plain_linear_head_diverges_and_was_warned(fresh_warning, capsys):
    """Why the head matters: the README's model with nn.Linear as its last layer, same loop,
    reaches NaN (the validated loss raises on the non-finite logits), after the warning."""
    namespace = {"__name__": "readme_ldam"}
    exec(compile(_readme_ldam_block(), f"{README}[ldam block]", "exec"), namespace)
    model, crit = namespace["model"], namespace["crit"]
    torch.manual_seed(0)
    model[-1] = torch.nn.Linear(64, 10)
    with pytest.warns(UserWarning, match="LDAM's scale assumes cosine logits"):
        with pytest.raises(ValueError, match="logits contains NaN or Inf"):
            _train(model, crit)


def test_doctests():
    import doctest

    import lossatlas.heads as heads

    result = doctest.testmod(heads, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 4
