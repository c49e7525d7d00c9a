"""Conformance: every registered loss id obeys the library's rules (DESIGN.md, "one rule per
edge case"), in the manner of PyTorch's ModuleInfo / OpInfo tests.

The ids come from the registry (``cases.loss_ids()``), never from a hand list; a loss joins
every test here by being registered. Where a rule does not apply to a method by its
definition, the exception is listed below with its reason.
"""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest
import torch

import lossatlas as la
from conformance import cases as K
from lossatlas._paths import force_path

IDS = K.loss_ids()
ENTRIES = {e.id: e for e in K.loss_entries()}

#: Methods whose "mean" is not the plain mean of "none", with the reason.
MEAN_IS_NOT_MEAN_OF_NONE = {
    "barlow_twins": "one loss for the whole batch (its cross-correlation matrix); 'none' is per embedding dimension",
    "contrastive": "mean over the non-zero pair terms (pytorch-metric-learning's AvgNonZeroReducer)",
    "triplet_margin": "mean over the non-zero triplet terms (pytorch-metric-learning's AvgNonZeroReducer)",
    "threshold_consistent_margin": "the TCM regulariser is a batch term added to the base loss's mean",
    "supcon": "mean over the anchors that have a positive (pytorch-metric-learning); 'none' gives 0 to the others",
    "ntxent": "mean over the positive pairs (pytorch-metric-learning); 'none' is the per-anchor sum of its pairs' terms",
    "icnn": "one loss per batch (-log of the batch's nearest-neighbour score); 'none' is that number as a tensor [1]",
    "score_logdet": "one loss per batch (the classes' total correlation); 'none' is that number as a tensor [1]",
    "metrix": "mean of the non-zero positive terms plus mean of the non-zero negative terms (the official "
              "AvgNonZeroReducer per term); 'none' is each pair's λ-weighted sum of its two terms",
    # H1 / G12: pairwise AUC surrogates
    **{i: "mean over all positive x negative pairs; 'none' is per positive row (its mean over the negatives), 0 at "
          "negative rows, and 'mean' averages the positive rows" for i in ("pairwise_auc", "mw")},
    # H3 / D5: LibAUC's X-risks average over the positive anchors only; 'none' gives 0 to the other rows
    **{i: "mean over the positive anchors (LibAUC's mean of the n_pos x N pair matrix); 'none' is per batch row, "
          "0 at negative rows" for i in ("ap_soap", "pauc_cvar", "pauc_dro", "tpauc_kl")},
    **{i: "mean over labels of each label's mean over its positive anchors (LibAUC); 'none' is [N, num_labels], "
          "0 where the target is 0" for i in ("multilabel_ap", "multilabel_pauc")},
}

#: Methods that hold per-sample or running state, which a call updates.
STATEFUL_CALL = {"aldr",
                 # H3 / D5: per-sample moving averages (LibAUC's u) written at index on every call;
                 # tests/losses/test_ranking.py checks their gradients at fixed state
                 "ap_soap", "pauc_cvar", "pauc_dro", "tpauc_kl", "multilabel_ap", "multilabel_pauc", "ndcg", "listwise_ce",
                 # G16: per-sample moving averages u (and iSogCLR's temperatures) written at index on every call
                 "sogclr", "isogclr", "sogclr_bimodal", "isogclr_bimodal",
                 # H2: compositional AUC alternates CE and AUC-M calls on a call counter (LibAUC's schedule);
                 # tests/losses/test_auc.py gradchecks each phase at a fixed step
                 "compositional_auc"}

#: Methods whose gradient is by definition not the derivative of their value, with the reason.
GRADCHECK_EXCEPTIONS = {
    "nfl": "the official NormalizedFocalLoss takes its (1 - p)^γ factors from logpt.data (gradient stopped); "
           "detach=False is gradchecked in tests/losses/test_noise.py",
    "partial_fc": "insightface's CombinedMarginLoss sets the margin under no_grad (straight-through: the backward is the "
                  "margin-free softmax's) and DistCrossEntropy caps each loss at -log 1e-30 in value only; "
                  "tests/losses/test_metric.py checks the official gradient and gradchecks where neither applies",
    **{i: "SogCLR's value is LibAUC's surrogate -(l_ii - Σ_k p_ik l_ik / (2(B-1))) with the weights p detached: its "
          "gradient is SogCLR's estimator of the global contrastive gradient, not the derivative of the value (and each "
          "call updates the state); tests/losses/test_sogclr.py checks the gradient against finite differences of the "
          "objective it estimates at fixed state"
       for i in ("sogclr", "isogclr", "sogclr_bimodal", "isogclr_bimodal")},
    "role": "ROLE fits the classifier to the label estimates and the estimates to the classifier, each target with its "
            "gradient stopped (official loss_role), so its gradient is not its value's derivative; "
            "tests/losses/test_single_positive.py checks it against central differences of the frozen-target objective",
    "mochi": "as MoCo, the key b and the synthetic points (the query mixes h' = normalize(βq + (1-β)n) too) carry no "
             "gradient by definition, while the value moves with them; tests/losses/test_ssl.py gradchecks the query "
             "with fixed pair mixes and checks the query-mix gradient against a float64 reference",
}

#: Methods gradchecked with other constructor arguments, because with their defaults the gradient is by
#: definition not the derivative of the value: {id: (keywords, reason)}.
GRADCHECK_KWARGS = {
    "non_negative_contrastive": ({"activation": "relu"}, "NCL's default rep_relu is a ReLU with a GELU backward "
                                 "(official non_neg='rep_relu'), by design not the derivative of its value; "
                                 "tests/losses/test_non_negative.py checks that gradient"),
    "asymmetric": ({"detach_weight": False}, "ASL's focusing weight is detached by default, as the reference's "
                   "(disable_torch_grad_focal_loss=True); tests/losses/test_multilabel.py checks that gradient is w·∂CE/∂z"),
    "wmse": ({"eps": 0.1}, "at the gradcheck batch (N = 6 = D) a whitening sub-batch has no more rows than dimensions, so "
             "the covariance is singular and eps = 0 raises ValueError; eps > 0 shrinks it to full rank "
             "(tests/losses/test_ssl.py gradchecks eps = 0 at N > D)"),
    "sface": ({"k": 0.0}, "SFace's sigmoid weights are computed without gradient (official code); k = 0 makes them "
              "constant, so the gradient is the derivative; tests/losses/test_metric.py checks the official one"),
}


def _entry(loss_id: str):
    return ENTRIES[loss_id]


def test_the_suite_covers_every_registered_loss():
    # two_stage: test_two_stage.py; negatives (retrieval miners, not losses): test_negatives.py
    losses = [e for e in la.list() if e.kind not in ("weighting", "sampler", "two_stage", "negatives")]
    assert len(IDS) == len(losses) > 40
    assert set(IDS) == {e.id for e in losses}


def _assert_same(value, grads, ref_value, ref_grads, *, rtol, atol, grad_rtol=None, grad_atol=None):
    """Equal values, and equal gradients wherever either side has one (the gradients to the
    values' tolerances unless given their own)."""
    torch.testing.assert_close(value, ref_value, rtol=rtol, atol=atol)
    assert len(grads) == len(ref_grads)
    for a, b in zip(grads, ref_grads):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, rtol=rtol if grad_rtol is None else grad_rtol,
                                       atol=atol if grad_atol is None else grad_atol)


@pytest.mark.parametrize("loss_id", IDS)
def test_functional_twin_is_the_id_and_equals_the_module(loss_id):
    entry = _entry(loss_id)
    assert entry.function is not None, f"{loss_id} has no functional twin in its registry entry"
    assert getattr(la.functional, loss_id, None) is entry.function, f"la.functional.{loss_id} is not the loss"
    case = K.make_case(entry)
    crit = K.create(entry)
    kwargs = crit.functional_kwargs()
    v_mod, g_mod = K.value_and_grads(crit, case)
    case2 = case.clone()
    torch.manual_seed(1234)
    out = entry.function(*case2.inputs, **kwargs, **case2.call)
    leaves = [t for t in case2.inputs if t.requires_grad] + [p for p in crit.parameters() if p.requires_grad]
    g_fn = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
    _assert_same(out.detach(), g_fn, v_mod, g_mod, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss_id", IDS)
def test_reductions(loss_id):
    entry = _entry(loss_id)
    case = K.make_case(entry)
    none = K.call(K.create(entry, reduction="none"), case.clone())
    total = K.call(K.create(entry, reduction="sum"), case.clone())
    mean = K.call(K.create(entry, reduction="mean"), case.clone())
    assert mean.dim() == 0 and total.dim() == 0
    torch.testing.assert_close(total, none.sum(), rtol=1e-10, atol=1e-12)
    if loss_id not in MEAN_IS_NOT_MEAN_OF_NONE:
        assert none.shape[0] == case.inputs[0].shape[0]
        torch.testing.assert_close(mean, none.mean(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss_id", IDS)
def test_float64_gradcheck(loss_id):
    entry = _entry(loss_id)
    case = K.make_case(entry, n=6)
    crit = K.create(entry, **GRADCHECK_KWARGS.get(loss_id, ({}, ""))[0])
    floats = [i for i, t in enumerate(case.inputs) if t.requires_grad]

    def fn(*xs):
        inputs = list(case.inputs)
        for i, x in zip(floats, xs):
            inputs[i] = x
        torch.manual_seed(1234)
        return crit(*inputs, **case.call)

    if loss_id in GRADCHECK_EXCEPTIONS:
        pytest.skip(GRADCHECK_EXCEPTIONS[loss_id])
    if loss_id in STATEFUL_CALL:
        pytest.skip("its per-sample state changes on each call; gradcheck's repeated calls see different losses "
                    "(tests/losses/test_noise.py checks ALDR's gradient at fixed state)")
    assert torch.autograd.gradcheck(fn, [case.inputs[i] for i in floats], eps=1e-6, atol=1e-5, rtol=1e-4)


#: Losses whose inputs are bounded by definition, so that the ±1e4 inputs are refused, with the reason.
EXTREME_INPUT_EXCEPTIONS = {
    "compositional_auc": "its cross-entropy calls are binary cross-entropy on probabilities (LibAUC): scores outside "
                         "[0, 1] are refused (ValueError); tests/losses/test_auc.py checks scores at exactly 0 and 1",
}


@pytest.mark.parametrize("loss_id", IDS)
def test_extreme_inputs_float32_finite(loss_id):
    if loss_id in EXTREME_INPUT_EXCEPTIONS:
        pytest.skip(EXTREME_INPUT_EXCEPTIONS[loss_id])
    entry = _entry(loss_id)
    case = K.make_case(entry, dtype=torch.float32, scale=1.0)
    x = case.inputs[0]
    with torch.no_grad():
        x.copy_(torch.sign(x) * 1e4 if entry.kind in ("classification", "multilabel") else x * 1e4)
    out, grads = K.value_and_grads(K.create(entry), case)
    assert torch.isfinite(out).all(), out
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("loss_id", IDS)
def test_output_dtype_is_input_dtype_and_bfloat16_is_close(loss_id, dtype):
    entry = _entry(loss_id)
    case = K.make_case(entry, dtype=dtype)
    out = K.call(K.create(entry), case)
    assert out.dtype == dtype
    if dtype == torch.bfloat16:
        ref = K.call(K.create(entry), K.make_case(entry, dtype=torch.float32))
        torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("loss_id", IDS)
def test_empty_batch(loss_id):
    entry = _entry(loss_id)
    case = K.make_case(entry)
    empty = K.Case([t[:0].detach().clone().requires_grad_(t.requires_grad) for t in case.inputs],
                   {k: (v[:0] if isinstance(v, torch.Tensor) else v) for k, v in case.call.items()}, case.target_index)
    for reduction in ("mean", "sum", "none"):
        out = K.call(K.create(entry, reduction=reduction), empty)
        if reduction == "none":
            assert out.numel() == 0
            continue
        assert out.dim() == 0 and float(out.detach()) == 0.0
        leaves = [t for t in empty.inputs if t.requires_grad]
        if out.requires_grad:
            grads = torch.autograd.grad(out, leaves, allow_unused=True)
            assert all(g is None or g.numel() == 0 for g in grads)


def _ignoring(loss_id: str) -> list[str]:
    return [i for i in IDS if "ignore_index" in ENTRIES[i].parameters]


def _ignore_kw(entry) -> dict:
    """-100 as the ignored value: the default where it is one, passed where ignoring is opt-in."""
    return {} if entry.parameters["ignore_index"].default == -100 else {"ignore_index": -100}


@pytest.mark.parametrize("loss_id", _ignoring(""))
def test_all_ignored_batch_is_zero_with_zero_gradient(loss_id):
    entry = _entry(loss_id)
    case = K.make_case(entry)
    case.inputs[1] = torch.full_like(case.inputs[1], -100)
    for path in ("plain", "fused"):
        with force_path(path):
            out, grads = K.value_and_grads(K.create(entry, **_ignore_kw(entry)), case.clone())
        assert float(out) == 0.0, (path, out)
        assert all(g is None or bool((g == 0).all()) for g in grads), path


@pytest.mark.parametrize("loss_id", _ignoring(""))
def test_ignored_rows_leave_the_mean(loss_id):
    entry = _entry(loss_id)
    case = K.make_case(entry)
    keep = torch.tensor([True, False, True, True, False, True, True, True])
    masked = case.clone()
    rows = keep.view(-1, *[1] * (case.inputs[1].dim() - 1))  # [N], or [N, 1] against a multi-label [N, C] target
    masked.inputs[1] = torch.where(rows, case.inputs[1], torch.full_like(case.inputs[1], -100))
    kept = K.Case([t[keep].detach().clone().requires_grad_(t.requires_grad) for t in case.inputs], dict(case.call))
    if "index" in kept.call:
        kept.call["index"] = kept.call["index"][keep]
    kw = _ignore_kw(entry)
    torch.testing.assert_close(K.call(K.create(entry, **kw), masked), K.call(K.create(entry, **kw), kept), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ["plain", "fused"])
@pytest.mark.parametrize("loss_id", [i for i in _ignoring("") if ENTRIES[i].kind == "classification"])
def test_an_ignored_row_with_minus_inf_logits_counts_for_nothing(loss_id, path):
    # An ignored row's logits never reach the loss: -inf in every column but the last (its
    # placeholder target, class 0, among them) gives the loss of the other rows, a finite
    # gradient that is 0 on that row, and 0 in that row of reduction="none".
    entry = _entry(loss_id)
    case = K.make_case(entry)
    with torch.no_grad():
        case.inputs[0][0, :-1] = float("-inf")
    case.inputs[1][0] = -100
    keep = torch.arange(case.inputs[1].shape[0]) != 0
    kept = K.Case([t[keep].detach().clone().requires_grad_(t.requires_grad) for t in case.inputs], dict(case.call))
    if "index" in kept.call:
        kept.call["index"] = kept.call["index"][keep]
    kw = _ignore_kw(entry)
    with force_path(path):
        out, grads = K.value_and_grads(K.create(entry, **kw), case.clone())
        ref, ref_grads = K.value_and_grads(K.create(entry, **kw), kept)
        rows = K.call(K.create(entry, reduction="none", **kw), case.clone())
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = grads[0]
    assert g is not None and bool(torch.isfinite(g).all()), g
    assert bool((g[0] == 0).all()), g[0]
    torch.testing.assert_close(g[1:], ref_grads[0], rtol=1e-10, atol=1e-12)
    assert rows.shape == case.inputs[1].shape and float(rows[0]) == 0.0, rows


@pytest.mark.parametrize("loss_id", IDS)
def test_in_place_on_the_output_and_backward_after(loss_id):
    entry = _entry(loss_id)
    for reduction in ("mean", "none"):
        case = K.make_case(entry)
        out = K.call(K.create(entry, reduction=reduction), case)
        assert out._base is None, "the loss is a view of internal storage"
        out *= 2  # the Hugging Face Trainer scales the loss in place (gradient accumulation)
        out.sum().backward()
        assert case.inputs[0].grad is not None and torch.isfinite(case.inputs[0].grad).all()


@pytest.mark.parametrize("loss_id", IDS)
def test_state_round_trips(loss_id, tmp_path):
    entry = _entry(loss_id)
    crit = K.create(entry)
    case = K.make_case(entry)
    ref = K.call(copy.deepcopy(crit), case.clone())
    clone = pickle.loads(pickle.dumps(crit))
    torch.testing.assert_close(K.call(clone, case.clone()), ref)
    fresh = K.create(entry)
    fresh.load_state_dict(crit.state_dict())
    torch.testing.assert_close(K.call(fresh, case.clone()), ref)
    moved = copy.deepcopy(crit).to(torch.float32)
    out = K.call(moved, case.clone(torch.float32))
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def _on_both_paths(entry, case, **kwargs):
    """(value, gradients) of ``K.create(entry, **kwargs)`` on ``case``, on the plain and on the fused path."""
    results = []
    for path in ("plain", "fused"):
        with force_path(path):
            results.append(K.value_and_grads(K.create(entry, **kwargs), case.clone()))
    return results


@pytest.mark.parametrize("loss_id", IDS)
def test_every_path_gives_the_same_value_and_gradient(loss_id):
    entry = _entry(loss_id)
    (v0, g0), (v1, g1) = _on_both_paths(entry, K.make_case(entry, n=8))
    _assert_same(v0, g0, v1, g1, rtol=1e-10, atol=1e-12, grad_rtol=1e-9, grad_atol=1e-11)


@pytest.mark.parametrize("loss_id", [i for i in IDS if "weight" in ENTRIES[i].parameters and ENTRIES[i].kind == "classification"])
def test_every_path_applies_class_weights_alike(loss_id):
    # weights whose smallest entry is 1 (a fused path once took "min == 1" for "all ones" and dropped them)
    entry = _entry(loss_id)
    case = K.make_case(entry, n=8)
    (v0, g0), (v1, g1) = _on_both_paths(entry, case, weight=[1.0, 2.0, 3.0, 4.0])
    unweighted = K.value_and_grads(K.create(entry), case.clone())[0]
    assert not torch.allclose(v0, unweighted), "the class weights change nothing on this batch"
    _assert_same(v0, g0, v1, g1, rtol=1e-10, atol=1e-12, grad_rtol=1e-9, grad_atol=1e-11)


#: Ids traced with graph breaks allowed (fullgraph=False), with the reason.
COMPILE_GRAPH_BREAKS: dict[str, str] = {}


@pytest.mark.parametrize("loss_id", IDS)
def test_torch_compile_matches_eager(loss_id):
    # backend "aot_eager": Dynamo's capture and AOTAutograd's forward/backward graphs without
    # generating C++ (fast on a CPU-only CI); benchmarks/perf.py times inductor.
    entry = _entry(loss_id)
    torch._dynamo.reset()
    crit = K.create(entry, validate=False) if "validate" in entry.parameters else K.create(entry)
    case = K.make_case(entry)
    v_ref, g_ref = K.value_and_grads(copy.deepcopy(crit), case.clone())
    compiled = torch.compile(crit, backend="aot_eager", fullgraph=loss_id not in COMPILE_GRAPH_BREAKS)
    v, g = K.value_and_grads(compiled, case.clone())
    _assert_same(v, g, v_ref, g_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("loss_id", IDS)
def test_signature_defaults_match_between_module_and_function(loss_id):
    entry = _entry(loss_id)
    fn = inspect.signature(entry.function).parameters
    for name, p in entry.parameters.items():
        if name in fn and fn[name].default is not inspect.Parameter.empty and p.default is not inspect.Parameter.empty:
            assert fn[name].default == p.default, f"{loss_id}.{name}: module {p.default!r} vs function {fn[name].default!r}"


def _classification_ids() -> list[str]:
    return [i for i in IDS if ENTRIES[i].kind == "classification"]


#: Classification losses whose definition has no value for a class with probability 0, with the reason.
MASKED_CLASS_EXCEPTIONS: dict[str, str] = {
    "squentropy": "its second term is the mean of the squared wrong-class logits: a -inf logit makes it infinite by definition",
    "spherical_z_loss": "it normalises the logit vector by its norm (de Brébisson & Vincent), infinite with a -inf entry",
    "logitclip": "it clips the logits by their L2 norm (Wei et al.), infinite with a -inf entry",
    "aldr": "its official default divides the logits by their mean absolute value, infinite with a -inf entry",
}


#: Losses that stay finite when the target's own class is masked (then no error is owed), with the reason.
MASKED_TARGET_IS_FINITE = {
    "anyloss": "a soft confusion-matrix loss: p_y = 0 is its worst, finite value",
}


@pytest.mark.parametrize("loss_id", _classification_ids())
def test_minus_inf_in_a_non_target_column_is_a_masked_class(loss_id):
    # DESIGN.md: -inf in a non-target column is allowed (a masked class): finite loss and
    # gradient, with validate=True; NaN anywhere raises.
    if loss_id in MASKED_CLASS_EXCEPTIONS:
        pytest.skip(MASKED_CLASS_EXCEPTIONS[loss_id])
    entry = _entry(loss_id)
    case = K.make_case(entry)
    with torch.no_grad():
        target = case.inputs[1]
        col = (target[0] + 1) % K.C
        case.inputs[0][0, col] = float("-inf")
    out, grads = K.value_and_grads(K.create(entry), case)
    assert torch.isfinite(out).all(), out
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    bad = K.make_case(entry)
    with torch.no_grad():
        bad.inputs[0][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        K.call(K.create(entry), bad)
    if loss_id in MASKED_TARGET_IS_FINITE:
        return
    masked_target = K.make_case(entry)
    with torch.no_grad():
        masked_target.inputs[0][0, masked_target.inputs[1][0]] = float("-inf")
    with pytest.raises(ValueError, match="inf|Inf"):  # a masked class cannot be a target
        K.call(K.create(entry), masked_target)
