"""The registry: one entry per catalogue method, with the metadata users and docs read.

Every public loss / weighting class is registered with :func:`register`. The entry's
required arguments and defaults are read from the class's ``__init__`` signature, so the
documentation can never drift from the code; where each default comes from is stated
explicitly in ``defaults_source``.

>>> import lossatlas as la
>>> crit = la.create("focal", gamma=2.0)
>>> la.info("focal").paper.year
2017
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from torch.utils.data import Sampler

    from .losses._base import Loss
    from .negatives import GISTSelector, NegativeMiner, NGAMEBatchSampler
    from .two_stage import StageTwo
    from .weighting.base import ClassWeighting, Weighting

__all__ = ["Paper", "Entry", "register", "create", "info", "list_entries", "families", "KINDS"]

#: Input kinds, one call convention each (see DESIGN.md, "Signatures by input kind").
KINDS = {
    "classification": "(logits[N, C], target int64[N] or probabilities[N, C])",
    "multilabel": "(logits[N, C], target multi-hot float[N, C])",
    "embedding": "(embeddings[N, D], labels int64[N])",
    "pair": "(a[N, D], b[N, D]) with optional labels",
    "binary": "(scores[N], target int64 0/1 [N]); stateful ones also index=int64[N]",
    "ranking": "(scores[Q, P + M]: each query's P positive then M negative items' scores) with index=",
    "distillation": "(student_logits[N, C], teacher_logits[N, C], target int64[N])",
    "regression_embedding": "(features[N, D], target float[N], preds float[N]): every view's features, "
                            "continuous targets and the regressor's predictions",
    "weighting": "called as documented per entry; returns weights",
    "regulariser": "(logits[N, C]) -> scalar penalty",
    "sampler": "torch.utils.data.Sampler over a dataset's labels",
    "negatives": "retrieval negatives (lossatlas.negatives): a miner's .mine(index, query_emb[Q, D], positives[Q] or "
                 "[Q, P]) -> corpus ids[Q, num] from a CorpusIndex, .step(index) re-encodes it when due; GISTEmbed's "
                 ".mask(guide_queries, guide_docs); NGAME's batch sampler over item embeddings[N, D]",
    "two_stage": "stage 2 of decoupled training: .apply(model, classifier='fc') -> parameters to train; "
                 ".after_step() after each optimiser step (lossatlas.two_stage.StageTwo)",
}


@dataclass(frozen=True)
class Paper:
    """Bibliographic record of the paper that defines a method."""

    authors: str
    title: str
    venue: str
    year: int
    arxiv: str | None = None

    def __str__(self) -> str:
        arxiv = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f"{self.authors} ({self.year}). {self.title}. {self.venue}{arxiv}."


@dataclass(frozen=True)
class Entry:
    """Registry metadata of one method."""

    id: str
    cls: type
    family: str
    kind: str
    formula: str
    paper: Paper | None
    code: str | None
    catalogue: str
    aliases: tuple[str, ...] = ()
    function: Callable[..., Any] | None = None
    defaults_source: dict[str, str] = field(default_factory=dict)
    notes: str = ""

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        sig = inspect.signature(self.cls)  # the constructor's signature, without self
        return {
            n: p
            for n, p in sig.parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.parameters.items() if p.default is inspect.Parameter.empty)

    @property
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.parameters.items() if p.default is not inspect.Parameter.empty}

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-friendly view of the entry."""
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "family": self.family,
            "kind": self.kind,
            "catalogue": self.catalogue,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "function": None if self.function is None else f"{self.function.__module__}.{self.function.__name__}",
            "required": list(self.required),
            "defaults": {k: repr(v) for k, v in self.defaults.items()},
            "defaults_source": dict(self.defaults_source),
            "paper": None if self.paper is None else str(self.paper),
            "code": self.code,
            "formula": self.formula,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        lines = [f"{self.id}  [{self.family} / {self.kind}, catalogue {self.catalogue}]"]
        if self.aliases:
            lines.append(f"  aliases:   {', '.join(self.aliases)}")
        lines.append(f"  formula:   {self.formula}")
        lines.append(f"  inputs:    {KINDS.get(self.kind, self.kind)}")
        lines.append(f"  class:     {self.cls.__module__}.{self.cls.__qualname__}")
        if self.function is not None:
            lines.append(f"  function:  {self.function.__module__}.{self.function.__name__}")
        lines.append(f"  required:  {', '.join(self.required) or '(none)'}")
        for name, value in self.defaults.items():
            src = self.defaults_source.get(name)
            lines.append(f"  default    {name}={value!r}" + (f"  ({src})" if src else ""))
        if self.paper is not None:
            lines.append(f"  paper:     {self.paper}")
        if self.code:
            lines.append(f"  code:      {self.code}")
        if self.notes:
            lines.append(f"  notes:     {self.notes}")
        return "\n".join(lines)


_ENTRIES: dict[str, Entry] = {}
_ALIASES: dict[str, str] = {}


def _canonical(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register(
    id: str,
    *,
    family: str,
    kind: str,
    formula: str,
    catalogue: str,
    paper: Paper | None = None,
    code: str | None = None,
    aliases: Iterable[str] = (),
    function: Callable[..., Any] | None = None,
    defaults_source: dict[str, str] | None = None,
    notes: str = "",
) -> Callable[[type], type]:
    """Class decorator that adds a method to the registry."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")

    def decorator(cls: type) -> type:
        key = _canonical(id)
        spec = getattr(cls, "spec", None)  # a FunctionalLoss: its function is the definition
        fn = function if function is not None else getattr(cls, "function", None)
        sources = dict(getattr(spec, "sources", {}))
        sources.update(defaults_source or {})
        if key in _ENTRIES or key in _ALIASES:
            raise ValueError(f"registry id {id!r} is already taken")
        entry = Entry(
            id=key,
            cls=cls,
            family=family,
            kind=kind,
            formula=formula,
            paper=paper,
            code=code,
            catalogue=catalogue,
            aliases=tuple(_canonical(a) for a in aliases),
            function=fn,
            defaults_source=sources,
            notes=notes,
        )
        unknown = set(entry.defaults_source) - set(entry.parameters)
        if unknown:
            raise ValueError(f"{id}: defaults_source names unknown parameters {sorted(unknown)}")
        for alias in entry.aliases:
            if alias in _ENTRIES or alias in _ALIASES:
                raise ValueError(f"alias {alias!r} of {id!r} is already taken")
        _ENTRIES[key] = entry
        for alias in entry.aliases:
            _ALIASES[alias] = key
        cls.registry_id = key  # type: ignore[attr-defined]
        return cls

    return decorator


def _load_all() -> None:
    # Importing the package imports every family module, which registers its entries.
    import lossatlas  # noqa: F401


def info(id: str) -> Entry:
    """Return the registry entry for ``id`` (or one of its aliases)."""
    _load_all()
    if not isinstance(id, str):
        raise TypeError(f"id must be a str, got {type(id).__name__}")
    key = _canonical(id)
    key = _ALIASES.get(key, key)
    if key not in _ENTRIES:
        names = sorted(_ENTRIES) + sorted(_ALIASES)
        close = difflib.get_close_matches(key, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown lossatlas id {id!r}.{hint} See lossatlas.list() for all ids.")
    return _ENTRIES[key]


#: Ids (and aliases) by the type :func:`create` returns for them, written out so that a
#: static type checker knows it; tests/test_registry.py checks them against the registry.
ClassWeightingId = Literal[
    "class_difficulty", "cdb", "cdb_w", "class_difficulty_weights", "cdb_weights",
    "drw", "deferred_reweighting",
    "effective_number", "class_balanced", "cb_weights", "effective_number_weights",
]
WeightingId = Literal[
    "absgd", "attentional_biased_sgd", "absgd_weights",
    "loss_based", "loss_based_reweighting", "dynamic_loss_reweighting", "linupper",
    "group_dro", "gdro", "group_dro_weights", "groupdro",
]
SamplerId = Literal[
    "class_balanced_sampler", "class_aware_sampler", "cb_sampler", "balanced_sampler",
    "class_difficulty_sampler", "cdb_s", "cdb_sampler",
    "pk_sampler", "pk_batch_sampler", "m_per_class_sampler", "dual_sampler", "dualsampler",
    "progressively_balanced_sampler", "progressive_sampler", "pb_sampler",
    "square_root_sampler", "sqrt_sampler", "square_root_sampling",
    "subsample_sampler", "subg", "suby", "subsampling", "group_subsampling",
]

MinerId = Literal[
    "hard_negatives", "topk_negatives", "static_hard_negatives",
    "positive_aware_negatives", "topk_percpos", "nv_retriever_negatives",
    "ance", "ance_negatives",
    "simans", "simans_negatives", "ambiguous_negatives",
    "random_negatives", "uniform_negatives",
]
GISTId = Literal["gistembed", "gist", "gist_selector"]
NGAMEId = Literal["ngame", "ngame_sampler", "ngame_batch_sampler"]

TwoStageId = Literal[
    "crt", "classifier_retraining", "classifier_re_training",
    "lws", "learnable_weight_scaling",
    "tau_norm", "tau_normalization", "tau_normalized_classifier",
    "weight_balancing", "maxnorm", "max_norm", "wb",
]


@overload
def create(id: ClassWeightingId, **kwargs: Any) -> ClassWeighting: ...
@overload
def create(id: WeightingId, **kwargs: Any) -> Weighting: ...
@overload
def create(id: SamplerId, **kwargs: Any) -> Sampler[Any]: ...
@overload
def create(id: TwoStageId, **kwargs: Any) -> StageTwo: ...
@overload
def create(id: MinerId, **kwargs: Any) -> NegativeMiner: ...
@overload
def create(id: GISTId, **kwargs: Any) -> GISTSelector: ...
@overload
def create(id: NGAMEId, **kwargs: Any) -> NGAMEBatchSampler: ...
@overload
def create(id: str, **kwargs: Any) -> Loss: ...
def create(id: str, **kwargs: Any) -> Any:
    """Instantiate the registered method ``id`` with keyword arguments.

    A loss id gives a :class:`lossatlas.losses.Loss` (an ``nn.Module`` whose call returns a
    tensor), a weighting id a :class:`lossatlas.weighting.Weighting`, a sampler id a
    ``torch.utils.data.Sampler``, a two-stage id a :class:`lossatlas.two_stage.StageTwo`, a
    ``negatives`` id a miner (:class:`lossatlas.negatives.NegativeMiner`), GISTEmbed's selector or
    NGAME's batch sampler. Raises ``TypeError`` naming the missing or unexpected
    arguments.
    """
    entry = info(id)
    params = entry.parameters
    missing = [n for n in entry.required if n not in kwargs]
    accepts_var_kw = any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(entry.cls).parameters.values()
    )
    unexpected = [k for k in kwargs if k not in params]
    if unexpected and not accepts_var_kw:
        # a misspelt name is also a missing one: name the unknown ones first, with the closest
        # accepted name for each (as info() does for ids)
        free = [n for n in params if n not in kwargs]
        close = {k: difflib.get_close_matches(_canonical(k), free, n=1) for k in unexpected}
        hints = [(k, m[0]) for k, m in close.items() if m]
        if len(hints) == 1 and len(unexpected) == 1:
            hint = f"; did you mean {hints[0][1]!r}?"
        elif hints:
            hint = "; did you mean " + ", ".join(f"{m!r} (for {k})" for k, m in hints) + "?"
        else:
            hint = "."
        still = f" It also requires {', '.join(missing)}." if missing else ""
        raise TypeError(
            f"{entry.id} got unexpected argument(s) {', '.join(unexpected)}{hint} "
            f"It accepts {', '.join(params) or 'no arguments'}.{still}"
        )
    if missing:
        raise TypeError(
            f"{entry.id} requires the argument(s) {', '.join(missing)}; "
            f"see lossatlas.info({entry.id!r}) for their meaning"
        )
    return entry.cls(**kwargs)


def list_entries(family: str | None = None, kind: str | None = None) -> list[Entry]:
    """All registry entries, sorted by family then id, optionally filtered."""
    _load_all()
    entries = sorted(_ENTRIES.values(), key=lambda e: (e.family, e.id))
    if family is not None:
        known = families()
        if family not in known:
            raise ValueError(f"unknown family {family!r}; known families: {', '.join(known)}")
        entries = [e for e in entries if e.family == family]
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        entries = [e for e in entries if e.kind == kind]
    return entries


def families() -> list[str]:
    """The families present in the registry."""
    _load_all()
    return sorted({e.family for e in _ENTRIES.values()})
