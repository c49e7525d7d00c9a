"""Compiled losses on CPU: the eager kernels behind one opaque operator.

Under ``torch.compile`` a loss's Python runs once, to be traced; the graph inductor builds from
it replaces lossatlas's eager kernels (hand-derived ``autograd.Function``\\ s over ATen's
softmax) by its own generated code. On CPU that code is slower than the eager kernels: inductor's
softmax and its backward are slower than ATen's, and its partitioner recomputes transcendental
passes in the backward (measured in ``benchmarks/results/perf_cpu.md``: even
``torch.compile(F.cross_entropy)`` is about twice its eager time on CPU).

So on CPU a compiled loss function that opted in (``loss_function(compile_opaque=True)``: the
losses whose traced form measured slower compiled than eager) runs as ONE custom operator,
``lossatlas::eager_loss``, registered with ``torch.library.custom_op`` with a fake (meta)
implementation and an autograd formula: dynamo and AOTAutograd see one node with known output
shapes and no graph break (``fullgraph=True`` works, dynamic shapes too); at run time the node
calls the loss's eager code and its eager backward. Compiled then costs eager plus
torch.compile's fixed per-call cost plus the operator's own (custom-operator dispatch both ways
and a nested autograd call: ~0.35-0.5 ms per forward + backward on the table's CPU).

How the backward gets the eager graph: the forward operator runs the loss with autograd on
(on leaf copies of the inputs that need a gradient) and returns, beside the loss, a one-element
*handle* tensor that holds that graph as an attribute. AOTAutograd saves the handle for the
backward, and ``lossatlas::eager_loss_backward`` runs ``torch.autograd.grad`` on it with the
upstream gradient, then drops the graph (unless the backward retains its graph). The graph
lives at most as long as the handle: freed with the compiled graph's saved tensors, or when
the loss is dropped without a backward.

A call is routed this way only where it is safe and helps (:func:`opaque_call_key`): a loss
that opted in, while compiling, with grad mode on and an input needing a gradient, every
tensor on the CPU, the first input float32 or float64 with at least :data:`OPAQUE_MIN_NUMEL`
elements, a reduction to a scalar (``"mean"`` or ``"sum"``), no call keywords (a loss's
per-sample state, masks, miners: those may be written in place), and every other argument a
plain constant. Elsewhere (CUDA, small inputs, ``reduction="none"``, no gradient) the loss's
own traced code is compiled. For the losses that did not opt in, the operator's fixed cost
outweighed what it saves: at N × C = 1024 × 1000 they measured ~1.4-1.6× eager through it
(cross-entropy, focal, α-loss, GCE), against ~1.1-1.6× traced. :func:`traced_kernels` turns
the route off, e.g. to let inductor fuse a loss with the model around it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ._paths import backward_keeps_graph

__all__ = ["OpaqueCall", "opaque_call_key", "run_opaque", "register_body", "traced_kernels", "routed"]

#: The loss bodies that may run behind the operator, by name (filled when they are defined).
_BODIES: dict[str, Callable[..., Tensor]] = {}

#: Set by :func:`traced_kernels`: compile the losses' own traced code on CPU too.
_TRACED_ONLY = False

#: Route every loss function, not only those that opted in (the tests set it: any loss must
#: give its eager values through the operator).
_ROUTE_EVERY_LOSS = False

#: The smallest first input (elements) that takes the route. Below it inductor's code for the
#: loss is faster than the operator's fixed cost (custom-operator dispatch both ways, a nested
#: autograd call: ~0.35-0.45 ms per forward + backward on the table's CPU, where a cross-entropy
#: at N×C = 1024×10 takes 0.2 ms eager). Measured at N = 1,024 (forward + backward, compiled
#: / eager): cross-entropy C = 100 traced 1.73, operator 2.30; C = 1,000 traced 1.79-2.03,
#: operator 1.40-1.44; Dice C = 10 traced 1.02, operator 2.17; C = 1,000 traced 1.49,
#: operator 1.19. A compiled graph guards on the size, so each side of it is its own graph.
OPAQUE_MIN_NUMEL = 1 << 19

_FLOAT_DTYPES = (torch.float32, torch.float64)


@contextmanager
def traced_kernels() -> Iterator[None]:
    """Within the block, ``torch.compile`` traces the losses' own code on CPU too (inductor then
    generates their kernels and may fuse them with the ops around them) instead of running their
    eager kernels as one opaque operator. Compile inside the block; graphs compiled outside keep
    the route they were traced with until dynamo re-checks this flag (it guards on it)."""
    global _TRACED_ONLY
    before, _TRACED_ONLY = _TRACED_ONLY, True
    try:
        yield
    finally:
        _TRACED_ONLY = before


def register_body(name: str, body: Callable[..., Tensor]) -> None:
    """Record ``body`` as the loss ``name`` (its module and qualified name) for the operator."""
    _BODIES[name] = body


class OpaqueCall(NamedTuple):
    """The arguments of ``lossatlas::eager_loss``: ``key``, a literal naming the loss, where each
    argument goes and which tensors need a gradient; the tensors, ints and floats it was given
    (passed to the operator, so that a symbolic size or number stays symbolic)."""

    key: str
    tensors: list[Tensor]
    ints: list[int]
    floats: list[float]


def _encode(value: Any, call: OpaqueCall) -> Any:
    """``value`` as a literal (see :func:`_decode`), its tensors and numbers appended to ``call``'s;
    raises ``LookupError`` for a value that cannot be one (an object, a tensor off the CPU)."""
    if isinstance(value, Tensor):
        if value.device.type != "cpu":
            raise LookupError("a tensor off the CPU")
        call.tensors.append(value)
        return ("T", len(call.tensors) - 1)
    if isinstance(value, bool) or isinstance(value, (str, type(None))):
        return value
    if isinstance(value, int):
        call.ints.append(value)
        return ("I", len(call.ints) - 1)
    if isinstance(value, float):
        call.floats.append(value)
        return ("F", len(call.floats) - 1)
    if isinstance(value, (tuple, list)):
        return ("L" if isinstance(value, list) else "U", tuple(_encode(v, call) for v in value))
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return ("D", tuple((k, _encode(v, call)) for k, v in value.items()))
    raise LookupError(f"an argument of type {type(value).__name__}")


def _decode(value: Any, tensors: Sequence[Tensor], ints: Sequence[int], floats: Sequence[float]) -> Any:
    if isinstance(value, tuple):
        tag, item = value
        if tag in _LEAVES:
            return (tensors, ints, floats)[_LEAVES.index(tag)][item]
        if tag == "D":
            return {k: _decode(v, tensors, ints, floats) for k, v in item}
        items = [_decode(v, tensors, ints, floats) for v in item]
        return items if tag == "L" else tuple(items)
    return value


_LEAVES = ("T", "I", "F")


def opaque_call_key(name: str, args: Sequence[Any], kwargs: dict[str, Any], call: Sequence[str],
                    default_reduction: str | None, min_numel: int | None = None) -> OpaqueCall | None:
    """The :class:`OpaqueCall` for :func:`run_opaque` where a call of the loss ``name`` may run as
    the opaque operator (see the module's docstring), else ``None``."""
    if _TRACED_ONLY or name not in _BODIES or not torch.is_grad_enabled():
        return None
    if not args or not isinstance(args[0], Tensor) or args[0].dtype not in _FLOAT_DTYPES:
        return None
    if args[0].numel() < (OPAQUE_MIN_NUMEL if min_numel is None or _ROUTE_EVERY_LOSS else min_numel):
        return None
    if kwargs.get("reduction", default_reduction) not in ("mean", "sum"):
        return None
    if any(kwargs.get(n) is not None for n in call):
        return None
    found = OpaqueCall("", [], [], [])
    try:
        encoded = (tuple(_encode(a, found) for a in args), tuple((k, _encode(v, found)) for k, v in kwargs.items()))
    except LookupError:
        return None
    needs = tuple(t.requires_grad for t in found.tensors)
    if not any(needs):
        return None
    return found._replace(key=repr((name, encoded, needs)))


@functools.lru_cache(maxsize=1024)
def _parse(key: str) -> tuple[Callable[..., Tensor], Any, Any, tuple[bool, ...]]:
    name, (args, kwargs), needs = ast.literal_eval(key)
    return _BODIES[name], args, kwargs, needs


def _run_body(key: str, tensors: Sequence[Tensor], ints: Sequence[int], floats: Sequence[float]) -> Tensor:
    body, args, kwargs, _ = _parse(key)
    return body(*(_decode(a, tensors, ints, floats) for a in args),
                **{k: _decode(v, tensors, ints, floats) for k, v in kwargs})


def _autograd_keys_on() -> Any:
    """A guard that turns autograd back on inside a custom operator's kernel, where the dispatcher
    has turned it off (the kernel runs below the autograd keys): the thread's excluded dispatch
    keys without autograd's (grad mode is set separately)."""
    exclude = torch._C._dispatch_tls_local_exclude_set()
    exclude = exclude.remove(torch._C.DispatchKey.AutogradCPU).remove(torch._C.DispatchKey.ADInplaceOrView)
    return torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude)


@torch.library.custom_op("lossatlas::eager_loss", mutates_args=())
def _eager_loss(key: str, tensors: list[Tensor], ints: list[int], floats: list[float]) -> list[Tensor]:
    """``[loss, handle]``: the loss ``key`` names, run eagerly with autograd on leaf copies of
    the tensors that need a gradient; ``handle`` holds that graph for the backward."""
    _, _, _, needs = _parse(key)
    leaves = [t.detach().requires_grad_() if need else t for t, need in zip(tensors, needs)]
    versions = [t._version for t in tensors]
    with _autograd_keys_on(), torch.enable_grad():
        out = _run_body(key, leaves, ints, floats)
    if [t._version for t in tensors] != versions:
        raise RuntimeError(f"{_parse(key)[0].__qualname__} wrote into one of its inputs, which an opaque "
                           "operator may not do; compile it inside lossatlas.traced_kernels()")
    if out.dim() != 0:
        raise RuntimeError(f"{_parse(key)[0].__qualname__} returned shape {tuple(out.shape)} for a reduced loss")
    handle = torch.empty(1, dtype=torch.int8)
    handle.lossatlas_graph = (out, [t for t, need in zip(leaves, needs) if need])  # type: ignore[attr-defined]
    out = out.detach()
    return [out if out.dtype == tensors[0].dtype else out.to(tensors[0].dtype), handle]


@_eager_loss.register_fake
def _(key: str, tensors: list[Tensor], ints: list[int], floats: list[float]) -> list[Tensor]:
    return [tensors[0].new_empty(()), tensors[0].new_empty(1, dtype=torch.int8)]


_ENGINE: Any = torch.autograd.Variable._execution_engine


def _storage(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


@torch.library.custom_op("lossatlas::eager_loss_backward", mutates_args=())
def _eager_loss_backward(handle: Tensor, grad: Tensor, like: list[Tensor]) -> list[Tensor]:
    """The gradients of the loss in ``handle`` with respect to the tensors it was given that need
    one (shaped as ``like``), for the upstream gradient ``grad``."""
    graph = getattr(handle, "lossatlas_graph", None)
    if graph is None:
        raise RuntimeError("lossatlas::eager_loss_backward: the forward's graph is gone (a second backward "
                           "through a compiled loss needs retain_graph=True on the first)")
    out, leaves = graph
    keep = backward_keeps_graph() is not False  # kept where torch cannot say
    # the engine directly (what torch.autograd.grad runs after its argument checks): the nested
    # backward of a graph this module built, with the inputs it recorded
    grads = _ENGINE.run_backward((out,), (grad if grad.dtype == out.dtype else grad.to(out.dtype),), keep, False,
                                 tuple(leaves), True, False)
    if not keep:  # freed now, not with the handle: its buffers' memory is then reused at once
        del handle.lossatlas_graph  # type: ignore[attr-defined]
    taken = {_storage(grad), *(_storage(t) for t in like)}
    result = []
    for g, t in zip(grads, like):
        if g is None:
            g = torch.zeros_like(t)
        elif g.dtype != t.dtype or g.stride() != t.stride() or _storage(g) in taken:
            # the layout the fake kernel promised (empty_like), and never an alias of an input
            g = torch.empty_like(t).copy_(g)
        result.append(g)
        taken.add(_storage(g))
    return result


@_eager_loss_backward.register_fake
def _(handle: Tensor, grad: Tensor, like: list[Tensor]) -> list[Tensor]:
    return [torch.empty_like(t) for t in like]


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: list[Tensor]) -> None:
    key, tensors, ints, floats = inputs
    needs = _parse(key)[3]
    ctx.needs, ctx.numbers = needs, (len(ints), len(floats))
    ctx.save_for_backward(output[1], *(t for t, need in zip(tensors, needs) if need))


def _no_grad(n: int) -> list[None] | None:
    # a list of numbers has no gradient: None for it, [] for an empty one (torch.library's
    # check compares the structure with the inputs', where an empty list is a list)
    return None if n else []


def _backward(ctx: Any, grads: list[Tensor]) -> tuple[None, list[Tensor | None], list[None] | None, list[None] | None]:
    handle, *like = ctx.saved_tensors
    taken = iter(_eager_loss_backward(handle, grads[0], like))
    n_ints, n_floats = ctx.numbers
    return None, [next(taken) if need else None for need in ctx.needs], _no_grad(n_ints), _no_grad(n_floats)


_eager_loss.register_autograd(_backward, setup_context=_setup_context)


def run_opaque(call: OpaqueCall) -> Tensor:
    """The loss call ``call`` (:func:`opaque_call_key`) as the opaque operator."""
    out: Tensor = _eager_loss(*call)[0]
    return out


def routed(name: str, body: Callable[..., Tensor], call: Sequence[str], default_reduction: str | None,
           opted_in: bool, min_numel: int | None = None) -> Callable[..., Tensor]:
    """``body``, run as the opaque operator while compiling where the loss opted in (``opted_in``;
    every loss while :data:`_ROUTE_EVERY_LOSS`, for the tests) and :func:`opaque_call_key` allows
    it, from ``min_numel`` elements of the first input (``None``: :data:`OPAQUE_MIN_NUMEL`)."""
    register_body(name, body)

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Tensor:
        if (opted_in or _ROUTE_EVERY_LOSS) and torch.compiler.is_compiling():  # eager: no call for the others
            found = opaque_call_key(name, args, kwargs, call, default_reduction, min_numel)
            if found is not None:
                return run_opaque(found)
        return body(*args, **kwargs)

    run.compile_opaque = opted_in  # type: ignore[attr-defined]
    return run
