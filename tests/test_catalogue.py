"""Every catalogue row is a registered id, a note saying where it lives / why it is not a loss,
or a pending line (not implemented yet): ``lossatlas list --catalogue`` shows them all.

The catalogue itself (``CATALOGUE.md``) is read from ``../shared`` (``LOSSATLAS_CATALOGUE``
overrides; so does ``LOSSATLAS_PARITY_DIR``, beside which it is read); where it is absent the test that needs it skips (fails in CI), saying why, as the
parity tests do. The other tests need no copy of it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import lossatlas as la
from helpers import IN_CI, PARITY_DIR
from lossatlas import catalogue
from lossatlas.cli import format_catalogue, main

#: ``../shared/CATALOGUE.md``: beside the parity fixtures (``LOSSATLAS_PARITY_DIR`` moves both), or ``LOSSATLAS_CATALOGUE``
CATALOGUE_MD = Path(os.environ.get("LOSSATLAS_CATALOGUE", PARITY_DIR.parent / "CATALOGUE.md"))


def _catalogue_rows(text: str) -> dict[str, str]:
    """{row code: method} of every table row ``| A4 | LDAM (Cao 2019) | ...`` of the catalogue."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*([A-Z][0-9]+)\s*\|\s*([^|]*)\|", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _registered_rows() -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for e in la.list():
        rows.setdefault(e.catalogue, set()).add(e.id)
    return rows


def test_catalogue_parser_reads_table_rows_only():
    text = "| id | method |\n|---|---|\n| A4 | LDAM (Cao 2019) | m |\n| G16 | SogCLR | x |\nA5 in prose\n"
    assert _catalogue_rows(text) == {"A4": "LDAM (Cao 2019)", "G16": "SogCLR"}


def test_every_catalogue_row_is_registered_or_listed():
    if not CATALOGUE_MD.is_file():
        why = f"catalogue not found at {CATALOGUE_MD} (set LOSSATLAS_CATALOGUE); this test needs ../shared/CATALOGUE.md"
        if IN_CI:
            pytest.fail(f"{why}; CI requires it (CI is set)", pytrace=False)
        pytest.skip(why)
    rows = _catalogue_rows(CATALOGUE_MD.read_text())
    assert len(rows) >= 85, f"read only {len(rows)} rows from {CATALOGUE_MD}: has its table format changed?"
    covered = set(_registered_rows()) | set(catalogue.NOTES) | set(catalogue.PENDING)
    missing = {r: rows[r] for r in sorted(set(rows) - covered, key=catalogue.row_key)}
    assert not missing, ("catalogue rows neither registered (an entry's catalogue=) nor in lossatlas.catalogue.NOTES "
                         f"/ PENDING: {missing}")
    unknown = sorted((set(catalogue.NOTES) | set(catalogue.PENDING) | set(_registered_rows())) - set(rows))
    assert not unknown, f"rows named in the library that the catalogue does not have: {unknown}"


def test_table_row_codes_are_well_formed_and_disjoint():
    for table in (catalogue.NOTES, catalogue.PENDING):
        for row, text in table.items():
            assert catalogue.ROW_CODE.match(row), f"{row!r} is not a row code like 'A4'"
            assert isinstance(text, str) and len(text) > 15, f"{row}: say where it lives or what is missing"
    for e in la.list():
        assert catalogue.ROW_CODE.match(e.catalogue), f"{e.id}: catalogue={e.catalogue!r} is not a row code"
    assert not set(catalogue.NOTES) & set(catalogue.PENDING), "a row is both noted and pending"


def test_no_pending_row_is_registered():
    """A row whose id is registered leaves PENDING (so the list shows what is really missing)."""
    stale = sorted(set(catalogue.PENDING) & set(_registered_rows()), key=catalogue.row_key)
    assert not stale, f"registered rows still listed in lossatlas.catalogue.PENDING: {stale}"


def test_notes_name_importable_places():
    """A note that says a row lives in ``lossatlas.x.y`` names something that exists."""
    for row, text in catalogue.NOTES.items():
        for dotted in re.findall(r"lossatlas(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text):
            obj: object = la
            for part in dotted.split(".")[1:]:
                if not hasattr(obj, part):
                    __import__(f"{getattr(obj, '__name__', '')}.{part}")
                assert hasattr(obj, part), f"{row}: {dotted} does not exist ({part!r} missing)"
                obj = getattr(obj, part)
        for other in re.findall(r"see ([A-K][0-9]+)", text):
            assert other in _registered_rows() or other in catalogue.NOTES, f"{row} refers to {other}, which is not listed"


def test_rows_sorted_and_classified():
    rows = catalogue.rows()
    codes = [r.row for r in rows]
    assert codes == sorted(codes, key=catalogue.row_key) and len(codes) == len(set(codes))
    registered = _registered_rows()
    for r in rows:
        if r.status == "registered":
            assert set(r.ids) == registered[r.row]
        else:
            assert r.row not in registered and r.text == {**catalogue.NOTES, **catalogue.PENDING}[r.row]
    assert catalogue.row_key("A10") > catalogue.row_key("A9")
    with pytest.raises(ValueError, match="row code"):
        catalogue.row_key("a4")


def test_cli_list_catalogue(capsys):
    assert main(["list", "--catalogue", "--width", "60"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= 60 for line in lines), [line for line in lines if len(line) > 60]
    assert re.search(r"^  A4 +registered +ldam$", out, re.M)
    assert re.search(r"^  B10 +note +label-noise", out, re.M)
    assert lines == format_catalogue(60)
    assert main(["list", "--catalogue", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {d["row"] for d in listed} == {r.row for r in catalogue.rows()}
    assert main(["list", "--catalogue", "--family", "noise"]) == 2
    assert "--family" in capsys.readouterr().err
