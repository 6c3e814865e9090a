"""The documentation keeps up with the code: every RFC the code cites has a status."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_support import client_context, running_smtp

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("domain", "projections", "adapters", "api")
STATUSES = {"Yes", "Partial", "No"}


def rfc_table() -> dict[str, str]:
    rows: dict[str, str] = {}
    lines = (ROOT / "docs" / "rfc.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| RFC"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    status_at = columns.index("Status")
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        match = re.fullmatch(r"RFC (\d{3,5})", cells[0])
        if len(cells) == len(columns) and match:
            rows[match.group(1)] = cells[status_at]
    return rows


def rfcs_cited_in_code() -> dict[str, str]:
    cited: dict[str, str] = {}
    for directory in CODE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            for number in re.findall(r"RFC (\d{3,5})", path.read_text()):
                cited.setdefault(number, str(path.relative_to(ROOT)))
    return cited


def test_every_rfc_row_has_a_known_status() -> None:
    table = rfc_table()
    assert len(table) >= 30
    assert {number: s for number, s in table.items() if s not in STATUSES} == {}


def test_every_rfc_cited_in_the_code_is_listed_in_docs_rfc_md() -> None:
    table = rfc_table()
    cited = rfcs_cited_in_code()
    assert len(cited) >= 5
    assert {number: where for number, where in cited.items() if number not in table} == {}


#: EHLO keyword -> the RFC that defines it.
EHLO_KEYWORDS = {"PIPELINING": "2920", "SIZE": "1870", "8BITMIME": "6152", "SMTPUTF8": "6531",
                 "ENHANCEDSTATUSCODES": "2034", "DSN": "3461", "STARTTLS": "3207", "AUTH": "4954"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_keyword_the_smtp_listeners_advertise_is_documented_as_implemented(store: Any) -> None:
    advertised: set[str] = set()
    with running_smtp(store) as server:
        with smtplib.SMTP("127.0.0.1", server.mx) as client:
            client.ehlo("docs.test")
            advertised |= {keyword.upper() for keyword in client.esmtp_features}
        with smtplib.SMTP("127.0.0.1", server.submission) as client:
            client.starttls(context=client_context())
            client.ehlo("docs.test")
            advertised |= {keyword.upper() for keyword in client.esmtp_features}
    assert {"PIPELINING", "STARTTLS", "AUTH", "DSN"} <= advertised
    unknown = advertised - set(EHLO_KEYWORDS)
    assert unknown == set(), f"add these EHLO keywords to EHLO_KEYWORDS and docs/rfc.md: {unknown}"
    table = rfc_table()
    assert {k: table.get(EHLO_KEYWORDS[k]) for k in advertised
            if table.get(EHLO_KEYWORDS[k]) not in ("Yes", "Partial")} == {}
