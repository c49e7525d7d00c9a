"""``lossatlas bench``: recipes, runner, SQLite results store and reports.

Import the pieces from their modules (``lossatlas.bench.recipes``, ``.runner``, ``.store``,
``.report``); this package imports nothing heavy so that ``import lossatlas`` stays light.
Task plug-ins live in :mod:`lossatlas.bench.tasks`.
"""
