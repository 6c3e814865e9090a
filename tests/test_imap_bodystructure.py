"""BODY and BODYSTRUCTURE: the RFC 9051 §7.5.2 shapes, exact sizes and line counts, and
output that always reads back as one well-formed list."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.imap.bodystructure import body_structure
from adapters.imap.framing import Command, CommandFramer
from adapters.imap.mime import parse
from adapters.imap.tokens import String, parse_command
from tests.test_imap_mime import NESTED


def read_back(data: bytes) -> tuple:
    framer = CommandFramer(max_line=10_000_000, max_literal=10_000_000, max_command=20_000_000)
    framer.receive_data(b"t X " + data + b"\r\n")
    [command] = [e for e in framer.events() if isinstance(e, Command)]
    return parse_command(command, max_depth=1000).args


def test_a_nested_message_has_the_rfc_shape() -> None:
    assert body_structure(NESTED, parse(NESTED)) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 182 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)("TEXT" "HTML" NIL NIL NIL "7BIT" 11 1'
        b' NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL) 13 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)')
    assert body_structure(NESTED, parse(NESTED), extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 1)("MESSAGE" "RFC822" NIL NIL NIL "7BIT"'
        b' 182 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 10 1)'
        b'("TEXT" "HTML" NIL NIL NIL "7BIT" 11 1) "ALTERNATIVE") 13) "MIXED")')


def test_disposition_language_encoding_and_size_of_a_single_part() -> None:
    raw = (b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n"
           b'Content-Disposition: attachment; filename="a b.txt"\r\nContent-Language: en, de\r\n'
           b"Content-ID: <id1@example.test>\r\n\r\nline1\r\nline2")
    assert body_structure(raw, parse(raw)) == (
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") "<id1@example.test>" NIL "QUOTED-PRINTABLE" 12 2 NIL'
        b' ("ATTACHMENT" ("FILENAME" "a b.txt")) ("en" "de") NIL)')


def test_a_multipart_without_parts_and_a_part_past_the_depth_limit_stay_well_formed() -> None:
    empty = b"Content-Type: multipart/mixed; boundary=x\r\n\r\nno parts here\r\n"
    assert body_structure(empty, parse(empty)).startswith(b'("MULTIPART" "MIXED" ("BOUNDARY" "x")')
    level = b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n"
    deep = b"".join(level % (i, i) for i in range(300))
    [tree] = read_back(body_structure(deep, parse(deep)))
    assert isinstance(tree, tuple)


def test_header_values_cannot_break_out_of_the_structure() -> None:
    raw = (b'Content-Type: text/plain; name="x\\"\r\n* 1 EXISTS"\r\n'
           b"Content-Description: \x00\x01 evil\r\n\r\nbody")
    [tree] = read_back(body_structure(raw, parse(raw)))
    assert tree[0] == String(b"TEXT") and len(tree) == 12


leaves = st.sampled_from([b"text/plain", b"text/html; charset=utf-8", b"image/png", b"application/pdf"])


def tree_strategy() -> st.SearchStrategy[object]:
    return st.recursive(leaves, lambda children: st.lists(children, min_size=1, max_size=4), max_leaves=12)


def render(node: object, counter: list[int]) -> bytes:
    if isinstance(node, bytes):
        counter[0] += 1
        return b"Content-Type: " + node + b"\r\n\r\nleaf %d\r\n" % counter[0]
    boundary = b"b%d" % len(counter)
    counter.append(0)
    children: list[object] = node  # type: ignore[assignment]
    parts = b"".join(b"--" + boundary + b"\r\n" + render(child, counter) + b"\r\n" for child in children)
    header = b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
    return header + parts + b"--" + boundary + b"--\r\n"


def count_leaves(tree: tuple) -> int:
    """A multipart lists its parts first (then its subtype); a single part starts with
    its type string."""
    if isinstance(tree[0], tuple):
        return sum(count_leaves(part) for part in itertools.takewhile(lambda x: isinstance(x, tuple), tree))
    return 1


@settings(max_examples=60)
@given(tree_strategy())
def test_any_mime_tree_gives_one_readable_structure_with_every_leaf(node: object) -> None:
    counter = [0]
    raw = render(node, counter)
    [tree] = read_back(body_structure(raw, parse(raw)))
    assert count_leaves(tree) == counter[0]
