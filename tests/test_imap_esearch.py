"""ESEARCH (RFC 4731), SAVE (RFC 5182) and MODSEQ results (RFC 7162): RETURN options
parsed, and the responses written byte for byte as the RFCs' examples show them."""

from __future__ import annotations

import pytest

from adapters.imap.esearch import (
    compress,
    esearch_response,
    parse_return_options,
    saved_result,
    search_response,
)
from adapters.imap.framing import Command
from adapters.imap.tokens import Atom, ParseError, String, Token, parse_command


def arguments(text: bytes) -> tuple[Token, ...]:
    return parse_command(Command((b"t SEARCH " + text,))).args


def test_return_options_are_split_off_before_the_criteria() -> None:
    options, rest = parse_return_options(arguments(b"RETURN (min Max COUNT) CHARSET UTF-8 FROM x"))
    assert options == {"MIN", "MAX", "COUNT"}
    assert rest == (Atom("CHARSET"), Atom("UTF-8"), Atom("FROM"), Atom("x"))


def test_an_empty_return_list_means_all() -> None:
    assert parse_return_options(arguments(b"RETURN () SEEN")) == ({"ALL"}, (Atom("SEEN"),))
    assert parse_return_options(arguments(b"RETURN (SAVE) SEEN")) == ({"SAVE"}, (Atom("SEEN"),))


def test_a_search_without_return_is_a_plain_search() -> None:
    tokens = arguments(b'FROM "return" ALL')
    assert parse_return_options(tokens) == (None, (Atom("FROM"), String(b"return"), Atom("ALL")))
    assert parse_return_options(()) == (None, ())


@pytest.mark.parametrize("text", [b"RETURN (MIN BOGUS) ALL", b"RETURN MIN ALL", b"RETURN",
                                  b'RETURN ("MIN") ALL', b"RETURN ((MIN)) ALL"])
def test_malformed_return_options_are_refused(text: bytes) -> None:
    with pytest.raises(ParseError):
        parse_return_options(arguments(text))


@pytest.mark.parametrize(("numbers", "written"), [
    ([1, 2, 3, 5, 7, 8, 9], "1:3,5,7:9"),
    ([4], "4"),
    ([], ""),
    ([9, 2, 3, 3, 4], "2:4,9"),  # unsorted, repeated
    ([1, 3, 5], "1,3,5"),
])
def test_compress_writes_runs_as_ranges(numbers: list[int], written: str) -> None:
    assert compress(numbers) == written


def test_esearch_writes_the_items_in_the_rfc_order() -> None:
    assert esearch_response("A1", [2, 3, 4, 9], {"ALL", "COUNT", "MAX", "MIN"}, uid=True) == (
        b'* ESEARCH (TAG "A1") UID MIN 2 MAX 9 COUNT 4 ALL 2:4,9\r\n')


@pytest.mark.parametrize(("tag", "numbers", "options", "uid", "written"), [
    # RFC 4731 §3.1 examples.
    ("A282", [2, 10, 11], {"MIN", "COUNT"}, False, b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'),
    ("A283", [2, 10, 11], {"ALL"}, False, b'* ESEARCH (TAG "A283") ALL 2,10:11\r\n'),
    ("A284", [4], {"MIN"}, False, b'* ESEARCH (TAG "A284") MIN 4\r\n'),
    ("A285", [7, 100, 3800], {"MIN", "MAX"}, True, b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n'),
    ("A286", list(range(1, 16)), {"COUNT"}, False, b'* ESEARCH (TAG "A286") COUNT 15\r\n'),
])
def test_esearch_reproduces_the_rfc_4731_examples(tag: str, numbers: list[int], options: set[str], uid: bool,
                                                  written: bytes) -> None:
    assert esearch_response(tag, numbers, options, uid) == written


def test_no_match_leaves_out_min_max_all_and_modseq_but_counts_zero() -> None:
    assert esearch_response("A1", [], {"MIN", "MAX", "ALL", "COUNT"}, uid=False, modseq=5) == (
        b'* ESEARCH (TAG "A1") COUNT 0\r\n')
    assert esearch_response("A2", [], {"ALL"}, uid=True) == b'* ESEARCH (TAG "A2") UID\r\n'


def test_modseq_is_appended_for_a_search_with_a_modseq_key() -> None:
    # RFC 7162 §3.1.5 example.
    assert esearch_response("a", [1, 2, 3, 5], {"ALL"}, uid=False, modseq=1236) == (
        b'* ESEARCH (TAG "a") ALL 1:3,5 MODSEQ 1236\r\n')
    assert search_response([2, 5, 6, 7, 11, 12, 18, 19, 20, 23], modseq=917162500) == (
        b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n")
    assert search_response([], modseq=917162500) == b"* SEARCH\r\n"
    assert search_response([4, 1]) == b"* SEARCH 4 1\r\n"


def test_save_alone_asks_for_no_response() -> None:
    assert esearch_response("A1", [1, 2], {"SAVE"}, uid=False) == b""
    assert esearch_response("A1", [1, 2], {"SAVE", "COUNT"}, uid=False) == b'* ESEARCH (TAG "A1") COUNT 2\r\n'


def test_a_tag_with_specials_is_still_one_string() -> None:
    assert esearch_response('a"b\\c', [1], {"MIN"}, uid=False) == b'* ESEARCH (TAG "a\\"b\\\\c") MIN 1\r\n'


@pytest.mark.parametrize(("options", "saved"), [
    ({"SAVE"}, [3, 5, 9]),
    ({"SAVE", "MIN"}, [3]),
    ({"SAVE", "MAX"}, [9]),
    ({"SAVE", "MIN", "MAX"}, [3, 9]),
    ({"SAVE", "MIN", "COUNT"}, [3, 5, 9]),
    ({"SAVE", "MAX", "ALL"}, [3, 5, 9]),
])
def test_the_saved_result_is_min_and_max_only_when_only_they_were_asked_for(options: set[str],
                                                                             saved: list[int]) -> None:
    # RFC 5182 §2.4.
    assert saved_result([9, 3, 5], options) == saved
    assert saved_result([], options) == []
