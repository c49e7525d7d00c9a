"""Every registered method documents itself: formula, paper, defaults, and a runnable example."""

from __future__ import annotations

import doctest
import inspect

import pytest

import lossatlas as la

ENTRIES = la.list()


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_docstring_has_formula_paper_example(entry):
    doc = inspect.getdoc(entry.cls) or ""
    assert len(doc) > 200, f"{entry.id}: docstring too short"
    assert ">>>" in doc, f"{entry.id}: docstring needs a runnable example"
    if entry.paper is not None:
        assert str(entry.paper.year) in doc, f"{entry.id}: docstring should cite the paper's year"
    assert entry.formula and entry.catalogue


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_docstring_example_runs(entry):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(entry.cls, entry.cls.__name__, globs={})
    assert tests and tests[0].examples, f"{entry.id}: no doctest example"
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{entry.id}: its docstring example fails"


def _all_modules() -> list[str]:
    import pkgutil

    import lossatlas

    return sorted(m.name for m in pkgutil.walk_packages(lossatlas.__path__, "lossatlas.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("module", ["lossatlas", *_all_modules()])
def test_module_doctests(module):
    # every docstring example of every module runs and prints what it says
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # LDAM's unnormalised-logits hint on random example logits
        result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_registry_metadata_complete():
    for e in ENTRIES:
        d = e.as_dict()
        assert d["family"] and d["kind"] and d["formula"] and d["catalogue"]
        for name in e.defaults_source:
            assert name in e.defaults


def test_readme_python_examples_run():
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert len(blocks) >= 2, "README should show the library and composition examples"
    for code in blocks:
        exec(compile(code, str(readme), "exec"), {"__name__": "readme"})


def test_readme_counts_and_lists_every_registered_id():
    """The README's "N registered ids" is the registry's size, and its family table names every
    id (it went stale once: 62 written, 117 registered)."""
    import pathlib
    import re

    import lossatlas as la

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"^(\d+) registered ids", text, re.M)
    assert m is not None, "README should say how many ids are registered"
    ids = {e.id for e in la.list()}
    assert int(m.group(1)) == len(ids)
    table = text[text.index("| family | ids |"):]
    table = table[:table.index("\n\n")]
    named = set(re.findall(r"`([a-z0-9_]+)`", table))
    assert ids - named == set(), f"ids missing from the README's family table: {sorted(ids - named)}"
