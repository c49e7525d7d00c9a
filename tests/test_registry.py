"""The public API: create / list / info, aliases, errors, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import lossatlas as la
from lossatlas.cli import main


def test_create_by_id_and_alias_gives_same_class():
    assert type(la.create("ce")) is type(la.create("cross_entropy")) is la.losses.CrossEntropyLoss
    assert type(la.create("LDAM-loss", class_counts=[3, 2])) is la.losses.LDAMLoss


def test_unknown_id_suggests_close_match():
    with pytest.raises(ValueError, match="Did you mean 'ldam'"):
        la.create("ldm")
    with pytest.raises(TypeError, match="must be a str"):
        la.info(3)


def test_create_rejects_missing_and_unexpected_arguments():
    with pytest.raises(TypeError, match="requires the argument"):
        la.create("ldam")
    with pytest.raises(TypeError, match="unexpected argument"):
        la.create("focal", gama=2.0)


def test_list_filters_and_metadata():
    entries = la.list()
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    imbalance = la.list(family="imbalance")
    assert imbalance and all(e.family == "imbalance" for e in imbalance)
    assert {e.id for e in la.list(kind="weighting")} >= {"effective_number", "drw"}
    with pytest.raises(ValueError, match="unknown family"):
        la.list(family="nope")
    e = la.info("ldam")
    assert e.required == ("class_counts",)
    assert e.defaults["max_margin"] == 0.5 and "LDAM-DRW" in e.defaults_source["max_margin"]
    assert e.paper.arxiv == "1906.07413" and e.function is la.functional.ldam
    assert json.loads(json.dumps(e.as_dict()))["id"] == "ldam"


def test_every_entry_is_constructible_from_its_required_arguments():
    samples = {"class_counts": [30, 20, 10], "num_classes": 3, "num_samples": 8, "embedding_size": 4, "labels": [0, 1, 2, 0]}
    for e in la.list():
        kwargs = {name: samples[name] for name in e.required if name in samples}
        if set(e.required) - set(kwargs):
            continue
        obj = la.create(e.id, **kwargs)
        if e.kind == "sampler":
            assert isinstance(obj, torch.utils.data.Sampler) and len(list(iter(obj))) > 0
        elif e.kind == "two_stage":
            assert isinstance(obj, la.two_stage.StageTwo)
        elif e.kind == "negatives":
            assert isinstance(obj, (la.negatives.NegativeMiner, la.negatives.GISTSelector, torch.utils.data.Sampler))
        else:
            assert isinstance(obj, torch.nn.Module)


def test_cli_list_and_info(capsys):
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"ldam", "focal"} <= {d["id"] for d in listed}
    assert main(["info", "ldam"]) == 0
    assert "Cao" in capsys.readouterr().out
    assert main(["info", "nope"]) == 2
    assert "unknown lossatlas id" in capsys.readouterr().err


def test_cli_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "lossatlas", "list"], capture_output=True, text=True, check=True).stdout
    assert "ldam" in out and "imbalance" in out


def test_create_overload_id_lists_match_the_registry():
    # The Literal id lists that give la.create its static return types must name exactly the
    # registry's weighting / sampler ids and aliases (a new id must be added there).
    import typing

    from lossatlas import registry
    from lossatlas.weighting.base import ClassWeighting

    def names(kind, pred=lambda e: True):
        return {n for e in la.list(kind=kind) if pred(e) for n in (e.id, *e.aliases)}

    assert set(typing.get_args(registry.ClassWeightingId)) == names("weighting", lambda e: issubclass(e.cls, ClassWeighting))
    assert set(typing.get_args(registry.WeightingId)) == names("weighting", lambda e: not issubclass(e.cls, ClassWeighting))
    assert set(typing.get_args(registry.SamplerId)) == names("sampler")
    assert set(typing.get_args(registry.TwoStageId)) == names("two_stage")
    miners = names("negatives", lambda e: issubclass(e.cls, la.negatives.NegativeMiner))
    assert set(typing.get_args(registry.MinerId)) == miners
    assert set(typing.get_args(registry.GISTId)) == names("negatives", lambda e: issubclass(e.cls, la.negatives.GISTSelector))
    assert set(typing.get_args(registry.NGAMEId)) == names("negatives", lambda e: issubclass(e.cls, la.negatives.NGAMEBatchSampler))
    loss_kinds = {"classification", "multilabel", "embedding", "pair", "regulariser"}
    for e in la.list():
        obj_type = e.cls
        if e.kind in loss_kinds:
            assert issubclass(obj_type, la.losses.Loss), e.id
