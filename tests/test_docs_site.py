"""The documentation site (Sphinx, docs/conf.py): it builds with warnings as errors, names every
registered id on a generated family page with its metadata, every code example on it runs,
its math is MathML made at build time (nothing fetched from the network), and it works in a
real headless Chromium (Debian's /usr/bin/chromium driven by /usr/bin/chromedriver):
formulas are laid out, the built-in search finds a loss by name, the console stays clean, and
a screenshot is written.

The site is built once per module into a temporary folder (about 25 s of CPU). Without
Sphinx (the ``docs`` extra) or Chromium these tests skip saying why; in CI (``CI=true``) they
fail instead.
"""

from __future__ import annotations

import functools
import html
import http.server
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import lossatlas as la

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import lossatlas_pages  # noqa: E402  (docs/_ext: the generator the build runs)

from chromium import CHROMEDRIVER, CHROMIUM, chromium, console_errors, requested_urls, unavailable  # noqa: E402

_unavailable = unavailable
_console_errors = console_errors
_requested_urls = requested_urls


# ----------------------------------------------------------------------------- the build


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import latex2mathml  # noqa: F401
        import myst_parser  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as exc:
        _unavailable(f"the docs tools are not installed ({exc}): pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("docs")
    # the README's command (-W: warnings are errors), with -j auto: reading and writing on every core
    cmd = [sys.executable, "-m", "sphinx", "-j", "auto", "-W", "--keep-going", "-q", "-b", "html", "-d", str(out / "doctrees"), "docs", str(out / "html")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    assert proc.returncode == 0, f"docs build failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    print(f"docs built in {took:.1f} s")
    return out / "html"


def _read(site: Path, page: str) -> str:
    return (site / page).read_text(encoding="utf-8")


def _entry_section(page_html: str, entry_id: str) -> str:
    """The HTML of one entry's section of a family page (from its label to the next entry's)."""
    label = f'<span id="loss-{entry_id.replace("_", "-")}"></span>'
    start = page_html.index(label)
    nxt = page_html.find('<span id="loss-', start + len(label))
    return page_html[start: nxt if nxt != -1 else len(page_html)]


_PLAIN_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def _text(fragment: str) -> str:
    """The text of an HTML fragment (typographic quotes made plain again)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).translate(_PLAIN_QUOTES)


def test_site_builds_with_warnings_as_errors(site: Path) -> None:
    for page in ["index.html", "getting-started.html", "guide.html", "differences.html", "families/index.html", "search.html", "searchindex.js"]:
        assert (site / page).is_file(), page
    # one API page per public module (generated), autodoc ran on each
    for module in ["functional", "losses", "metrics", "samplers", "weighting", "integrations", "integrations.huggingface", "integrations.lightning"]:
        assert (site / "api" / f"lossatlas.{module}.html").is_file(), module
    for name in la.__all__:
        if inspect.ismodule(getattr(la, name, None)):
            assert (site / "api" / f"lossatlas.{name}.html").is_file(), f"lossatlas.{name} has no API page"
    assert 'id="lossatlas.create"' in _read(site, "api/lossatlas.html")
    assert 'id="lossatlas.losses.LDAMLoss"' in _read(site, "api/lossatlas.losses.html")
    assert 'id="lossatlas.functional.ldam"' in _read(site, "api/lossatlas.functional.html")
    assert 'id="lossatlas.integrations.huggingface.compute_loss_func"' in _read(site, "api/lossatlas.integrations.huggingface.html")


def test_every_registered_id_is_named_on_the_site(site: Path) -> None:
    index = _text(_read(site, "families/index.html"))
    search_index = _read(site, "searchindex.js")
    for family in la.families():
        page = _read(site, f"families/{family}.html")
        for entry in la.list(family=family):
            section = _entry_section(page, entry.id)  # raises if the id has no section
            assert "<h2><code" in section and f">{entry.id}</span></code>" in section, entry.id
            assert entry.id in index, f"{entry.id} missing from the family index"
            assert entry.id in search_index, f"{entry.id} missing from the search index"
            for alias in entry.aliases:
                assert alias in _text(section), f"{entry.id}: alias {alias}"


def _expected_parity() -> dict[str, int] | None:
    """Cases per id counted here from the manifests (tests/helpers.py's folders)."""
    from helpers import parity_dirs

    folders = [d for d in parity_dirs() if d.is_dir()]
    if not folders:
        return None
    counts: dict[str, int] = {}
    for folder in folders:
        for path in folder.glob("manifest*.json"):
            for case in json.loads(path.read_text()):
                counts[case["id"]] = counts.get(case["id"], 0) + 1
    return counts


def test_family_pages_show_formula_paper_defaults_parity_example(site: Path) -> None:
    parity = _expected_parity()
    for entry in la.list():
        section = _entry_section(_read(site, f"families/{entry.family}.html"), entry.id)
        text = _text(section)
        doc = inspect.getdoc(entry.cls) or ""
        if ".. math::" in doc.split("Args:")[0]:
            assert "<math" in section, f"{entry.id}: its docstring formula is not rendered"
        assert entry.formula.split()[0] in text, f"{entry.id}: registry formula"
        if entry.paper is not None:
            assert str(entry.paper.year) in text and entry.paper.title.split()[0] in text, f"{entry.id}: paper"
        for name, value in entry.defaults.items():
            assert name in text, f"{entry.id}: default {name}"
            source = entry.defaults_source.get(name)
            if source:
                assert " ".join(source.split()) in " ".join(text.split()), f"{entry.id}: source of {name}"
        for name in entry.required:
            assert name in text
        if parity is None:
            assert "fixtures not available" in text, entry.id
        elif parity.get(entry.id):
            found = sum(int(n) for n in re.findall(r"on (\d+) cases?", text))
            assert found == parity[entry.id], f"{entry.id}: {found} parity cases on the page, {parity[entry.id]} in the manifests"
        else:
            assert "no case in the parity fixtures" in text, entry.id
        assert "&gt;&gt;&gt;" in section, f"{entry.id}: no example"


def test_math_is_mathml_made_at_build_time_and_nothing_is_fetched(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    n_math = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        n_math += text.count("<math ")
        # no LaTeX left for a script to typeset, and no math library
        assert not re.search(r"\\\(|\\\[|\$\$", _text(re.sub(r"<pre>.*?</pre>", "", text, flags=re.S))), page
        assert "mathjax" not in text.lower() and "katex" not in text.lower(), page
        # every script, stylesheet, image and font is local
        for url in re.findall(r'<(?:script|img|link)[^>]+(?:src|href)="([^"]+)"', text):
            assert not re.match(r"^(https?:)?//", url), f"{page}: {url} would be fetched from the network"
    assert n_math > 50
    for css in site.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", css.read_text(encoding="utf-8", errors="replace")), css


# ----------------------------------------------------------------------------- code examples

_BLOCK = re.compile(r'<div class="(?P<cls>[^"]*highlight-(?P<lang>[\w+-]+)[^"]*)"><div class="highlight"><pre>(?P<code>.*?)</pre>', re.S)

#: Runs every example in a fresh interpreter (examples seed torch, set print options ...):
#: a doctest block is run as a doctest (its outputs are checked) with the globals of the
#: module its docstring is in (doctest's own convention, as ``doctest.testmod``); a python
#: block is executed with the blocks before it on the same page (a page reads top to bottom).
_RUNNER = r"""
import doctest, importlib, json, sys, traceback

def module_globals(context):
    if not context:
        return {"__name__": "docs"}
    kind, name = context.split(":", 1)
    if kind == "module":
        return dict(vars(importlib.import_module(name)))
    if kind == "loss":
        import lossatlas as la
        return dict(vars(sys.modules[la.info(name).cls.__module__]))
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            continue
    module = obj.__name__
    for part in parts[i:]:
        obj = getattr(obj, part)
        module = getattr(obj, "__module__", None) or module
    return dict(vars(sys.modules[module]))

blocks = json.load(open(sys.argv[1]))
failures = []
pages = {}
for b in blocks:
    where = f"{b['page']} block {b['index']} ({b['context'] or 'page'})"
    try:
        if b["kind"] == "doctest":
            out = []
            test = doctest.DocTestParser().get_doctest(b["code"], module_globals(b["context"]), where, b["page"], 0)
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
            runner.run(test, out=out.append)
            if runner.failures:
                failures.append(where + ":\n" + "".join(out)[-3000:])
        else:
            globs = pages.setdefault(b["page"], {"__name__": "docs"})
            exec(compile(b["code"], where, "exec"), globs)
    except Exception:
        failures.append(where + ":\n" + b["code"][:2000] + "\n" + traceback.format_exc()[-3000:])
json.dump(failures, open(sys.argv[2], "w"))
"""

#: What a code block documents: an autodoc object, a module's docstring, or a registry entry's section.
_CONTEXT = re.compile(r'<dt class="sig sig-object py" id="(?P<obj>[^"]+)"|id="module-(?P<mod>[^"]+)"|<span id="loss-(?P<loss>[^"]+)"></span>')


def site_code_blocks(site: Path) -> list[dict[str, Any]]:
    """Every code block of the built site: page, index, kind (doctest, python or the block's
    language), code, and context (what it documents: ``object:``, ``module:`` or ``loss:``)."""
    loss_ids = {e.id.replace("_", "-"): e.id for e in la.list()}
    blocks = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        markers = [(m.start(), m) for m in _CONTEXT.finditer(text)]
        for i, m in enumerate(_BLOCK.finditer(text)):
            code = _text(m.group("code"))
            lang = m.group("lang")
            if "doctest" in m.group("cls").split() or lang == "pycon" or code.lstrip().startswith(">>>"):
                kind = "doctest"
            elif lang in ("python", "python3", "py"):
                kind = "python"
            else:
                kind = lang
            context = ""
            before = [mk for pos, mk in markers if pos < m.start()]
            if before:
                last = before[-1]
                if last.group("obj"):
                    context = "object:" + last.group("obj")
                elif last.group("mod"):
                    context = "module:" + last.group("mod")
                elif last.group("loss") in loss_ids:
                    context = "loss:" + loss_ids[last.group("loss")]
            blocks.append({"page": str(page.relative_to(site)), "index": i, "kind": kind, "code": code, "context": context})
    return blocks


#: Examples on the site that fail as of this test's writing, in docstrings of modules outside the
#: docs (their owners fix them): {context: why}. Strict: a listed example that passes fails the
#: test, so the entry is removed once its docstring is fixed.
KNOWN_FAILING: dict[str, str] = {}


def test_every_code_example_on_the_site_runs(site: Path, tmp_path: Path) -> None:
    blocks = site_code_blocks(site)
    runnable, seen = [], set()
    for b in blocks:
        if b["kind"] == "doctest":
            if b["code"] in seen:  # a class's example is on its family page and in the API reference
                continue
            seen.add(b["code"])
            runnable.append(b)
        elif b["kind"] == "python":
            runnable.append(b)
        elif b["kind"] == "default":
            # an unmarked literal block (a docstring's "Usage::" sketch) is highlighted as
            # Python: it must at least be Python
            compile(b["code"], f"{b['page']} block {b['index']}", "exec")
        else:
            assert b["kind"] in ("bash", "console", "text", "none", "shell"), f"{b['page']}: code block of unknown language {b['kind']}"
    assert sum(b["kind"] == "python" for b in runnable) >= 8, "the getting-started examples are missing"
    pages_with_doctests = {b["page"] for b in blocks if b["kind"] == "doctest"}
    for family in la.families():
        assert f"families/{family}.html" in pages_with_doctests
    (tmp_path / "blocks.json").write_text(json.dumps(runnable))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(tmp_path / "blocks.json"), str(tmp_path / "failures.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    failures = json.loads((tmp_path / "failures.json").read_text())
    known = {c for c in KNOWN_FAILING if any(f"({c})" in f.split("\n")[0] for f in failures)}
    fixed = sorted(set(KNOWN_FAILING) - known)
    assert not fixed, f"examples listed in KNOWN_FAILING now pass: remove them from the list: {fixed}"
    failures = [f for f in failures if not any(f"({c})" in f.split("\n")[0] for c in known)]
    assert not failures, f"{len(failures)} of {len(runnable)} code examples fail:\n\n" + "\n\n".join(failures)


def test_guide_numbers_come_from_the_benchmark_results() -> None:
    """Every number the hand-written part of the guide cites is in the README's results or benchmarks/results."""
    guide = (DOCS / "guide.rst").read_text(encoding="utf-8").split(".. lossatlas-benchmarks::")[0]
    sources = (ROOT / "README.md").read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "benchmarks" / "results").glob("*.md"))
    numbers = re.findall(r"\d+\.\d+(?: ± \d+\.\d+)?", guide)
    assert len(numbers) >= 15
    missing = [n for n in numbers if n not in sources]
    assert not missing, f"guide numbers not in README.md / benchmarks/results: {missing}"


# ----------------------------------------------------------------------------- the generator


def test_a_new_id_gets_its_family_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Pages come from the registry: an id of a new family appears with no edit to docs/."""

    class BrandNewLoss(la.losses.Loss):
        r"""A loss registered after the docs were written (Doe, 2031, "A title").

        .. math:: \ell_i = \lvert z_{i, y_i} \rvert

        Args:
            margin: a margin. Default ``0.5`` (the paper)

        Example:
            >>> 1 + 1
            2
        """

        def __init__(self, margin: float = 0.5) -> None:
            super().__init__()

    entry = la.Entry(id="brand_new", cls=BrandNewLoss, family="zz_new", kind="classification", formula="l = |z_y|",
                     paper=la.Paper(authors="J. Doe", title="A title", venue="Venue", year=2031), code="doe/new loss.py",
                     catalogue="Z1", defaults_source={"margin": "the paper"})
    entries = [*la.list(), entry]
    monkeypatch.setattr(la, "list", lambda family=None: [e for e in entries if family is None or e.family == family])
    monkeypatch.setattr(la, "families", lambda: sorted({e.family for e in entries}))
    written = lossatlas_pages.generate(tmp_path)
    assert tmp_path / "zz_new.rst" in written
    page = (tmp_path / "zz_new.rst").read_text()
    assert "``brand_new``" in page and ".. math:: \\ell_i" in page and "2031" in page and "the paper" in page
    assert ">>> 1 + 1" in page
    assert "brand_new" in (tmp_path / "index.rst").read_text()
    # a family that disappears loses its page
    entries.remove(entry)
    lossatlas_pages.generate(tmp_path)
    assert not (tmp_path / "zz_new.rst").exists()


def test_parity_counts_every_manifest_of_every_fixture_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base, sibling = tmp_path / "parity", tmp_path / "parity-extra"
    base.mkdir()
    sibling.mkdir()
    (base / "manifest.A.json").write_text(json.dumps([{"case": "a1", "id": "focal", "reference": "kaidic/LDAM-DRW losses.py::FocalLoss @ " + "0" * 40}]))
    (base / "manifest.B.json").write_text(json.dumps([{"case": "a2", "id": "focal", "reference": "kaidic/LDAM-DRW losses.py::FocalLoss (hidden case)"}]))
    (sibling / "manifest-x.json").write_text(json.dumps([{"case": "x1", "id": "ldam", "reference": "r"}, {"case": "x2", "id": "focal", "reference": "other/repo f.py"}]))
    monkeypatch.setenv("LOSSATLAS_PARITY_DIR", str(base))
    status = lossatlas_pages.parity_status()
    assert status is not None
    assert sorted(c for cases in status["focal"].values() for c in cases) == ["a1", "a2", "x2"]
    line = lossatlas_pages._parity_line("focal", status)
    assert "kaidic/LDAM-DRW losses.py::FocalLoss @ 00000000 on 2 cases" in line and "other/repo f.py on 1 case " in line
    assert "no case" in lossatlas_pages._parity_line("vs", status)
    monkeypatch.setenv("LOSSATLAS_PARITY_DIR", str(tmp_path / "absent"))
    assert lossatlas_pages.parity_status() is None
    assert "fixtures not available" in lossatlas_pages._parity_line("focal", None)


def test_leaderboard_csv_numbers_reach_the_family_pages_and_the_guide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a report's leaderboard.csv (lossatlas bench report), its numbers are on the pages."""
    import csv

    from lossatlas.bench.report import _CSV_COLUMNS  # the columns the report writes

    path = tmp_path / "leaderboard.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerow({"suite": "lt", "method": "ldam_drw", "rank": 1, "seeds": 3, "balanced_accuracy_pct_mean": 87.61, "balanced_accuracy_pct_std": 0.4})
        w.writerow({"suite": "lt", "method": "ce", "rank": 7, "seeds": 3, "balanced_accuracy_pct_mean": 77.12, "balanced_accuracy_pct_std": 1.0})
    monkeypatch.setenv("LOSSATLAS_LEADERBOARD", str(path))
    page = lossatlas_pages.family_page("imbalance", list(la.list(family="imbalance")))
    ldam = page[page.index(".. _loss-ldam:"):]
    assert "recipe ``ldam_drw`` (loss): rank 1" in ldam and "balanced\\_accuracy\\_pct 87.61 ± 0.4" in ldam
    guide = lossatlas_pages.benchmarks_rst()
    assert "87.61" in guide and "77.12" in guide and str(path) in guide
    monkeypatch.setenv("LOSSATLAS_LEADERBOARD", str(tmp_path / "absent.csv"))
    if lossatlas_pages.leaderboard_path() is None:  # no report in the checkout either
        assert "rank 1" not in lossatlas_pages.family_page("imbalance", list(la.list(family="imbalance")))


def test_bare_pipes_in_docstrings_are_escaped_outside_literals_and_math() -> None:
    text = "mean |z| and ``a |b| c`` and :math:`|q|` [N, |S'_n|] x | y\n\n.. math:: |x|\n   |y|_2\n\nend |e|"
    out = lossatlas_pages.escape_substitutions(text)
    assert out == "mean \\|z\\| and ``a |b| c`` and :math:`|q|` [N, \\|S'_n\\|] x | y\n\n.. math:: |x|\n   |y|_2\n\nend \\|e\\|"


def test_mathml_renderer_flags_what_it_cannot_convert() -> None:
    import lossatlas_mathml as mathml

    out, problem = mathml.to_mathml(r"\frac{a}{b} + \texttt{max\_margin}", "block")
    assert problem is None and "<mfrac>" in out and "max_margin" in out and "\\" not in out
    _, problem = mathml.to_mathml(r"\notacommand x", "inline")
    assert problem is not None and "notacommand" in problem


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Any:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _unavailable(f"{' and '.join(missing)} not found: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    site: Path = request.getfixturevalue("site")  # built only once the browser is known to be there

    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium() as driver:
            driver.base = f"http://127.0.0.1:{server.server_address[1]}/"
            yield driver
    finally:
        server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_site_in_headless_chromium(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    errors: list[Any] = []
    urls: list[str] = []

    # 1. math renders: MathML elements laid out as math (a fraction's numerator above its denominator)
    driver.get(driver.base + "families/imbalance.html")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    math = driver.execute_script(
        """
        const ms = [...document.querySelectorAll('math')];
        const fr = [...document.querySelectorAll('math mfrac')].map(f => {
          const [num, den] = f.children; const a = num.getBoundingClientRect(), b = den.getBoundingClientRect();
          return [a.bottom, b.top, a.height, b.height];
        });
        return {n: ms.length, isMathML: ms.every(m => m instanceof MathMLElement),
                sizes: ms.map(m => { const r = m.getBoundingClientRect(); return [r.width, r.height]; }), fractions: fr};
        """
    )
    with_math = [e for e in la.list(family="imbalance") if ".. math::" in (inspect.getdoc(e.cls) or "")]
    assert math["n"] >= len(with_math) > 0
    assert math["isMathML"]
    assert all(w > 0 and h > 0 for w, h in math["sizes"]), math["sizes"]
    assert math["fractions"], "no fraction on the imbalance page"
    for num_bottom, den_top, num_h, den_h in math["fractions"]:
        assert num_h > 0 and den_h > 0 and num_bottom <= den_top + 1, "a fraction is not stacked: MathML not laid out"
    shot = tmp_path / "docs-site.png"
    driver.execute_script(  # LDAM's section (a fraction in its formula); the theme scrolls smoothly: jump
        "document.documentElement.style.scrollBehavior = 'auto';"
        "document.getElementById('loss-ldam').scrollIntoView({behavior: 'instant', block: 'start'});")
    WebDriverWait(driver, 10).until(lambda d: abs(d.execute_script("return document.getElementById('loss-ldam').getBoundingClientRect().top")) < 5)
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("LOSSATLAS_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["LOSSATLAS_DOCS_SCREENSHOT"])
    errors += _console_errors(driver)
    urls += _requested_urls(driver)

    # 2. the built-in search finds a loss by name, and its result leads to the loss's page
    driver.get(driver.base + "index.html")
    box = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "input[name='q']"))
    box.send_keys("ldam" + Keys.ENTER)
    WebDriverWait(driver, 30).until(lambda d: "search.html" in d.current_url)
    links = WebDriverWait(driver, 30).until(
        lambda d: [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "#search-results li a")] or None)
    family_page = f"families/{la.info('ldam').family}.html"
    hits = [h for h in links if family_page in h]
    assert hits, f"searching 'ldam' gave {links}, none on {family_page}"
    errors += _console_errors(driver)
    urls += _requested_urls(driver)
    driver.get(hits[0])
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert driver.execute_script("return document.getElementById('loss-ldam') !== null")

    # 3. a few more pages: the guide, the API reference, getting started
    for page in ["guide.html", "api/lossatlas.losses.html", "getting-started.html", "families/index.html"]:
        driver.get(driver.base + page)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    errors += _console_errors(driver)
    urls += _requested_urls(driver)

    assert not errors, f"console errors: {errors}"
    assert urls, "no request recorded"
    foreign = [u for u in urls if not (u.startswith(driver.base) or u.startswith(("data:", "blob:", "about:", "chrome:", "chrome-untrusted:", "devtools:")))]
    assert not foreign, f"requests outside the local server: {foreign}"
