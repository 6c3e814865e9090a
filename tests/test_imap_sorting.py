"""SORT (RFC 5256 §3, RFC 5957): criteria parsed strictly, and messages ordered by each
key as the RFCs define it, ties always in sequence order."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.imap.framing import Command
from adapters.imap.sorting import SortInput, display_name, first_mailbox, parse_sort_criteria, sort_messages
from adapters.imap.tokens import ParseError, Token, parse_command

DAY = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def argument(text: bytes) -> Token:
    """The first argument of ``t SORT <text> UTF-8 ALL``, as the session gets it."""
    return parse_command(Command((b"t SORT " + text + b" UTF-8 ALL",))).args[0]


def item(number: int, *, arrival: int = 0, sent: int | None = None, size: int = 100, subject: str = "",
         from_: str = "", to: str = "", cc: str = "") -> SortInput:
    """A message that arrived ``arrival`` hours and was sent ``sent`` hours after DAY."""
    return SortInput(number, DAY + dt.timedelta(hours=arrival),
                     None if sent is None else DAY + dt.timedelta(hours=sent), size, subject, from_, to, cc)


def test_sort_criteria_parse_into_keys_with_their_reverse_flag() -> None:
    assert parse_sort_criteria(argument(b"(REVERSE DATE subject Reverse DisplayFrom SIZE)")) == [
        ("DATE", True), ("SUBJECT", False), ("DISPLAYFROM", True), ("SIZE", False)]
    assert parse_sort_criteria(argument(b"(ARRIVAL CC FROM TO DISPLAYTO)")) == [
        ("ARRIVAL", False), ("CC", False), ("FROM", False), ("TO", False), ("DISPLAYTO", False)]


@pytest.mark.parametrize("text", [b"()", b"(REVERSE)", b"(DATE REVERSE)", b"(REVERSE REVERSE DATE)",
                                  b"(NAME)", b'("DATE")', b"DATE", b"((DATE))"])
def test_malformed_sort_criteria_are_refused(text: bytes) -> None:
    with pytest.raises(ParseError):
        parse_sort_criteria(argument(text))


def test_subject_sorts_by_base_subject_case_insensitively() -> None:
    items = [item(1, subject="Re: banana"), item(2, subject="[list] Apple"), item(3, subject="cherry (fwd)"),
             item(4, subject="APPLE"), item(5)]
    # The empty subject first; equal base subjects in sequence order.
    assert sort_messages(items, [("SUBJECT", False)]) == [5, 2, 4, 1, 3]


def test_address_keys_compare_the_first_mailbox_local_part() -> None:
    items = [item(1, from_="Zed <Carol@a.test>, alice@b.test"), item(2, from_="bob@z.test"),
             item(3, from_='"Aaron" <dave@c.test>'), item(4, from_=""), item(5, from_="ALICE@y.test")]
    assert sort_messages(items, [("FROM", False)]) == [4, 5, 2, 1, 3]
    assert first_mailbox("Zed <Carol@a.test>") == "carol"
    assert first_mailbox("team: x@y.test;") == "team"  # a group: its name, as in ENVELOPE


def test_to_and_cc_sort_by_their_own_fields() -> None:
    items = [item(1, to="b@x", cc="a@x"), item(2, to="a@x", cc="b@x")]
    assert sort_messages(items, [("TO", False)]) == [2, 1]
    assert sort_messages(items, [("CC", False)]) == [1, 2]


def test_displayfrom_uses_the_decoded_display_name_else_the_address() -> None:
    items = [item(1, from_="Zed <alice@a.test>"), item(2, from_="bob@b.test"),
             item(3, from_="=?utf-8?q?=C3=89mile?= <zz@c.test>"),
             item(4, from_='"  Carl   Jung " <a@d.test>')]
    assert [display_name(i.from_) for i in items] == ["zed", "bob@b.test", "émile", "carl jung"]
    assert sort_messages(items, [("DISPLAYFROM", False)]) == [2, 4, 1, 3]
    assert sort_messages([item(1, to="Zed <a@x>"), item(2, to="Amy <z@x>")], [("DISPLAYTO", False)]) == [2, 1]


def test_date_is_the_sent_date_falling_back_to_the_arrival() -> None:
    items = [item(1, arrival=1, sent=5), item(2, arrival=3), item(3, arrival=0, sent=2),
             item(4, arrival=9, sent=2)]
    assert sort_messages(items, [("DATE", False)]) == [3, 4, 2, 1]
    assert sort_messages(items, [("ARRIVAL", False)]) == [3, 1, 2, 4]


def test_reverse_does_not_reverse_the_sequence_tie_break() -> None:
    items = [item(4, size=10), item(1, size=20), item(3, size=10), item(2, size=20)]
    assert sort_messages(items, [("SIZE", False)]) == [3, 4, 1, 2]
    assert sort_messages(items, [("SIZE", True)]) == [1, 2, 3, 4]


def test_later_criteria_order_what_earlier_ones_leave_equal() -> None:
    items = [item(1, subject="b", sent=1), item(2, subject="a", sent=1), item(3, subject="Re: b", sent=2),
             item(4, subject="a", sent=3)]
    assert sort_messages(items, [("SUBJECT", False), ("DATE", True)]) == [4, 2, 3, 1]
    assert sort_messages(items, [("SUBJECT", True), ("DATE", False)]) == [1, 3, 2, 4]


def test_dates_compare_as_instants_whatever_their_zone() -> None:
    east = dt.timezone(dt.timedelta(hours=9))
    items = [SortInput(1, dt.datetime(2026, 5, 1, 20, 0, tzinfo=east), None, 1, "", "", "", ""),  # 11:00Z
             SortInput(2, dt.datetime(2026, 5, 1, 12, 0), None, 1, "", "", "", "")]  # naive: UTC
    assert sort_messages(items, [("ARRIVAL", False)]) == [1, 2]
