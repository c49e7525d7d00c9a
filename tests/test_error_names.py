"""Errors name the user's argument, never an internal tensor (issue 20).

For every registered loss, bad inputs (NaN, an integer tensor where floats go, a list, class
ids out of range) raise ValueError/TypeError whose message names the argument the user
passed, and names no tensor the loss builds internally (an ArcFace head's cosine matrix was
reported as "logits", which ArcFace's user never passes). Composite losses name the argument
that holds a bad part id (``active='nfll'``)."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

import lossatlas as la
from conformance import cases as K

# names of tensors that losses build internally; a message may use one only when it is the
# name of one of the loss's own arguments
INTERNAL = {"logits", "cos", "cosines", "z", "scores", "embeddings", "margins", "log_prior"}


def _argument_names(entry):
    return set(inspect.signature(entry.function).parameters) | set(entry.parameters) | set(K.forward_parameters(entry))


def _bad_inputs(entry):
    """(argument name, a description, the bad positional inputs) for one loss."""
    case = K.make_case(entry)
    names = list(inspect.signature(entry.function).parameters)[: len(case.inputs)]
    out = []
    for i, (name, t) in enumerate(zip(names, case.inputs)):
        def swap(new, i=i):
            return [new if k == i else x for k, x in enumerate(case.inputs)]
        if t.is_floating_point():
            nan = t.detach().clone()
            nan.view(-1)[0] = float("nan")
            out.append((name, "NaN", swap(nan)))
            if case.target_index != i:  # multi-hot targets may be integers
                out.append((name, "int64", swap(t.detach().long())))
        elif entry.kind in ("classification",) or (entry.kind == "embedding" and "num_classes" in entry.required):
            big = t.clone()
            big[0] = 10_000
            out += [(name, "out of range", swap(big))]
        out.append((name, "list", swap(t.detach().tolist())))
    return case, out


@pytest.mark.parametrize("loss_id", K.loss_ids())
def test_errors_name_the_users_argument(loss_id):
    entry = la.info(loss_id)
    crit = K.create(entry)
    case, bad = _bad_inputs(entry)
    allowed = _argument_names(entry)
    for name, what, inputs in bad:
        with pytest.raises((ValueError, TypeError)) as info:
            crit(*inputs, **case.call)
        msg = str(info.value)
        assert re.search(rf"\b{re.escape(name)}\b", msg), f"{loss_id}, {name} {what}: {msg}"
        internal = {w for w in re.findall(r"[A-Za-z_]\w*", msg) if w in INTERNAL} - allowed
        assert not internal, f"{loss_id}, {name} {what}: the message names {internal}, not arguments of {loss_id}: {msg}"


@pytest.mark.parametrize("loss_id", ["arcface", "cosface", "normalized_softmax", "sface", "unpg", "partial_fc"])
def test_class_centre_heads_report_labels_against_num_classes(loss_id):
    crit = la.create(loss_id, num_classes=4, embedding_size=6)
    with pytest.raises(ValueError) as info:
        crit(torch.randn(8, 6), torch.tensor([0, 1, 2, 3, 4, 9, 0, 1]))
    msg = str(info.value)
    assert "labels values must be in [0, 4)" in msg and "num_classes=4" in msg and "found [4, 9]" in msg
    assert "logits" not in msg


@pytest.mark.parametrize("kwargs, arg", [
    ({"id": "active_passive", "active": "nfll", "passive": "mae"}, "active='nfll'"),
    ({"id": "active_passive", "active": "nfl", "passive": "maee"}, "passive='maee'"),
    ({"id": "logitclip", "base": "focall"}, "base='focall'"),
])
def test_composite_losses_name_the_argument_with_the_bad_id(kwargs, arg):
    kw = dict(kwargs)
    with pytest.raises(ValueError) as info:
        la.create(kw.pop("id"), **kw)
    assert str(info.value).startswith(f"{arg}: unknown lossatlas id") and "Did you mean" in str(info.value)


def test_composite_losses_name_the_argument_with_the_bad_keyword():
    with pytest.raises(TypeError) as info:
        la.create("logitclip", base="focal", base_kwargs={"gama": 2.0})
    assert str(info.value).startswith("base='focal': focal got unexpected argument(s) gama; did you mean 'gamma'?")


@pytest.mark.parametrize("weighting", ["effective_number", "drw"])
def test_weighting_apply_reports_target_against_its_class_weights(weighting):
    from lossatlas.weighting import apply

    kw = {"start_epoch": 0} if weighting == "drw" else {}
    w = la.create(weighting, class_counts=[10, 5, 2], **kw)
    with pytest.raises(ValueError) as info:
        apply(torch.rand(4), w, torch.tensor([0, 1, 7, 0]))
    msg = str(info.value)
    assert msg.startswith("target values must be in [0, 3) (") and "has 3 class weights); found [7]" in msg
    assert "logits" not in msg  # apply takes no logits
    with pytest.raises(TypeError, match="target must hold class indices of dtype torch.int64"):
        apply(torch.rand(4), w, torch.tensor([0, 1, 2, 0], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"target must have shape \[N\] \(one class index per loss\)"):
        apply(torch.rand(4), w, torch.zeros(2, 2, dtype=torch.long))


def test_metrics_report_target_against_the_users_preds():
    m = la.metrics.BinnedCalibration()
    with pytest.raises(ValueError) as info:
        m.update(torch.randn(4, 3), torch.tensor([0, 1, 5, 0]))
    assert str(info.value) == "target values must be in [0, 3) for preds with 3 class columns; found [5]"
    with pytest.raises(ValueError) as info:
        m.update(torch.randn(4, 3), torch.tensor([0, 1, 2]))
    assert "to match preds (4, 3)" in str(info.value) and "logits" not in str(info.value)
