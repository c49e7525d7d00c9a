"""The ``retrieval`` benchmark task and suite (catalogue row G11)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lossatlas.bench.recipes import load_suite, validate_recipe
from lossatlas.bench.tasks import retrieval as R


def test_suite_validates_and_covers_every_strategy() -> None:
    suite = load_suite("retrieval")
    assert len({r.hash for r in suite.recipes}) == len(suite.recipes)
    strategies = {r.config["negatives"]["strategy"] for r in suite.recipes}
    assert strategies == {"none", "random", "hard", "ance", "simans"}
    assert any(r.config["guide"] is not None for r in suite.recipes)
    assert any(r.config["negatives"]["ratio"] is not None for r in suite.recipes)
    assert {r.config["batching"]["name"] for r in suite.recipes} == {"random", "ngame"}


def test_corrupt_is_a_shift_with_dropout_and_noise() -> None:
    x = R.load_corpus()[:5]
    g = torch.Generator().manual_seed(0)
    assert torch.equal(R.corrupt(x, 0, 0.0, 0.0, g), x)
    out = R.corrupt(x, 1, 0.0, 0.0, g).view(5, 8, 8)
    img = x.view(5, 8, 8)
    for i in range(5):  # each view is the image translated by (dy, dx) in {-1, 0, 1}², zeros shifted in
        found = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ref = torch.zeros(8, 8)
                src = img[i, max(0, dy) : 8 + min(0, dy), max(0, dx) : 8 + min(0, dx)]
                ref[max(0, -dy) : 8 + min(0, -dy), max(0, -dx) : 8 + min(0, -dx)] = src
                found |= torch.equal(out[i], ref)
        assert found, i
    dropped = R.corrupt(torch.ones(200, 64), 0, 0.25, 0.0, g)
    assert abs(float((dropped == 0).double().mean()) - 0.25) < 0.02


def _tiny(**kw: Any) -> dict[str, Any]:
    return {"name": "t", "task": "retrieval", "epochs": 1, "batch_size": 128, "model": {"hidden": 32, "embedding_size": 16}, **kw}


@pytest.mark.parametrize("negatives, guide", [
    ({}, None),
    ({"strategy": "random"}, None),
    ({"strategy": "hard", "refresh_every": 3, "ratio": 0.95}, None),
    ({"strategy": "simans", "refresh_every": 5}, None),
    ({"strategy": "ance", "depth": 10}, {"name": "pixels"}),
])
def test_every_strategy_runs_and_is_deterministic(negatives: dict[str, Any], guide: Any) -> None:
    recipe = _tiny(negatives=negatives, guide=guide)
    a = R.run(recipe, 0, torch.device("cpu"))
    b = R.run(recipe, 0, torch.device("cpu"))
    assert a["mrr"] == b["mrr"] and a["recall@1"] == b["recall@1"]
    assert 0 <= a["recall@1"] <= a["recall@5"] <= a["recall@10"] <= 1
    assert a["recall@1"] <= a["mrr"] <= 1 and a["primary_metric"] == "mrr"
    if negatives.get("refresh_every") == 3:
        assert a["refreshes"] == (1258 // 128) // 3  # 1,797 - 539 training queries, 9 steps


def test_ngame_batching_runs_is_deterministic_and_differs_from_random_batches() -> None:
    recipe = _tiny(epochs=2, batching={"name": "ngame", "cluster_size": 8, "refresh_every": 1})
    a = R.run(recipe, 0, torch.device("cpu"))
    assert a == {**R.run(recipe, 0, torch.device("cpu")), "train_time_s": a["train_time_s"]}
    plain = R.run(_tiny(epochs=2), 0, torch.device("cpu"))
    assert a["final_train_loss"] != plain["final_train_loss"]
    assert 0 <= a["recall@1"] <= a["recall@5"] <= a["recall@10"] <= 1


def test_untrained_mrr_equals_a_direct_ranking() -> None:
    out = R.run(_tiny(epochs=0), 1, torch.device("cpu"))
    assert out["n_test_queries"] == 539 and out["corpus_size"] == 1797
    assert 0 < out["mrr"] < 1


@pytest.mark.parametrize("change, match", [
    ({"negatives": {"strategy": "bm25"}}, "negatives.strategy"),
    ({"negatives": {"num": 0}}, "negatives.num"),
    ({"guide": {"name": "bert"}}, "guide.name"),
    ({"data": {"dropout": 1.5}}, "data.dropout"),
    ({"data": {"name": "mnist1d"}}, "data.name"),
    ({"temperature": 0}, "temperature"),
    ({"batching": {"name": "kmeans"}}, "batching.name"),
    ({"batching": {"name": "ngame", "cluster_size": 0}}, "batching.cluster_size"),
    ({"batching": {"name": "ngame", "doubling_epochs": 5}}, "batching.doubling_epochs"),
])
def test_recipe_errors_name_the_field(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_recipe({"name": "x", "task": "retrieval", **change})
