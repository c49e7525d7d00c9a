"""Integer class indices of every dtype, for every loss that takes them (issue 20).

Every registered id of kind ``classification`` (``target``) or ``embedding`` (``labels``)
treats a class-index dtype the same way: a dtype of
:data:`lossatlas._validation.CLASS_INDEX_DTYPES` gives the int64 call's value and gradient,
any other integer dtype raises the one ``TypeError`` of the shared check, which names the
user's argument (never an internal tensor such as ``gather``'s index) and its dtype. The
accepted dtypes are ones torch's ``F.cross_entropy`` accepts too (checked here against torch,
not from a list): torch rejects int32/int16/int8 class indices.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import lossatlas as la
from conformance import cases as K
from lossatlas._spec import spec_of
from lossatlas._validation import CLASS_INDEX_DTYPES
from lossatlas.registry import Entry

INDEX_KINDS = ("classification", "embedding")
ENTRIES = {e.id: e for e in la.list() if e.kind in INDEX_KINDS}
INTEGER_DTYPES = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8] + [
    d for d in (getattr(torch, n, None) for n in ("uint16", "uint32", "uint64")) if isinstance(d, torch.dtype)
]


def _torch_cross_entropy_accepts(dtype: torch.dtype) -> bool:
    try:
        F.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 2]).to(dtype))
    except (RuntimeError, TypeError):
        return False
    return True


def _index_position(entry: Entry) -> tuple[int, str]:
    """Where the class indices go in a call, and the argument's name (from the function's spec)."""
    assert entry.function is not None, entry.id
    inputs = spec_of(entry.function).inputs
    name = "target" if entry.kind == "classification" else "labels"
    assert name in inputs, f"{entry.id}: no input named {name!r} in {inputs}"
    return inputs.index(name), name


def _call(entry: Entry, how: str) -> Any:
    """A fresh module, or the function with a fresh module's keywords (its weight for a head);
    fresh for each call, so that a loss with per-sample state starts from the same state."""
    crit: Any = K.create(entry, reduction="none")
    if how == "module":
        return crit
    kwargs = crit.functional_kwargs()
    function: Any = entry.function
    return lambda *a, **k: function(*a, **kwargs, **k)


def _run(fn: Any, case: K.Case) -> tuple[Tensor, list[Tensor | None]]:
    torch.manual_seed(1234)  # losses that draw (Partial FC's sampling) draw the same
    out = fn(*case.inputs, **case.call)
    leaves = case.floats()
    grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
    return out.detach(), list(grads)


def test_every_index_taking_id_is_covered() -> None:
    assert {"cross_entropy", "focal", "gce", "dice", "arcface", "partial_fc", "contrastive", "supcon", "ntxent"} <= set(ENTRIES)


@pytest.mark.parametrize("dtype", CLASS_INDEX_DTYPES)
def test_accepted_dtypes_are_ones_torch_cross_entropy_accepts(dtype: torch.dtype) -> None:
    assert torch.int64 in CLASS_INDEX_DTYPES
    assert _torch_cross_entropy_accepts(dtype), f"{dtype} is accepted here but rejected by F.cross_entropy"


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=str)
@pytest.mark.parametrize("loss_id", sorted(ENTRIES))
def test_integer_index_dtypes_behave_alike_for_every_loss(loss_id: str, dtype: torch.dtype) -> None:
    entry = ENTRIES[loss_id]
    pos, name = _index_position(entry)
    for how in ("module", "function"):
        case = K.make_case(entry)
        ref, ref_grads = _run(_call(entry, how), case)
        other = case.clone()
        other.inputs[pos] = case.inputs[pos].to(dtype)
        assert other.inputs[pos].dtype == dtype
        fn = _call(entry, how)
        if dtype in CLASS_INDEX_DTYPES:
            out, grads = _run(fn, other)
            torch.testing.assert_close(out, ref, rtol=0, atol=0, msg=f"{loss_id} {how}: {dtype} value")
            for g, r in zip(grads, ref_grads):
                assert (g is None) == (r is None)
                if g is not None and r is not None:
                    torch.testing.assert_close(g, r, rtol=0, atol=0, msg=f"{loss_id} {how}: {dtype} gradient")
        else:
            with pytest.raises(TypeError) as info:
                fn(*other.inputs, **other.call)
            msg = str(info.value)
            assert msg.startswith(f"{name} must hold class indices"), f"{loss_id} {how}: {msg}"
            assert str(dtype) in msg and f"{name}.long()" in msg, f"{loss_id} {how}: {msg}"


@pytest.mark.parametrize("loss_id", sorted(ENTRIES))
def test_bool_indices_are_refused_naming_the_argument(loss_id: str) -> None:
    entry = ENTRIES[loss_id]
    pos, name = _index_position(entry)
    case = K.make_case(entry)
    inputs = list(case.inputs)
    inputs[pos] = case.inputs[pos] > 0
    with pytest.raises(TypeError, match=rf"^{name} must hold integer class indices \(torch.long\), got dtype torch.bool"):
        K.create(entry)(*inputs, **case.call)
