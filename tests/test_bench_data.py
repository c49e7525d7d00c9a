"""Own data as a first-class benchmark path, and the failure records.

- a user's ``.npz`` is checked once, before anything is trained or stored: each malformed file
  (a missing array, a wrong dtype, a label out of range, a length mismatch, ...) is refused
  with a message naming the array and the problem, and the results database holds no run;
- a relative ``data.path`` is read from the recipe file's folder, not the working directory;
- ``lossatlas bench failures`` lists, shows and prunes failed runs;
- ``lossatlas bench run --help`` lists every built-in suite and task and the ``.npz`` layout.
"""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest

from lossatlas.bench.recipes import builtin_suites, load_suite
from lossatlas.bench.store import ResultsStore
from lossatlas.bench.tasks import available_tasks

TINY = {"model": {"name": "mlp", "hidden": [8]}, "epochs": 1, "batch_size": 32}


def _good_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    return {"x_train": x[:45], "y_train": y[:45], "x_test": x[45:], "y_test": y[45:]}


def _stored_runs(db) -> int:
    if not os.path.exists(db):
        return 0
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.OperationalError:  # no table: nothing stored
        return 0
    finally:
        con.close()


def _suite_file(folder, npz_name: str, recipes=("a", "b"), seeds=2) -> str:
    path = folder / "suite.json"
    path.write_text(json.dumps({"name": "own", "defaults": {**TINY, "seeds": seeds, "data": {"name": "npz", "path": npz_name}},
                                "recipes": [{"name": r} for r in recipes]}))
    return str(path)


def _malformed(rng):
    good = _good_arrays(rng)
    out = {
        "missing array": ({k: v for k, v in good.items() if k != "x_test"}, "missing array 'x_test'"),
        "float labels": ({**good, "y_train": good["y_train"].astype(np.float32)}, "array 'y_train' must hold integer class ids.*float32"),
        "string features": ({**good, "x_test": np.array([["a"] * 4] * 15)}, "array 'x_test' must hold real numbers.*<U1"),
        "label out of range": ({**good, "y_test": np.where(good["y_test"] == 2, 7, good["y_test"]), "num_classes": np.array(3)},
                               "array 'y_test' holds a label out of range: 7 .*num_classes is 3"),
        "negative label": ({**good, "y_train": good["y_train"] - 1}, "array 'y_train' holds a label out of range: -1"),
        "length mismatch": ({**good, "y_train": good["y_train"][:40]}, "array 'y_train' has 40 labels but 'x_train' has 45 rows"),
        "labels 2-d": ({**good, "y_test": good["y_test"][:, None]}, "array 'y_test' must be one-dimensional"),
        "nan features": ({**good, "x_train": np.where(np.arange(45)[:, None] == 3, np.nan, good["x_train"])}, "array 'x_train' holds 4 non-finite"),
        "feature shapes differ": ({**good, "x_test": good["x_test"][:, :3]}, "array 'x_test' has samples of shape \\(3,\\) but 'x_train' has \\(4,\\)"),
        "pair missing labels": ({"features": good["x_train"]}, "missing array 'labels'"),
        "bad num_classes": ({**good, "num_classes": np.array([2.5])}, "array 'num_classes' must be one positive integer"),
    }
    return out


@pytest.mark.parametrize("case", list(_malformed(np.random.default_rng(0))))
def test_malformed_npz_is_refused_before_training_and_nothing_is_stored(tmp_path, case):
    from lossatlas.bench.runner import run_suite

    arrays, message = _malformed(np.random.default_rng(0))[case]
    np.savez(tmp_path / "mine.npz", **arrays)
    suite, db = _suite_file(tmp_path, "mine.npz"), str(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match=message) as info:
        run_suite(suite, db, progress=False)
    assert "mine.npz" in str(info.value)  # the file is named too
    assert _stored_runs(db) == 0


def test_bad_npz_through_the_cli_is_one_error_and_no_stored_run(tmp_path, capsys):
    from lossatlas.cli import main

    (tmp_path / "not.npz").write_bytes(b"this is not a zip archive")
    suite, db = _suite_file(tmp_path, "not.npz"), str(tmp_path / "r.sqlite")
    assert main(["bench", "run", suite, "--db", db, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not.npz: not a readable .npz file" in err and err.count("lossatlas: error") == 1
    assert _stored_runs(db) == 0
    np.save(tmp_path / "plain.npy", np.zeros(3))  # one array, not an archive
    os.replace(tmp_path / "plain.npy", tmp_path / "not.npz")
    assert main(["bench", "run", suite, "--db", db, "--no-progress"]) == 2
    assert "single .npy array" in capsys.readouterr().err and _stored_runs(db) == 0


def test_npz_path_is_relative_to_the_recipe_file_not_the_working_directory(tmp_path, monkeypatch):
    from lossatlas.bench.runner import run_suite

    data_dir = tmp_path / "project" / "data"
    data_dir.mkdir(parents=True)
    np.savez(data_dir / "mine.npz", **_good_arrays(np.random.default_rng(1)))
    suite = _suite_file(tmp_path / "project", os.path.join("data", "mine.npz"), recipes=("a",), seeds=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the path would not resolve from here
    [recipe] = load_suite(suite).recipes
    assert recipe.config["data"]["path"] == str(data_dir / "mine.npz")
    summary = run_suite(suite, str(tmp_path / "r.sqlite"), progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    # an absolute path is kept; a missing relative one names the resolved path
    assert load_suite(_suite_file(tmp_path, str(data_dir / "mine.npz"))).recipes[0].config["data"]["path"] == str(data_dir / "mine.npz")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "project" / "nope.npz")):
        run_suite(_suite_file(tmp_path / "project", "nope.npz"), str(tmp_path / "r2.sqlite"), progress=False)
    assert _stored_runs(tmp_path / "r2.sqlite") == 0


def test_good_npz_trains_and_labels_match_the_file(tmp_path):
    from lossatlas.bench.runner import run_suite

    arrays = _good_arrays(np.random.default_rng(2))
    np.savez(tmp_path / "mine.npz", **arrays, num_classes=np.array(3))
    summary = run_suite(_suite_file(tmp_path, "mine.npz", recipes=("a",), seeds=1), str(tmp_path / "r.sqlite"), progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    with ResultsStore(tmp_path / "r.sqlite") as s:
        [row] = s.results()
    assert row["class_counts"] == np.bincount(arrays["y_train"], minlength=3).tolist()
    assert row["metrics"]["n_test"] == 15


# -- failures --------------------------------------------------------------------------------
def _failing_suite(tmp_path) -> str:
    path = tmp_path / "f.json"
    # lr 1e30 diverges: its runs fail (recorded), the other recipe's runs finish
    path.write_text(json.dumps({"name": "f", "defaults": {**TINY, "data": {"name": "digits"}, "seeds": 2},
                                "recipes": [{"name": "bad", "optimizer": {"name": "sgd", "lr": 1e30}}, {"name": "ok"}]}))
    return str(path)


def test_failures_list_show_and_prune(tmp_path, capsys):
    from lossatlas.cli import main

    suite, db = _failing_suite(tmp_path), str(tmp_path / "r.sqlite")
    assert main(["bench", "run", suite, "--db", db, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"lossatlas bench failures --db {db}" in out
    with ResultsStore(db) as s:
        failed = s.results(status="failed")
    assert sorted(r["seed"] for r in failed) == [0, 1] and {r["method"] for r in failed} == {"bad"}

    assert main(["bench", "failures", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"2 failed runs in {db}")
    listed = [ln for ln in out.splitlines()[1:] if ln.strip()]
    assert len(listed) == 2 and all("bad" in ln and failed[0]["recipe_hash"] in ln and "FloatingPointError" in ln and "non-finite" in ln for ln in listed)

    assert main(["bench", "failures", "--db", db, "--show", f"{failed[0]['recipe_hash'][:6]}:1"]) == 0
    out = capsys.readouterr().out
    assert "Traceback (most recent call last)" in out and "seed 1" in out and "seed 0" not in out
    assert out.count("== f / bad") == 1
    assert main(["bench", "failures", "--db", db, "--show", "bad"]) == 0
    assert capsys.readouterr().out.count("Traceback") == 2
    assert main(["bench", "failures", "--db", db, "--show", "ok"]) == 2  # the finished recipe has no failures
    assert "no failed run matches 'ok'" in capsys.readouterr().err

    assert main(["bench", "failures", "--db", db, "--prune", "--method", "ok"]) == 0  # nothing of 'ok' to prune
    assert "pruned 0 failed runs" in capsys.readouterr().out
    assert main(["bench", "failures", "--db", db, "--prune"]) == 0
    assert "pruned 2 failed runs" in capsys.readouterr().out
    with ResultsStore(db) as s:
        rows = s.results(status=None)
    assert sorted((r["method"], r["status"]) for r in rows) == [("ok", "done"), ("ok", "done")]  # finished runs untouched
    assert main(["bench", "failures", "--db", db]) == 0
    assert "no failed runs" in capsys.readouterr().out
    assert main(["bench", "failures", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_help_lists_every_suite_every_task_and_the_npz_layout(capsys):
    from lossatlas.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "run", "--help"])
    text = capsys.readouterr().out
    for name in builtin_suites():
        assert f"\n  {name} " in text, name
        assert load_suite(name).description.split()[0] in text
    for task in available_tasks():
        assert f"\n  {task} " in text, task
    for array in ("x_train", "y_train", "x_test", "y_test", "features", "labels", "num_classes", "int64", "float32"):
        assert array in text, array
    assert "recipe file's folder" in text
