"""chunked_linear_cross_entropy and heads.ChunkedLinearLoss: a linear / cosine head fused with its
loss over blocks of classes. Every value and gradient is compared with a dense float64 reference
written here from the papers' definitions (and with the library's dense function of the same
loss); memory is checked through the tensors autograd saves."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import lossatlas as la
from gloo import run_gloo, shard
from lossatlas._spec import spec_of
from lossatlas.functional.chunked import resolve_hparams

chunked = la.functional.chunked_linear_cross_entropy
LINEAR = ("cross_entropy", "logit_adjusted", "balanced_softmax")
COSINE = ("arcface", "cosface", "sface")
N, D, C = 7, 5, 11
CHUNKS = (1, 3, 4, C, 50)  # 3 and 4 do not divide 11; 11 and 50 are one block

# (loss, non-default hyper-parameters): every loss at settings where a wrong constant shows
CASES: list[tuple[str, dict[str, Any]]] = [
    ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.2}),
    ("logit_adjusted", {"tau": 0.7}),
    ("logit_adjusted", {"tau": 1.3, "label_smoothing": 0.1}),
    ("balanced_softmax", {}),
    ("arcface", {"margin": 0.3, "scale": 8.0}),
    ("arcface", {"margin": 2.9, "scale": 4.0}),  # θ + m past π for most rows: the cos θ − m sin m branch
    ("cosface", {"margin": 0.2, "scale": 10.0}),
    ("cosface", {"scale": 6.0, "label_smoothing": 0.3}),
    ("sface", {"scale": 8.0, "k": 5.0, "a": 0.9, "b": 1.1}),
]


def _data(n: int = N, d: int = D, c: int = C, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    return {
        "x": torch.randn(n, d, generator=g, dtype=torch.float64),
        "w": torch.randn(c, d, generator=g, dtype=torch.float64),
        "b": torch.randn(c, generator=g, dtype=torch.float64),
        "y": y,
        "counts": torch.randint(1, 60, (c,), generator=g).double(),
    }


# --------------------------------------------------------------------------------------
# the dense float64 reference, from the definitions
# --------------------------------------------------------------------------------------
def _reference_rows(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, y: torch.Tensor, loss: str,
                    counts: torch.Tensor, hp: dict[str, Any]) -> torch.Tensor:
    """Per-row losses [N] from the full N × C logits."""
    rows = torch.arange(x.shape[0])
    eps: float = hp.get("label_smoothing", 0.0)
    if loss in LINEAR:
        u = x @ w.T + (0.0 if b is None else b)
        if loss == "logit_adjusted":  # Menon et al. 2021: z + τ log π, π = n / Σ n
            u = u + hp["tau"] * torch.log(counts / counts.sum())
        elif loss == "balanced_softmax":  # Ren et al. 2020: z + log n
            u = u + torch.log(counts)
    else:
        cos = (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
        s: float = hp["scale"]
        ct = cos[rows, y]
        if loss == "sface":  # Zhong et al. 2021, weights held constant
            theta = torch.acos(cos.clamp(-1, 1)).detach()
            k, a, b_ = float(hp["k"]), float(hp["a"]), float(hp["b"])
            w_in = torch.sigmoid(k * (theta[rows, y] - a))
            w_out = torch.sigmoid(-k * (theta - b_))
            other = torch.ones_like(cos, dtype=torch.bool)
            other[rows, y] = False
            sface_rows: torch.Tensor = (w_out * s * cos * other).sum(1) - w_in * s * ct
            return sface_rows
        m = hp["margin"]
        if loss == "cosface":  # Wang et al. 2018
            new = ct - m
        else:  # Deng et al. 2019, with the monotone continuation past θ = π − m
            theta_t = torch.acos(ct)
            new = torch.where(theta_t + m <= math.pi, torch.cos(theta_t + m), ct - m * math.sin(m))
        u = s * cos
        u = u.index_put((rows, y), s * new)
    lse = torch.logsumexp(u, dim=1)
    return lse - (1 - eps) * u[rows, y] - eps * u.mean(1)


def _hp(loss: str, kw: dict[str, Any]) -> dict[str, Any]:
    """The hyper-parameters of ``loss`` with the loss function's defaults filled in."""
    defaults = spec_of(getattr(la.functional, loss)).defaults
    return {**{k: v for k, v in defaults.items() if k in ("tau", "margin", "scale", "k", "a", "b")}, **kw}


def _extra(loss: str, data: dict[str, torch.Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if loss in LINEAR:
        out["bias"] = data["b"]
    if loss in ("logit_adjusted", "balanced_softmax"):
        out["class_counts"] = data["counts"]
    return out


def _grads(out: torch.Tensor, leaves: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(out, leaves)


def _leaves(data: dict[str, torch.Tensor], loss: str) -> list[torch.Tensor]:
    for k in ("x", "w", "b"):
        data[k] = data[k].clone().requires_grad_()
    return [data["x"], data["w"]] + ([data["b"]] if loss in LINEAR else [])


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize(("loss", "kw"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradients_equal_the_dense_definition(loss: str, kw: dict[str, Any], chunk_size: int,
                                                        reduction: str) -> None:
    data = _data()
    data["y"][2] = -100  # an ignored row
    leaves = _leaves(data, loss)
    out = chunked(data["x"], data["w"], data["y"], loss=loss, chunk_size=chunk_size, reduction=reduction,
                  **_extra(loss, data), **kw)
    keep = data["y"] != -100
    rows = _reference_rows(data["x"][keep], data["w"], data["b"] if loss in LINEAR else None, data["y"][keep], loss,
                           data["counts"], _hp(loss, kw))
    if reduction == "none":
        ref = torch.zeros(N, dtype=torch.float64).masked_scatter(keep, rows)
    else:
        ref = rows.sum() / (keep.sum() if reduction == "mean" else 1)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    probe = torch.linspace(0.5, 1.5, N, dtype=torch.float64) if reduction == "none" else torch.tensor(1.0)
    for got, want in zip(_grads((out * probe).sum(), leaves), _grads((ref * probe).sum(), leaves)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("loss", "kw"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_equals_the_library_function_of_the_same_loss(loss: str, kw: dict[str, Any]) -> None:
    data = _data(seed=1)
    leaves = _leaves(data, loss)
    out = chunked(data["x"], data["w"], data["y"], loss=loss, chunk_size=4, **_extra(loss, data), **kw)
    fn = getattr(la.functional, loss)
    if loss in LINEAR:
        args = (F.linear(data["x"], data["w"], data["b"]), data["y"]) + ((data["counts"],) if loss != "cross_entropy" else ())
        smoothing = {"label_smoothing": kw["label_smoothing"]} if "label_smoothing" in kw else {}
        if loss != "cross_entropy" and smoothing:
            pytest.skip("the library's logit_adjusted has no label smoothing (the definition test covers it)")
        ref = fn(*args, **{k: v for k, v in kw.items() if k != "label_smoothing"}, **smoothing)
    else:
        if "label_smoothing" in kw:
            pytest.skip("the library's cosface has no label smoothing (the definition test covers it)")
        ref = fn(data["x"], data["y"], data["w"], **kw)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for got, want in zip(_grads(out, leaves), _grads(ref, leaves)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", ("logit_adjusted", "arcface", "cosface", "sface"))
def test_defaults_are_those_of_the_loss_function(loss: str) -> None:
    spec = spec_of(getattr(la.functional, loss))
    own = resolve_hparams(loss, {"tau": None, "margin": None, "scale": None, "k": None, "a": None, "b": None})
    assert own == {k: v for k, v in spec.defaults.items() if k in own} and own
    data = _data(seed=2)
    data["x"] = data["x"] * 0.05  # keep the s = 64 logits moderate
    out = chunked(data["x"], data["w"], data["y"], loss=loss, chunk_size=3, **_extra(loss, data))
    ref = _reference_rows(data["x"], data["w"], data["b"] if loss in LINEAR else None, data["y"], loss, data["counts"],
                          _hp(loss, {})).mean()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("loss", "kw"), CASES[::2], ids=[c[0] for c in CASES[::2]])
def test_gradcheck(loss: str, kw: dict[str, Any]) -> None:
    data = _data(n=4, d=3, c=5, seed=3)
    extra = _extra(loss, data)
    bias = extra.pop("bias", None)

    def f(x: torch.Tensor, w: torch.Tensor, *b: torch.Tensor) -> torch.Tensor:
        return chunked(x, w, data["y"], bias=b[0] if b else None, loss=loss, chunk_size=2, **extra, **kw)

    inputs = [data["x"].requires_grad_(), data["w"].requires_grad_()] + ([] if bias is None else [bias.requires_grad_()])
    assert torch.autograd.gradcheck(f, tuple(inputs))


def test_ignored_rows_leave_the_mean_and_get_no_gradient() -> None:
    data = _data(seed=4)
    data["y"][[0, 3]] = -1
    leaves = _leaves(data, "cross_entropy")
    out = chunked(data["x"], data["w"], data["y"], bias=data["b"], chunk_size=4, ignore_index=-1)
    keep = data["y"] != -1
    sub = chunked(data["x"][keep], data["w"], data["y"][keep], bias=data["b"], chunk_size=4)
    torch.testing.assert_close(out, sub, rtol=1e-12, atol=0)
    gx = _grads(out, leaves)[0]
    assert bool((gx[~keep] == 0).all()) and bool((gx[keep] != 0).any())
    none = chunked(data["x"], data["w"], data["y"], bias=data["b"], chunk_size=4, ignore_index=-1, reduction="none")
    assert bool((none[~keep] == 0).all())


def test_sface_cosine_rounding_below_minus_one_is_clamped_before_acos() -> None:
    # float32 rounds this antiparallel pair's cosine to -1 - 2^-22 (checked below): acos would be NaN
    # there, so the SFace weight's θ must clamp the cosine to [-1, 1] (mutation seed 27)
    v = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    weight = torch.cat([torch.randn(1, 8, generator=torch.Generator().manual_seed(1)), -v])
    cos = F.normalize(v, dim=1) @ F.normalize(weight, dim=1).T
    assert float(cos[0, 1]) < -1.0
    target = torch.tensor([0])
    hp = _hp("sface", {})
    x = v.double()
    ref = _reference_rows(x, weight.double(), None, target, "sface", torch.ones(2), hp).mean()
    for chunk in (1, 2):
        out = la.functional.chunked_linear_cross_entropy(v, weight, target, loss="sface", chunk_size=chunk)
        assert torch.isfinite(out)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_target_on_another_device_names_features_and_target() -> None:
    # a "meta" tensor stands in for a second device on a CPU-only machine (mutation seed 27)
    with pytest.raises(ValueError, match=r"^features is on cpu but target is on meta; move them to the same device$"):
        la.functional.chunked_linear_cross_entropy(torch.randn(3, 4), torch.randn(5, 4),
                                                   torch.tensor([0, 1, 2], device="meta"))


def test_all_rows_ignored_and_empty_batch_give_zero_with_zero_gradient() -> None:
    data = _data(seed=5)
    leaves = _leaves(data, "arcface")
    for y, x in ((torch.full((N,), -100), data["x"]), (torch.zeros(0, dtype=torch.long), data["x"][:0])):
        for loss in ("cross_entropy", "arcface", "sface"):
            extra: dict[str, Any] = {"bias": data["b"]} if loss == "cross_entropy" else {}
            out = chunked(x, data["w"], y, loss=loss, chunk_size=3, **extra)
            assert out.item() == 0.0
            for g in torch.autograd.grad(out, leaves, allow_unused=True):
                assert g is None or bool((g == 0).all())
            assert chunked(x, data["w"], y, loss=loss, reduction="sum", **extra).item() == 0.0
    assert chunked(data["x"][:0], data["w"], torch.zeros(0, dtype=torch.long), reduction="none").shape == (0,)


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"features": torch.randn(N)}, ValueError, "features must have shape"),
    ({"weight": torch.randn(C, D + 1)}, ValueError, "weight must have shape"),
    ({"target": torch.zeros(N + 1, dtype=torch.long)}, ValueError, "target must have shape"),
    ({"target": torch.full((N,), C)}, ValueError, "target values must be in"),
    ({"target": torch.full((N,), -3)}, ValueError, "target values must be in"),
    ({"target": torch.zeros(N)}, TypeError, "target must hold integer class indices"),
    ({"features": torch.ones(N, D, dtype=torch.long)}, TypeError, "features"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be a positive int"),
    ({"chunk_size": 2.0}, TypeError, "chunk_size must be a positive int"),
    ({"loss": "focal"}, ValueError, "loss must be one of"),
    ({"bias": torch.randn(C + 1)}, ValueError, "bias must have shape"),
    ({"loss": "arcface", "bias": torch.randn(C)}, ValueError, "bias must be None"),
    ({"loss": "arcface", "margin": 4.0}, ValueError, "margin must be <="),  # arcface's own check: [0, π]
    ({"loss": "arcface", "scale": 0.0}, ValueError, "scale must be >"),
    ({"loss": "cross_entropy", "margin": 0.3}, ValueError, "margin is not a hyper-parameter of loss='cross_entropy'"),
    ({"loss": "logit_adjusted"}, ValueError, "needs class_counts"),
    ({"loss": "balanced_softmax", "class_counts": [1.0] * (C - 1)}, ValueError, "class_counts has"),
    ({"class_counts": [1.0] * C}, ValueError, "class_counts is not a hyper-parameter"),
    ({"loss": "sface", "label_smoothing": 0.1}, ValueError, "label_smoothing"),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing must be <="),
    ({"features": torch.full((N, D), float("nan"))}, ValueError, "features"),
    ({"reduction": "avg"}, ValueError, "reduction"),
]


@pytest.mark.parametrize(("change", "error", "match"), BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_names_the_argument(change: dict[str, Any], error: type[Exception], match: str) -> None:
    g = torch.Generator().manual_seed(6)
    args: dict[str, Any] = {"features": torch.randn(N, D, generator=g), "weight": torch.randn(C, D, generator=g),
                            "target": torch.randint(0, C, (N,), generator=g), **change}
    with pytest.raises(error, match=match):
        chunked(args.pop("features"), args.pop("weight"), args.pop("target"), **args)


def _saved_numels(fn: Any) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn().backward()
    return shapes


@pytest.mark.parametrize("loss", ("cross_entropy", "logit_adjusted", "arcface", "sface"))
def test_no_saved_tensor_holds_n_by_c_values(loss: str) -> None:
    n, d, c = 64, 8, 1000  # N·C = 64,000 > C·D = 8,000 (the weight itself is saved)
    data = _data(n, d, c, seed=7)
    _leaves(data, loss)
    extra = _extra(loss, data)
    shapes = _saved_numels(lambda: chunked(data["x"], data["w"], data["y"], loss=loss, chunk_size=100, **extra))
    assert shapes and max(math.prod(s) for s in shapes) < n * c, shapes
    # the test can fail: the dense form saves an [N, C] tensor
    dense = _saved_numels(lambda: F.cross_entropy(F.linear(data["x"], data["w"]), data["y"]))
    assert max(math.prod(s) for s in dense) >= n * c


@pytest.mark.parametrize(("loss", "kw", "reduction"), [(*c, ("mean", "none")[i % 2]) for i, c in enumerate(CASES)],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_torch_compile_fullgraph_equals_eager(loss: str, kw: dict[str, Any], reduction: str) -> None:
    data = _data(seed=8)
    data["y"][3] = -100
    leaves = _leaves(data, loss)
    extra = _extra(loss, data)

    def f(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return chunked(x, w, y, loss=loss, chunk_size=4, reduction=reduction, **extra, **kw)

    # a fresh cache per case: recompiling `f` for a new float (tau) would make it symbolic, and the
    # hyper-parameter checks (math.isfinite) cannot take a symbolic float under fullgraph
    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)  # fullgraph: a graph break is an error
    out, ref = compiled(data["x"], data["w"], data["y"]), f(data["x"], data["w"], data["y"])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    probe = torch.linspace(0.5, 1.5, N, dtype=torch.float64) if reduction == "none" else torch.tensor(1.0)
    for got, want in zip(_grads((out * probe).sum(), leaves), _grads((ref * probe).sum(), leaves)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _compiled_graphs(c: int, loss: str) -> dict[str, list[str]]:
    """The targets of the call nodes of the forward and backward graphs that aot_autograd hands its
    compilers for ``chunked`` at C = ``c`` (chunk_size 2)."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs: dict[str, list[str]] = {}

    def keep(name: str) -> Any:
        def compiler(gm: torch.fx.GraphModule, _: Any) -> Any:
            graphs[name] = [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
            return make_boxed_func(gm.forward)
        return compiler

    torch._dynamo.reset()
    data = _data(c=c, seed=14)
    leaves = _leaves(data, loss)
    extra = _extra(loss, data)
    fn = torch.compile(lambda x, w, y: chunked(x, w, y, loss=loss, chunk_size=2, **extra), fullgraph=True,
                       backend=aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward")))
    fn(*leaves[:2], data["y"]).backward()
    return graphs


@pytest.mark.parametrize("loss", ("cross_entropy", "arcface", "sface"))
def test_compiled_graph_holds_one_opaque_call_whatever_the_number_of_blocks(loss: str) -> None:
    small, large = _compiled_graphs(C, loss), _compiled_graphs(20 * C, loss)  # 6 blocks, 110 blocks
    for part, op in (("forward", "lossatlas.chunked_stats.default"), ("backward", "lossatlas.chunked_stats_backward.default")):
        assert small[part] == large[part], part  # the same graph: the block loop is not traced
        assert small[part].count(op) == 1, small[part]
        assert "aten.mm.default" not in small[part] and "aten.addmm.default" not in small[part]


def _op_samples() -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(forward args, backward-only args) of the custom operators: softmax with bias, offset and
    label smoothing, cosine, SFace; with and without gradients."""
    g = torch.Generator().manual_seed(15)
    x, w, b, off = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((5, 3), (7, 3), (7,), (7,)))
    y = torch.tensor([0, 6, 2, 2, 5])
    stat, grads = torch.randn(5, dtype=torch.float64, generator=g), torch.rand(3, 5, dtype=torch.float64, generator=g)
    out = []
    for bias, offset, cfg, need in (
        (b, off, (3, False, False, True, 0.0, 0.0, 0), (True, True, True)),
        (None, None, (2, True, False, False, 0.0, 0.0, 0), (True, False, False)),
        (None, None, (4, True, True, False, 5.0, 1.1, 0), (False, True, False)),
        (b[2:], None, (2, False, False, False, 0.0, 0.0, 2), (True, True, True)),  # a shard starting at class 2
    ):
        wt = w if bias is None or bias.shape[0] == 7 else w[2:]
        out.append(((x, wt, bias, offset, y, *cfg), (stat, *grads, need)))
    return out


def test_custom_operators_pass_opcheck() -> None:
    from lossatlas.functional.chunked import _stats_backward_op, _stats_op

    for fwd, (stat, g_stat, g_lin, g_t, need) in _op_samples():
        x, w, bias, offset, y, *cfg = fwd
        leaves = (x.clone().requires_grad_(), w.clone().requires_grad_(), None if bias is None else bias.clone().requires_grad_())
        torch.library.opcheck(_stats_op, (*leaves, offset, y, *cfg))
        torch.library.opcheck(_stats_op, fwd)
        torch.library.opcheck(_stats_backward_op, (x, w, bias, offset, y, stat, g_stat, g_lin, g_t, *cfg, *need))


def test_float32_large_logits_stay_finite_and_half_inputs_compute_in_float32() -> None:
    data = _data(n=16, d=8, c=300, seed=9)
    x, w = (data["x"] * 30).float(), (data["w"] * 30).float()  # logits ~ ±1e4
    out = chunked(x, w, data["y"], chunk_size=64)
    ref = F.cross_entropy(x.double() @ w.double().T, data["y"])
    assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-2)
    h = chunked(data["x"].to(torch.bfloat16), data["w"].float(), data["y"], loss="arcface", chunk_size=64)
    assert h.dtype == torch.bfloat16
    want = la.functional.arcface(data["x"].to(torch.bfloat16).double(), data["y"], data["w"].float().double())
    torch.testing.assert_close(h.double(), want, rtol=2e-2, atol=2e-2)


# --------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------
def test_module_has_nn_linear_state_and_calls_the_function() -> None:
    head = la.heads.ChunkedLinearLoss(D, C, chunk_size=4, label_smoothing=0.1).double()
    lin = torch.nn.Linear(D, C).double()
    assert set(head.state_dict()) == set(lin.state_dict()) == {"weight", "bias"}
    lin.load_state_dict(head.state_dict())
    data = _data(seed=10)
    torch.testing.assert_close(head(data["x"], data["y"]),
                               F.cross_entropy(lin(data["x"]), data["y"], label_smoothing=0.1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.logits(data["x"]), lin(data["x"]))
    assert chunked(data["x"], head.weight, data["y"], **head.functional_kwargs()).item() == head(data["x"], data["y"]).item()
    clone = pickle.loads(pickle.dumps(head))
    assert clone(data["x"], data["y"]).item() == head(data["x"], data["y"]).item()


def test_module_cosine_losses_have_no_bias_and_use_the_loss_defaults() -> None:
    head = la.heads.ChunkedLinearLoss(D, C, loss="arcface", chunk_size=3).double()
    assert head.bias is None and list(head.state_dict()) == ["weight"]
    data = _data(seed=11)
    data["x"] = data["x"] * 0.05
    torch.testing.assert_close(head(data["x"], data["y"]), la.functional.arcface(data["x"], data["y"], head.weight),
                               rtol=1e-10, atol=1e-12)
    la_head = la.heads.ChunkedLinearLoss(D, C, loss="logit_adjusted", class_counts=data["counts"].tolist()).double()
    assert set(la_head.state_dict()) == {"weight", "bias"}  # class_counts is a non-persistent buffer
    ref = la.functional.logit_adjusted(la_head.logits(data["x"]), data["y"], data["counts"])
    torch.testing.assert_close(la_head(data["x"], data["y"]), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"loss": "arcface", "bias": True}, ValueError, "bias must be False or None"),
    ({"loss": "cosface", "margin": None, "tau": 1.0}, ValueError, "tau is not a hyper-parameter"),
    ({"chunk_size": -1}, ValueError, "chunk_size"),
    ({"loss": "arcface", "margin": -0.1}, ValueError, "margin must be >="),
    ({"bias": 1}, TypeError, "bias must be True, False or None"),
])
def test_module_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        la.heads.ChunkedLinearLoss(D, C, **kwargs)


# --------------------------------------------------------------------------------------
# class-parallel sharding with 2 gloo processes
# --------------------------------------------------------------------------------------
WORLD = 2
BATCH = (5, 4)  # uneven batches
SHARD = (6, 5)  # uneven class slices of C = 11
DIST_CASES = CASES[:3] + CASES[4:6] + CASES[7:]


def _dist_data() -> dict[str, torch.Tensor]:
    data = _data(n=sum(BATCH), seed=12)
    data["y"][1] = -100
    return data


def _dist_worker(rank: int) -> list[dict[str, Any]]:
    # one process more than the shards: the classes are sharded over a subgroup of WORLD processes,
    # passed as process_group, which is not the default (world) group (mutation seed 27)
    group = dist.new_group(list(range(WORLD)))
    if rank == WORLD:
        return []
    data = _dist_data()
    rows, cls = shard(rank, BATCH), shard(rank, SHARD)
    results = []
    for loss, kw in DIST_CASES:
        for reduction in ("mean", "none"):
            x = data["x"][rows].clone().requires_grad_()
            w = data["w"][cls].clone().requires_grad_()
            extra = _extra(loss, data)
            if "bias" in extra:
                extra["bias"] = data["b"][cls].clone().requires_grad_()
            out = chunked(x, w, data["y"][rows], loss=loss, chunk_size=4, class_parallel=True,
                          process_group=group, reduction=reduction, **extra, **kw)
            (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype)).sum().backward()
            results.append({"loss": out.detach(), "x": x.grad, "w": w.grad,
                            "b": extra["bias"].grad if "bias" in extra else None})
    # the first case again under another default device (torch.set_default_device; "meta" on a
    # CPU-only machine): every tensor the sharded path builds stays on the weight's device
    loss, kw = DIST_CASES[0]
    extra = _extra(loss, data)
    if "bias" in extra:
        extra["bias"] = data["b"][cls]
    with torch.device("meta"):
        out = chunked(data["x"][rows], data["w"][cls], data["y"][rows], loss=loss, chunk_size=4, class_parallel=True,
                      process_group=group, reduction="mean", **extra, **kw)
    results.append({"loss": out.detach(), "x": None, "w": None, "b": None})
    return results


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    return run_gloo(_dist_worker, tmp_path_factory.mktemp("chunked_dist"), WORLD + 1)[:WORLD]


def test_class_parallel_equals_the_single_process_dense_loss(sharded: list[list[dict[str, Any]]]) -> None:
    data = _dist_data()
    i = 0
    for loss, kw in DIST_CASES:
        for reduction in ("mean", "none"):
            leaves = _leaves(data, loss)
            keep = data["y"] != -100
            rows = _reference_rows(data["x"][keep], data["w"], data["b"] if loss in LINEAR else None, data["y"][keep],
                                   loss, data["counts"], _hp(loss, kw))
            if reduction == "none":
                ref = torch.zeros(sum(BATCH), dtype=torch.float64).masked_scatter(keep, rows)
            else:
                ref = rows.mean()
            grads = _grads((ref * torch.linspace(0.5, 1.5, ref.numel(), dtype=ref.dtype)).sum(), leaves)
            per_rank = [sharded[r][i] for r in range(WORLD)]
            label = f"{loss} {kw} {reduction}"
            for r in range(WORLD):
                torch.testing.assert_close(per_rank[r]["loss"], ref.detach(), rtol=1e-10, atol=1e-12, msg=label)
            torch.testing.assert_close(torch.cat([p["x"] for p in per_rank]), grads[0], rtol=1e-10, atol=1e-12, msg=label)
            torch.testing.assert_close(torch.cat([p["w"] for p in per_rank]), grads[1], rtol=1e-10, atol=1e-12, msg=label)
            if loss in LINEAR:
                torch.testing.assert_close(torch.cat([p["b"] for p in per_rank]), grads[2], rtol=1e-10, atol=1e-12,
                                           msg=label)
            i += 1


def test_class_parallel_builds_its_tensors_on_the_weights_device(sharded: list[list[dict[str, Any]]]) -> None:
    for r in range(WORLD):  # the first case's "mean" is entry 0; the last entry is the same call under "meta"
        assert sharded[r][-1]["loss"].device.type == "cpu"
        torch.testing.assert_close(sharded[r][-1]["loss"], sharded[r][0]["loss"], rtol=1e-12, atol=1e-14)


def test_class_parallel_without_a_process_group_is_single_process() -> None:
    data = _data(seed=13)
    a = chunked(data["x"], data["w"], data["y"], chunk_size=3, class_parallel=True)
    b = chunked(data["x"], data["w"], data["y"], chunk_size=3)
    assert a.item() == b.item()
