"""LIST pattern matching: RFC 9051 §6.3.9 wildcards, and no exponential patterns."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.imap.listing import list_matches

NAMES = ["INBOX", "INBOX/Sub", "Sent", "Work", "Work/2026", "Work/2026/Q4", "Archive/Work"]


@pytest.mark.parametrize(("reference", "pattern", "expected"), [
    ("", "*", NAMES),
    ("", "%", ["INBOX", "Sent", "Work"]),
    ("", "Work/%", ["Work/2026"]),
    ("", "Work/*", ["Work/2026", "Work/2026/Q4"]),
    ("Work/", "%", ["Work/2026"]),
    ("", "*Work", ["Work", "Archive/Work"]),
    ("", "%/Work", ["Archive/Work"]),
    ("", "inbox", ["INBOX"]),               # INBOX is case-insensitive
    ("", "inbox/%", ["INBOX/Sub"]),
    ("", "work", []),                       # other names are not
    ("", "", []),
])
def test_patterns_list_the_rfc_names(reference: str, pattern: str, expected: list[str]) -> None:
    assert [n for n in NAMES if list_matches(reference, pattern, n)] == expected


def test_a_pathological_pattern_runs_in_polynomial_time() -> None:
    name = "a" * 500 + "/b"
    started = time.monotonic()
    assert not list_matches("", "*%" * 200 + "x", name)
    assert list_matches("", "*a" * 100 + "*", name)
    assert time.monotonic() - started < 2.0


def reference(pattern: str, name: str) -> bool:
    """The RFC's meaning as a regular expression: fine for the tiny inputs below."""
    regex = "".join(".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


@given(st.text(alphabet="ab/*%", max_size=8), st.text(alphabet="ab/", max_size=10))
def test_star_and_percent_mean_what_the_rfc_says(pattern: str, name: str) -> None:
    assert list_matches("", pattern, name) == reference(pattern, name)
