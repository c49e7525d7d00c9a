"""lossatlas._spec, the one core: Params, checks, FunctionSpec and the loss_function decorator.

Every test here builds its loss functions at test time (the library's own are decorated at
import, before a test runs), so a change to the decorator shows up here. Expected values are
written out by hand.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import lossatlas.functional as LF
from lossatlas._spec import (
    COMMON,
    PER_CLASS,
    FunctionSpec,
    Param,
    any_number,
    as_bool,
    as_int,
    class_counts_param,
    fill_args,
    fresh,
    loss_function,
    mean_divisor,
    nonnegative,
    positive,
    safe_ratio,
    spec_of,
    unit_interval,
    weight_param,
)

# --- the checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("check, good, bad, error", [
    (any_number, [-3.5, 0, 2], [float("nan"), float("inf"), "1", True, None], None),
    (nonnegative, [0.0, 0, 1e-300, 5], [-1e-300, -1.0], "must be >= 0.0"),
    (positive, [1e-300, 3], [0.0, 0, -2.0], "must be > 0.0"),
    (unit_interval, [0.0, 0.5, 1.0, 1], [-1e-12, 1.0 + 1e-12, 2], None),
])
def test_number_checks_accept_and_refuse_at_the_boundaries(check, good, bad, error):
    for v in good:
        out = check(v, "gamma")
        assert isinstance(out, float) and out == float(v)
    for v in bad:
        with pytest.raises((ValueError, TypeError), match="gamma") as info:
            check(v, "gamma")
        if error is not None and isinstance(v, float):
            assert error in str(info.value)


def test_number_checks_take_a_one_element_tensor():
    assert positive(torch.tensor(0.25), "tau") == 0.25
    with pytest.raises(TypeError, match="tau must be a real number"):
        positive(torch.tensor([0.25, 0.5]), "tau")


def test_as_bool_refuses_numbers_and_strings():
    assert as_bool(True, "flag") is True and as_bool(False, "flag") is False
    for v in (1, 0, "True", None, 1.0):
        with pytest.raises(TypeError, match="flag must be True or False"):
            as_bool(v, "flag")


def test_as_int_refuses_bools_and_floats():
    assert as_int(-100, "ignore_index") == -100 and as_int(0, "ignore_index") == 0
    for v in (True, False, 1.0, "3", None):
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            as_int(v, "ignore_index")


def test_reduction_param_names_the_argument_and_the_choices():
    check = COMMON["reduction"].check
    for r in ("mean", "sum", "none"):
        assert check(r, "reduction") == r
    with pytest.raises(TypeError, match="reduction must be one of 'mean', 'sum', 'none', got int"):
        check(1, "reduction")
    with pytest.raises(ValueError, match="reduction"):
        check("avg", "reduction")


def test_common_params_check_what_they_document():
    assert COMMON["validate"].check(False, "validate") is False
    with pytest.raises(TypeError, match="validate"):
        COMMON["validate"].check(1, "validate")
    assert COMMON["ignore_index"].check(-1, "ignore_index") == -1
    with pytest.raises(TypeError, match="ignore_index"):
        COMMON["ignore_index"].check(-1.0, "ignore_index")
    assert COMMON["ignore_index"].source == "torch (-100)" and COMMON["reduction"].source == "torch"
    assert COMMON["weight"].source is None and COMMON["validate"].source is None
    w = COMMON["weight"].check([1.0, 2.0], "weight")
    assert isinstance(w, torch.Tensor) and w.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="weight"):
        COMMON["weight"].check([1.0, -2.0], "weight")
    counts = COMMON["class_counts"].check([3, 1], "class_counts")
    assert counts.dtype == torch.float64 and counts.tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="class_counts"):
        class_counts_param([3, 0], "class_counts")
    assert weight_param(None, "weight") is None
    assert set(PER_CLASS) == {"class_counts", "weight", "alpha"}


def test_param_defaults():
    p = Param("a doc line")
    assert p.check(object, "x") is object and p.source is None


# --- fresh, mean_divisor, safe_ratio -----------------------------------------------------------


def test_fresh_copies_views_only():
    base = torch.arange(4.0)
    view = base[1:]
    out = fresh(view)
    assert out is not view and out._base is None and out.tolist() == [1.0, 2.0, 3.0]
    out.mul_(2)
    assert base.tolist() == [0.0, 1.0, 2.0, 3.0]
    plain = torch.ones(2)
    assert fresh(plain) is plain


def test_mean_divisor_is_the_total_or_one_where_it_is_zero():
    total = torch.tensor([0.0, 1e-30, 2.5, 0.0], dtype=torch.float64)
    assert mean_divisor(total).tolist() == [1.0, 1e-30, 2.5, 1.0]


def test_safe_ratio_value_and_gradient():
    num = torch.tensor([3.0, 2.0, 1e-3], dtype=torch.float64, requires_grad=True)
    den = torch.tensor([1.5, 0.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = safe_ratio(num, den)
    assert out.tolist() == [2.0, 0.0, 2e-3]
    out.sum().backward()
    assert num.grad.tolist() == [1 / 1.5, 0.0, 2.0]
    assert den.grad.tolist() == pytest.approx([-3.0 / 1.5**2, 0.0, -1e-3 / 0.25], rel=1e-15)


# --- the decorator ----------------------------------------------------------------------------


def _make(**extra_params):
    """A decorated loss built now (at test time), with one hyper-parameter of each kind."""

    @loss_function(inputs=("x", "y"), call=("mask",), params={
        "gamma": Param("γ ≥ 0, the power", nonnegative, "Made-up et al. 2020"),
        "flag": Param("a switch", as_bool),
        "alpha": Param("per-class weights", weight_param),
        **extra_params,
    })
    def toy(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, *, gamma: float = 2.0,
            flag: bool = False, alpha: torch.Tensor | None = None, weight: torch.Tensor | None = None,
            reduction: str = "mean", validate: bool = True) -> torch.Tensor:
        """Toy loss.

        {args}

        The end.
        """
        seen.append({"gamma": gamma, "flag": flag, "alpha": alpha, "weight": weight, "reduction": reduction})
        out = x.abs().pow(gamma) + (1.0 if flag else 0.0)
        if mask is not None:
            out = out * mask
        return out.sum() if reduction == "sum" else out if reduction == "none" else out.mean()

    seen: list[dict] = []
    toy.seen = seen  # type: ignore[attr-defined]
    return toy


def test_spec_knows_inputs_call_keywords_and_hyper_parameters():
    toy = _make()
    spec = spec_of(toy)
    assert isinstance(spec, FunctionSpec)
    assert spec.inputs == ("x", "y") and spec.call == ("mask",)
    assert spec.hparams == ("gamma", "flag", "alpha", "weight", "reduction", "validate")
    assert spec.defaults == {"gamma": 2.0, "flag": False, "alpha": None, "weight": None,
                             "reduction": "mean", "validate": True}
    assert spec.required == ()
    assert spec.sources == {"gamma": "Made-up et al. 2020", "reduction": "torch"}
    assert set(spec.params) == set(spec.hparams)
    assert spec.params["weight"] is COMMON["weight"] and spec.params["reduction"] is COMMON["reduction"]
    assert spec.signature == inspect.signature(spec.function)
    assert toy.unchecked is spec.function
    assert toy.__name__ == "toy" and toy.__wrapped__ is spec.function


def test_required_hyper_parameters_have_no_default():
    @loss_function(inputs=("x",), params={"k": Param("needed", positive, "paper"), "m": Param("optional", any_number)})
    def f(x: torch.Tensor, *, k: float, m: float = 0.5, reduction: str = "mean") -> torch.Tensor:
        return x.sum() * k + m

    spec = spec_of(f)
    assert spec.required == ("k",)
    assert spec.defaults == {"m": 0.5, "reduction": "mean"}
    assert spec.sources == {"k": "paper", "reduction": "torch"}
    assert float(f(torch.ones(2), k=2.0)) == 4.5


def test_the_call_checks_each_given_hyper_parameter_by_name():
    toy = _make()
    x = torch.tensor([1.0, -2.0])
    assert float(toy(x, x)) == pytest.approx((1.0 + 4.0) / 2)
    assert float(toy(x, x, gamma=1.0)) == pytest.approx(1.5)
    assert float(toy(x, x, reduction="sum", flag=True)) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="gamma must be >= 0.0, got -1.0"):
        toy(x, x, gamma=-1.0)
    with pytest.raises(TypeError, match="flag must be True or False"):
        toy(x, x, flag=1)
    with pytest.raises(TypeError, match="reduction must be one of"):
        toy(x, x, reduction=None)
    with pytest.raises(TypeError, match="validate must be True or False"):
        toy(x, x, validate=None)
    # a None hyper-parameter (other than reduction/validate) is passed on unchecked
    toy(x, x, alpha=None)
    assert toy.seen[-1]["alpha"] is None
    # checked values are normalised before the body sees them
    toy(x, x, alpha=[1.0, 2.0], gamma=1)
    assert isinstance(toy.seen[-1]["alpha"], torch.Tensor) and toy.seen[-1]["alpha"].tolist() == [1.0, 2.0]
    assert type(toy.seen[-1]["gamma"]) is float
    # an omitted hyper-parameter is the body's default
    toy(x, x)
    assert toy.seen[-1] == {"gamma": 2.0, "flag": False, "alpha": None, "weight": None, "reduction": "mean"}


def test_positional_hyper_parameters_are_checked_by_their_name():
    @loss_function(inputs=("x",), params={"counts": Param("counts", class_counts_param), "tau": Param("τ", positive)})
    def f(x: torch.Tensor, counts: torch.Tensor, tau: float = 1.0, *, reduction: str = "mean") -> torch.Tensor:
        seen.append((counts, tau))
        return x.sum() * tau

    seen: list = []
    out = f(torch.ones(2), [2, 1], 3)
    assert float(out) == 6.0
    assert seen[-1][0].dtype == torch.float64 and seen[-1][0].tolist() == [2.0, 1.0] and type(seen[-1][1]) is float
    with pytest.raises(ValueError, match="counts"):
        f(torch.ones(2), [2, 0])
    with pytest.raises(ValueError, match="tau must be > 0.0"):
        f(torch.ones(2), [2, 1], 0.0)
    # the input itself is never passed through a check
    f(torch.tensor([-1.0]), counts=[1])
    with pytest.raises(TypeError, match=r"f\(\) takes 3 positional arguments but 4 were given"):
        f(torch.ones(2), [2, 1], 3.0, "mean")


def test_per_class_hyper_parameters_must_agree_in_length():
    toy = _make()
    x = torch.ones(3)
    toy(x, x, alpha=[1.0, 2.0], weight=[0.5, 0.5])
    with pytest.raises(ValueError, match="weight has 3 entries but alpha has 2; they must match"):
        spec_of(toy).check_all({"alpha": [1.0, 2.0], "weight": [1.0, 1.0, 1.0], "gamma": 1.0})
    out = spec_of(toy).check_all({"alpha": [1.0, 2.0], "weight": [1.0, 1.0], "gamma": 1, "unknown": "kept"})
    assert out["gamma"] == 1.0 and type(out["gamma"]) is float and out["unknown"] == "kept"
    assert out["alpha"].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="gamma"):
        spec_of(toy).check_all({"gamma": -1.0})
    # a scalar next to a per-class tensor, or a single per-class value, is not compared
    assert spec_of(toy).check_all({"weight": [1.0, 1.0, 1.0]})["weight"].numel() == 3


def test_check_leaves_unknown_and_none_values_alone():
    spec = spec_of(_make())
    assert spec.check("not_a_param", -5) == -5
    assert spec.check("gamma", None) is None
    with pytest.raises(TypeError, match="reduction"):
        spec.check("reduction", None)
    assert spec.check("gamma", 3) == 3.0


def test_the_result_is_fresh_even_when_the_body_returns_a_view():
    buffer = torch.arange(6.0)

    @loss_function(inputs=("x",))
    def view_loss(x: torch.Tensor, *, reduction: str = "none") -> torch.Tensor:
        return buffer[: x.numel()]

    out = view_loss(torch.ones(3))
    out.mul_(10)
    assert buffer.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert view_loss.unchecked(torch.ones(2))._base is buffer


def test_args_block_replaces_the_placeholder_with_the_doc_lines():
    toy = _make()
    doc = toy.__doc__
    assert "{args}" not in doc
    lines = doc.split("\n")
    i = lines.index("        Args:")
    assert lines[i + 1] == "            gamma: γ ≥ 0, the power. Default ``2.0`` (Made-up et al. 2020)"
    assert lines[i + 2] == "            flag: a switch. Default ``False``"
    assert lines[i + 3] == "            alpha: per-class weights. Default ``None``"
    assert lines[i + 5] == ("            reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-sample losses), torch semantics."
                            " Default ``'mean'`` (torch)")
    assert lines[-2].strip() == "The end."
    assert spec_of(toy).args_doc().split("\n")[0] == "Args:"


def test_args_doc_of_a_required_parameter_has_no_default():
    @loss_function(inputs=("x",), params={"k": Param("needed", positive, "paper")})
    def f(x: torch.Tensor, *, k: float) -> torch.Tensor:
        return x.sum() * k

    assert spec_of(f).args_doc() == "Args:\n    k: needed."
    assert f.__doc__ is None


def test_fill_args_keeps_other_lines_and_the_indent():
    spec = spec_of(_make())
    doc = "Title.\n\n    {args}\n  text {args} inline\n\nEnd."
    out = fill_args(doc, spec).split("\n")
    assert out[:3] == ["Title.", "", "    Args:"]
    assert out[3].startswith("        gamma: ")
    assert "  text {args} inline" in out and out[-1] == "End."
    # a blank line of the block stays blank (no trailing indent)
    assert all(line == line.rstrip() for line in out)


def test_bad_definitions_are_refused_when_decorated():
    with pytest.raises(TypeError, match=r"no argument\(s\) \['target'\]"):
        @loss_function(inputs=("x", "target"))
        def f1(x: torch.Tensor) -> torch.Tensor:
            return x
    with pytest.raises(TypeError, match="hyper-parameter 'gamma' has no Param"):
        @loss_function(inputs=("x",))
        def f2(x: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
            return x
    with pytest.raises(TypeError, match=r"Params for unknown arguments \['beta', 'zeta'\]"):
        @loss_function(inputs=("x",), params={"zeta": Param("z"), "beta": Param("b")})
        def f3(x: torch.Tensor) -> torch.Tensor:
            return x
    with pytest.raises(ValueError, match="gamma must be >= 0.0, got -2.0"):
        @loss_function(inputs=("x",), params={"gamma": Param("γ", nonnegative)})
        def f4(x: torch.Tensor, gamma: float = -2.0) -> torch.Tensor:
            return x
    with pytest.raises(TypeError, match=r"no argument\(s\) \[.mask.\]"):
        @loss_function(inputs=("x",), call=("mask",))
        def f5(x: torch.Tensor) -> torch.Tensor:
            return x


def test_spec_of_refuses_a_plain_function():
    with pytest.raises(TypeError, match="is not a lossatlas loss function"):
        spec_of(len)
    with pytest.raises(TypeError, match="test_spec_of_refuses_a_plain_function.<locals>.g"):
        def g() -> None:
            pass
        spec_of(g)


def test_redecorating_a_library_body_gives_the_same_loss():
    """The library's functions were decorated at import; decorating their bodies again now
    (same Params) gives the same values and the same checks."""
    logits = torch.randn(5, 4, dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 1, 2])
    for fn in (LF.focal, LF.gce, LF.poly1):
        spec = spec_of(fn)
        again = loss_function(inputs=spec.inputs, call=spec.call, params=dict(spec.params))(spec.function)
        assert spec_of(again).defaults == spec.defaults
        torch.testing.assert_close(again(logits, target), fn(logits, target), rtol=0, atol=0)
        name = next(n for n in spec.hparams if n not in COMMON)
        with pytest.raises((ValueError, TypeError), match=name):
            again(logits, target, **{name: float("nan")})
