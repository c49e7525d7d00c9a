"""The package as users install it: its metadata, its data files, its launcher, its changelog.

In the ordinary run (an editable install) these check what pyproject.toml declares. CI's wheel
step (.ci/run) builds the wheel with ``python -m build``, installs it with its test extra in a
fresh virtual environment and runs this file, with a subset of the suite, from a directory
where the repository's ``src/`` is not importable, with ``LOSSATLAS_WHEEL_TEST=1``: then
lossatlas must come from that environment's site-packages, with every data file.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import pathlib
import re
import subprocess
import sys

import pytest

import _lossatlas_cli
import lossatlas as la
from lossatlas.bench.recipes import builtin_suites, load_suite

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
WHEEL = os.environ.get("LOSSATLAS_WHEEL_TEST") == "1"
PYPROJECT_TEXT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def _pyproject():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ (tomllib)")
    return tomllib.loads(PYPROJECT_TEXT)


def _under(path: str, folder: pathlib.Path) -> bool:
    return folder.resolve() in pathlib.Path(path).resolve().parents


@pytest.mark.skipif(not WHEEL, reason="editable run; CI's wheel step runs this with LOSSATLAS_WHEEL_TEST=1")
def test_imported_from_the_installed_wheel():
    assert not _under(la.__file__, SRC), la.__file__
    assert "site-packages" in pathlib.Path(la.__file__).resolve().parts, la.__file__
    assert not _under(_lossatlas_cli.__file__, SRC), _lossatlas_cli.__file__
    # installed from a wheel file (PEP 610: an archive), not as an editable project
    direct = importlib.metadata.distribution("lossatlas").read_text("direct_url.json") or ""
    assert '"archive_info"' in direct and '.whl"' in direct and "editable" not in direct, direct
    # the console script of that environment is the launcher, and runs
    script = pathlib.Path(sys.executable).with_name("lossatlas")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"lossatlas {la.__version__}"


def test_package_data_is_installed():
    pkg = importlib.resources.files("lossatlas")
    assert (pkg / "py.typed").is_file()
    suites = pkg / "bench" / "suites"
    installed = sorted(p.name for p in suites.iterdir() if p.name.endswith(".json"))
    shipped = sorted(p.name for p in (SRC / "lossatlas" / "bench" / "suites").glob("*.json"))
    assert installed == shipped and installed
    for name in builtin_suites():  # every built-in suite loads from the installed files
        assert load_suite(name).recipes


def test_package_data_is_declared():
    # what setuptools puts in the wheel beside the .py files
    pyproject = _pyproject()
    data = pyproject["tool"]["setuptools"]["package-data"]["lossatlas"]
    assert {"py.typed", "bench/suites/*.json"} <= set(data)
    extra = [p.relative_to(SRC / "lossatlas").as_posix() for p in (SRC / "lossatlas").rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc", ".json", ".typed") and "__pycache__" not in p.parts]
    assert not extra, f"files in the package that no package-data pattern ships: {extra}"
    assert pyproject["tool"]["setuptools"]["py-modules"] == ["_lossatlas_cli"]


def test_metadata():
    meta = importlib.metadata.metadata("lossatlas")
    declared = re.search(r'^version = "([^"]+)"', PYPROJECT_TEXT, re.M)
    assert declared and meta["Version"] == la.__version__ == declared.group(1)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= urls.keys(), urls
    assert urls["Changelog"].endswith("/CHANGELOG.md") and all(u.startswith("https://") for u in urls.values())
    assert meta["License-Expression"] == "Apache-2.0"
    assert any(r.startswith("torch>=") for r in meta.get_all("Requires-Dist"))
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
    (ep,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "lossatlas"]
    assert ep.value == "_lossatlas_cli:main"


def test_changelog_has_the_version_and_the_policy():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## Version policy" in text
    assert re.search(rf"^## \[{re.escape(la.__version__)}\]", text, re.M), "no section for the current version"
    # the README (the package's long description) points to the policy
    assert "CHANGELOG.md" in (ROOT / "README.md").read_text(encoding="utf-8")
