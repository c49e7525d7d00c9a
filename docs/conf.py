"""Sphinx configuration of the lossatlas documentation site.

Build (from the repository root; ``pip install -e '.[docs]'`` installs the tools):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-W`` turns every warning into an error. The family pages (docs/families/) are generated
at each build from the registry by docs/_ext/lossatlas_pages.py; the API reference is
autodoc + napoleon over the package's Google-style docstrings, whose formulas are
``.. math::`` blocks.

Math: rendered to MathML at build time by docs/_ext/lossatlas_mathml.py (the ``latex2mathml`` package
of the ``docs`` extra), not by MathJax/KaTeX in the browser. Reasons: Sphinx's default
MathJax loads a script from a CDN, and the site must work with no network at build, test
or view time; vendoring MathJax or KaTeX would tie the build to distribution packages
(libjs-mathjax / libjs-katex) that a pip user does not have; MathML needs no JavaScript
(Chromium >= 109, Firefox and Safari lay it out natively) and a formula that cannot be
converted is a build warning, hence an error under -W.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import lossatlas  # noqa: E402  (the installed package: pip install -e '.[docs]')

project = "lossatlas"
author = "lossatlas contributors"
copyright = "lossatlas contributors"
release = version = lossatlas.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
    "lossatlas_mathml",  # docs/_ext/lossatlas_mathml.py: LaTeX -> MathML at build time
    "lossatlas_pages",  # docs/_ext/lossatlas_pages.py: family pages and benchmark tables from the registry
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# Math: MathML generated at build time (see the module docstring for why).
html_math_renderer = "mathml"

# `::` literal blocks (docstring usage fragments) stay "default"; runnable examples are
# explicit python code blocks or doctest (>>>) blocks: tests/test_docs_site.py runs them.
highlight_language = "default"

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True

myst_heading_anchors = 3

# Text as written: `--lambd` stays two hyphens, quotes stay straight (sources of defaults quote code).
smartquotes = False

html_theme = "furo"
html_title = f"lossatlas {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["lossatlas.css"]
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
