"""Shared test utilities: parity fixtures, gradcheck and extreme-input checks."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lossatlas as la

ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = Path(os.environ.get("LOSSATLAS_PARITY_DIR", ROOT.parent / "shared" / "parity"))


def parity_dirs() -> list[Path]:
    """``../shared/parity`` and its sibling fixture folders (``parity-auc``, ...): ``parity*``.

    With ``LOSSATLAS_PARITY_DIR`` set, that folder and its ``<name>-*`` siblings.
    """
    return [PARITY_DIR] + sorted(p for p in PARITY_DIR.parent.glob(f"{PARITY_DIR.name}-*") if p.is_dir())


def parity_cases() -> list[dict[str, Any]]:
    """All manifest entries of every fixture folder (empty when they are absent).

    Each entry gets ``_dir``: the folder its arrays are in.
    """
    cases: list[dict[str, Any]] = []
    for folder in parity_dirs():
        for path in sorted(folder.glob("manifest*.json")):
            cases.extend({**c, "_dir": str(folder)} for c in json.loads(path.read_text()))
    return cases


#: CI sets CI=true: there the parity fixtures are required (a missing folder fails the run).
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_parity_dir() -> None:
    """Skip (locally) or fail (in CI) when the parity fixtures are absent, saying why."""
    if not PARITY_DIR.is_dir():
        why = f"parity fixtures not found at {PARITY_DIR} (set LOSSATLAS_PARITY_DIR); these tests need ../shared/parity"
        if IN_CI:
            pytest.fail(f"{why}; CI requires them (CI is set)", pytrace=False)
        pytest.skip(why)


def _resolve(value: Any, arrays: Any, step: int | None) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        name = value[1:]
        if step is not None and f"{name}_{step}" in arrays:
            name = f"{name}_{step}"
        return torch.from_numpy(np.array(arrays[name]))
    if isinstance(value, dict):
        return {k: _resolve(v, arrays, step) for k, v in value.items()}
    return value


def _array(arrays: Any, name: str, step: int | None) -> np.ndarray:
    if step is not None and f"{name}_{step}" in arrays:
        return np.array(arrays[f"{name}_{step}"])
    return np.array(arrays[name])


def run_parity_case(case: dict[str, Any]) -> None:
    """Create the object as the manifest says, call it, and compare every output."""
    arrays = np.load(Path(case.get("_dir", PARITY_DIR)) / f"{case['case']}.npz")
    steps = case.get("sequence")
    kwargs = _resolve(case["kwargs"], arrays, None)
    obj = la.create(case["id"], **kwargs)
    if isinstance(obj, torch.nn.Module):
        obj = obj.double()
    none_obj = None
    if "loss_none" in case["outputs"]:
        none_obj = la.create(case["id"], **{**kwargs, "reduction": "none"})
        if isinstance(none_obj, torch.nn.Module):
            none_obj = none_obj.double()
    rtol, atol = case["rtol"], case["atol"]
    for step in (range(steps) if steps else [None]):
        inputs = {}
        for name in case["inputs"]:
            t = torch.from_numpy(_array(arrays, name, step))
            if t.is_floating_point():
                t = t.double().requires_grad_(case["kind"] != "weighting")
            inputs[name] = t
        params = {}
        for pname, aname in (case.get("state") or {}).items():
            param = getattr(obj, pname)
            with torch.no_grad():
                param.copy_(torch.from_numpy(_array(arrays, aname, step)))
            params[pname] = param
            if none_obj is not None:
                with torch.no_grad():
                    getattr(none_obj, pname).copy_(param)
        call_kwargs = _resolve(case["call_kwargs"], arrays, step)
        out = obj(*inputs.values(), **call_kwargs)
        for key in case["outputs"]:
            expected = _array(arrays, key, step)
            if key in ("loss", "weights"):
                got = out
            elif key == "loss_none":
                got = none_obj(*[v.detach() for v in inputs.values()], **call_kwargs)
            elif key.startswith("grad_"):
                continue
            else:
                raise AssertionError(f"unknown output {key}")
            np.testing.assert_allclose(got.detach().cpu().numpy(), expected, rtol=rtol, atol=atol, err_msg=f"{case['case']} {key} step {step}")
        grads = [k for k in case["outputs"] if k.startswith("grad_")]
        if grads:
            targets = {k: inputs.get(k[5:], params.get(k[5:])) for k in grads}
            got_grads = torch.autograd.grad(out, list(targets.values()), allow_unused=True)
            for (key, _), g in zip(targets.items(), got_grads):
                expected = _array(arrays, key, step)
                g = torch.zeros_like(torch.from_numpy(expected)) if g is None else g
                np.testing.assert_allclose(g.detach().cpu().numpy(), expected, rtol=rtol, atol=atol, err_msg=f"{case['case']} {key} step {step}")


def gradcheck_loss(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, **kwargs: Any) -> None:
    """float64 gradcheck of ``fn(*inputs)`` w.r.t. its floating inputs."""
    ins = [x.double().requires_grad_() if x.is_floating_point() else x for x in inputs]
    assert torch.autograd.gradcheck(lambda *a: fn(*a, **kwargs), ins, eps=1e-6, atol=1e-5, rtol=1e-4)


def assert_finite_extremes(fn: Callable[..., torch.Tensor], num_classes: int = 5, n: int = 6, **kwargs: Any) -> None:
    """Logits at ±1e4 give finite losses and gradients in float32 and bfloat16."""
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, num_classes, (n,), generator=g)
    for dtype in (torch.float32, torch.bfloat16):
        base = torch.randn(n, num_classes, generator=g)
        logits = (torch.sign(base) * 1e4).to(dtype).requires_grad_()
        loss = fn(logits, target, **kwargs)
        assert torch.isfinite(loss.float()).all(), (dtype, loss)
        loss.float().sum().backward()
        assert torch.isfinite(logits.grad.float()).all(), dtype
