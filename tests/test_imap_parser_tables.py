"""The IMAP parser as tables (DESIGN: parser tests are tables replayed at chunk sizes
1..512 plus a malformed-input table): realistic client commands give the same events and
the same parsed command however the bytes are split, hostile ones get the outcome the
table says, and what our own writers produce parses back as exactly itself."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapters.imap import responses
from adapters.imap.framing import (
    BadCommand,
    Command,
    CommandFramer,
    ContinuationNeeded,
    Event,
    Fatal,
    LiteralRefused,
)
from adapters.imap.tokens import (
    MAX_NUMBER,
    NIL,
    Atom,
    ParsedCommand,
    ParseError,
    SequenceSet,
    String,
    parse_command,
    parse_sequence_set,
)


def lit(data: bytes, mode: bytes = b"", *, binary: bool = False) -> bytes:
    """A literal as a client writes it: ``{n}``, ``{n+}`` or ``{n-}`` (``~`` before it for
    RFC 3516 binary), CRLF, the data."""
    return (b"~" if binary else b"") + b"{%d%s}\r\n" % (len(data), mode) + data


def quoted(data: bytes) -> String:
    return String(data)


def literal(data: bytes, *, binary: bool = False) -> String:
    return String(data, literal=True, binary=binary)


def A(*values: str) -> tuple[Atom, ...]:  # short, so the tables read like the wire
    return tuple(Atom(value) for value in values)


MESSAGE = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: hi\r\n"
           b"Date: Mon, 14 Jul 2025 10:00:00 +0200\r\n\r\nHello Bob,\r\n(see you) {at 5}\r\n")
# Literal data that spells commands must stay data (checklist §6.17).
INJECTION = b"Subject: x\r\n\r\nb DELETE INBOX\r\nc LOGOUT\r\n"
BINARY = b"\x00\x01\x02PNG\r\n\x1a\n\x00\xff\xfe"


@dataclass(frozen=True)
class Case:
    wire: bytes
    expected: ParsedCommand
    continuations: tuple[int, ...] = ()  # the "+" the client waits for, in order


COMMANDS: dict[str, Case] = {
    "capability": Case(b"a001 CAPABILITY\r\n", ParsedCommand("a001", "CAPABILITY", ())),
    "lower-case name": Case(b"a002 select inbox\r\n", ParsedCommand("a002", "SELECT", A("inbox"))),
    "bare LF": Case(b"a003 NOOP\n", ParsedCommand("a003", "NOOP", ())),
    "odd but valid tag": Case(b"A.1_x-2!#&' NOOP\r\n", ParsedCommand("A.1_x-2!#&'", "NOOP", ())),
    "login quoted": Case(b'a004 LOGIN "alice@example.test" "p\\"w\\\\d x"\r\n',
                         ParsedCommand("a004", "LOGIN", (quoted(b"alice@example.test"),
                                                          quoted(b'p"w\\d x')))),
    "login literals": Case(b"a005 LOGIN " + lit(b"alice@example.test") + b" " + lit(b"s\r\ncret") + b"\r\n",
                           ParsedCommand("a005", "LOGIN", (literal(b"alice@example.test"),
                                                            literal(b"s\r\ncret"))),
                           (18, 7)),
    "login literal+": Case(b"a006 LOGIN " + lit(b"alice", b"+") + b" " + lit(b"", b"+") + b"\r\n",
                           ParsedCommand("a006", "LOGIN", (literal(b"alice"), literal(b"")))),
    "login atom and literal-": Case(b"a007 LOGIN alice " + lit(b"sec ret", b"-") + b"\r\n",
                                    ParsedCommand("a007", "LOGIN", (Atom("alice"), literal(b"sec ret")))),
    "append synchronizing": Case(
        b'a008 APPEND Drafts (\\Draft \\Seen) "14-Jul-2025 10:00:00 +0200" ' + lit(MESSAGE) + b"\r\n",
        ParsedCommand("a008", "APPEND", (Atom("Drafts"), A("\\Draft", "\\Seen"),
                                         quoted(b"14-Jul-2025 10:00:00 +0200"), literal(MESSAGE))),
        (len(MESSAGE),)),
    "append literal+ holding commands": Case(
        b"a009 APPEND INBOX " + lit(INJECTION, b"+") + b"\r\n",
        ParsedCommand("a009", "APPEND", (Atom("INBOX"), literal(INJECTION)))),
    "append binary": Case(
        b"a010 APPEND INBOX (\\Seen) " + lit(BINARY, binary=True) + b"\r\n",
        ParsedCommand("a010", "APPEND", (Atom("INBOX"), A("\\Seen"), literal(BINARY, binary=True))),
        (len(BINARY),)),
    "multiappend": Case(
        b"a011 APPEND Sent " + lit(b"abc", b"+") + b" (\\Seen $Forwarded) " + lit(b"def", b"+") + b"\r\n",
        ParsedCommand("a011", "APPEND", (Atom("Sent"), literal(b"abc"), A("\\Seen", "$Forwarded"),
                                         literal(b"def")))),
    "select condstore": Case(b"a012 SELECT INBOX (CONDSTORE)\r\n",
                             ParsedCommand("a012", "SELECT", (Atom("INBOX"), A("CONDSTORE")))),
    "select qresync": Case(
        b"a013 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:*,3 1:*,5)))\r\n",
        ParsedCommand("a013", "SELECT", (Atom("INBOX"), (
            Atom("QRESYNC"), (*A("67890007", "20050715194045000", "41,43:211,214:541"),
                              A("1:*,3", "1:*,5")))))),
    "examine quoted utf-8": Case(b'a014 EXAMINE "Archiv/Entw\xc3\xbcrfe"\r\n',
                                 ParsedCommand("a014", "EXAMINE", (quoted(b"Archiv/Entw\xc3\xbcrfe"),))),
    "fetch header fields partial": Case(
        b"a015 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)\r\n",
        ParsedCommand("a015", "FETCH", (Atom("1:*"),
                                        A("FLAGS", "BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>")))),
    "uid fetch changedsince": Case(
        b"a016 UID FETCH 300:* (UID FLAGS BINARY.PEEK[1.2]<0.1024>) (CHANGEDSINCE 12345 VANISHED)\r\n",
        ParsedCommand("a016", "UID", (Atom("FETCH"), Atom("300:*"),
                                      A("UID", "FLAGS", "BINARY.PEEK[1.2]<0.1024>"),
                                      A("CHANGEDSINCE", "12345", "VANISHED")))),
    "uid store silent": Case(b"a017 UID STORE 1:5,7 +FLAGS.SILENT (\\Seen)\r\n",
                             ParsedCommand("a017", "UID", (*A("STORE", "1:5,7", "+FLAGS.SILENT"),
                                                           A("\\Seen")))),
    "store unchangedsince": Case(
        b"a018 STORE $ (UNCHANGEDSINCE 320162338) -FLAGS ($Junk \\Flagged)\r\n",
        ParsedCommand("a018", "STORE", (Atom("$"), A("UNCHANGEDSINCE", "320162338"), Atom("-FLAGS"),
                                        A("$Junk", "\\Flagged")))),
    "search charset literal": Case(
        b"a019 SEARCH CHARSET UTF-8 SUBJECT " + lit(b"F\xc3\xbcnf") + b" SINCE 1-Feb-2025\r\n",
        ParsedCommand("a019", "SEARCH", (*A("CHARSET", "UTF-8", "SUBJECT"), literal(b"F\xc3\xbcnf"),
                                         *A("SINCE", "1-Feb-2025"))),
        (5,)),
    "uid search return or": Case(
        b'a020 UID SEARCH RETURN (MIN MAX COUNT SAVE) OR FROM "bob" (SINCE 1-Jan-2025 UNSEEN) '
        b"NOT DELETED\r\n",
        ParsedCommand("a020", "UID", (*A("SEARCH", "RETURN"), A("MIN", "MAX", "COUNT", "SAVE"),
                                      *A("OR", "FROM"), quoted(b"bob"), A("SINCE", "1-Jan-2025", "UNSEEN"),
                                      *A("NOT", "DELETED")))),
    "list extended return": Case(
        b'a021 LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))\r\n',
        ParsedCommand("a021", "LIST", (quoted(b""), quoted(b"*"), Atom("RETURN"),
                                       (*A("SPECIAL-USE", "STATUS"), A("MESSAGES", "UNSEEN"))))),
    "list subscribed wildcard": Case(b'a022 LIST (SUBSCRIBED) "" Archive/%\r\n',
                                     ParsedCommand("a022", "LIST", (A("SUBSCRIBED"), quoted(b""),
                                                                    Atom("Archive/%")))),
    "status": Case(b'a023 STATUS "Sent Items" (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n',
                   ParsedCommand("a023", "STATUS", (
                       quoted(b"Sent Items"), A("MESSAGES", "UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ")))),
    "id": Case(b'a024 ID ("name" "mutt" "version" "2.2.12" "os" NIL)\r\n',
               ParsedCommand("a024", "ID", ((quoted(b"name"), quoted(b"mutt"), quoted(b"version"),
                                             quoted(b"2.2.12"), quoted(b"os"), NIL),))),
    "id nil": Case(b"a025 ID NIL\r\n", ParsedCommand("a025", "ID", (NIL,))),
    "enable": Case(b"a026 ENABLE CONDSTORE QRESYNC UTF8=ACCEPT\r\n",
                   ParsedCommand("a026", "ENABLE", A("CONDSTORE", "QRESYNC", "UTF8=ACCEPT"))),
    "idle": Case(b"a027 IDLE\r\n", ParsedCommand("a027", "IDLE", ())),
    "authenticate plain sasl-ir": Case(b"a028 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                                       ParsedCommand("a028", "AUTHENTICATE",
                                                     A("PLAIN", "AGFsaWNlAHNlY3JldA=="))),
    "authenticate empty initial response": Case(b"a029 AUTHENTICATE PLAIN =\r\n",
                                                ParsedCommand("a029", "AUTHENTICATE", A("PLAIN", "="))),
    "binary literal+ with NUL": Case(
        b"a030 APPEND INBOX " + lit(b"\x00", binary=True) + b" " + lit(b"a\x00b", b"+", binary=True)
        + b"\r\n",
        ParsedCommand("a030", "APPEND", (Atom("INBOX"), literal(b"\x00", binary=True),
                                         literal(b"a\x00b", binary=True))),
        (1,)),
    "create special-use": Case(b'a031 CREATE "Projects/2025" (USE (\\Archive))\r\n',
                               ParsedCommand("a031", "CREATE", (quoted(b"Projects/2025"),
                                                                (Atom("USE"), A("\\Archive"))))),
    "rename utf-7": Case(b'a032 RENAME "Old Name" Entw&APw-rfe\r\n',
                         ParsedCommand("a032", "RENAME", (quoted(b"Old Name"), Atom("Entw&APw-rfe")))),
    "uid move": Case(b"a033 UID MOVE 1:3,9 Trash\r\n",
                     ParsedCommand("a033", "UID", A("MOVE", "1:3,9", "Trash"))),
    "uid expunge": Case(b"a034 UID EXPUNGE 3:5\r\n", ParsedCommand("a034", "UID", A("EXPUNGE", "3:5"))),
    "nil and empty list": Case(b"a035 X nil () (NIL)\r\n",
                               ParsedCommand("a035", "X", (NIL, (), (NIL,)))),
    "empty literal mid-line": Case(b"a036 LOGIN " + lit(b"") + b" x\r\n",
                                   ParsedCommand("a036", "LOGIN", (literal(b""), Atom("x"))), (0,)),
    "logout": Case(b"a037 LOGOUT\r\n", ParsedCommand("a037", "LOGOUT", ())),
}

STREAM = b"".join(case.wire for case in COMMANDS.values())


@dataclass(frozen=True)
class Unparsable:
    """The framer gave a command and ``parse_command`` refused it; ``why`` is part of the
    ParseError's message."""

    why: str


Outcome = ParsedCommand | Unparsable | ContinuationNeeded | LiteralRefused | BadCommand | Fatal


def outcome(event: Event) -> Outcome:
    if isinstance(event, Command):
        try:
            return parse_command(event)
        except ParseError as error:
            return Unparsable(str(error))
    return event


def replay(data: bytes, chunk: int, framer: CommandFramer | None = None) -> list[Outcome]:
    framer = framer or CommandFramer()
    out: list[Outcome] = []
    for start in range(0, len(data), chunk):
        framer.receive_data(data[start:start + chunk])
        out += [outcome(event) for event in framer.events()]
    return out


def expected_outcomes(cases: list[Case]) -> list[Outcome]:
    out: list[Outcome] = []
    for case in cases:
        out += [ContinuationNeeded(size) for size in case.continuations]
        out.append(case.expected)
    return out


# -- the command table -------------------------------------------------------------------


@pytest.mark.parametrize("case", COMMANDS.values(), ids=COMMANDS.keys())
def test_each_command_alone_gives_its_continuations_then_its_parsed_command(case: Case) -> None:
    framer = CommandFramer()
    framer.receive_data(case.wire)
    events = framer.events()
    assert [outcome(event) for event in events] == expected_outcomes([case])
    assert isinstance(events[-1], Command) and events[-1].tag == case.expected.tag.encode()
    assert framer.next_event() is None


def test_every_command_parses_the_same_at_every_chunk_size() -> None:
    expected = expected_outcomes(list(COMMANDS.values()))
    for chunk in range(1, 513):
        assert replay(STREAM, chunk) == expected, f"chunk size {chunk}"


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_split_of_the_command_stream_gives_the_same_commands(cuts: list[int]) -> None:
    framer = CommandFramer()
    got: list[Outcome] = []
    edges = [0, *sorted(cuts), len(STREAM)]
    for start, end in zip(edges, edges[1:], strict=False):
        framer.receive_data(STREAM[start:end])
        got += [outcome(event) for event in framer.events()]
    assert got == expected_outcomes(list(COMMANDS.values()))


# -- the malformed-input table -----------------------------------------------------------

# Every input is followed by "z9 NOOP": after a refusal the framer must be back in step.
RESYNC = b"z9 NOOP\r\n"
NOOP = ParsedCommand("z9", "NOOP", ())

MALFORMED: dict[str, tuple[bytes, list[Outcome]]] = {
    "unbalanced (": (b"a FETCH 1:* (FLAGS (UID)\r\n", [Unparsable("unbalanced '('")]),
    "unbalanced )": (b"a STORE 1 +FLAGS \\Seen)\r\n", [Unparsable("unbalanced ')'")]),
    "unbalanced ] in a list": (b"a SELECT INBOX (CONDSTORE])\r\n", [Unparsable("unbalanced ']'")]),
    "NUL in quoted": (b'a SELECT "IN\x00BOX"\r\n', [Unparsable("CR, LF or NUL")]),
    "CR in quoted": (b'a LOGIN "al\rice" x\r\n', [Unparsable("CR, LF or NUL")]),
    # A bare LF ends the line, so the string is cut in two commands, both refused.
    "LF in quoted": (b'a LOGIN "al\nice" x\r\n', [Unparsable("unterminated"), Unparsable("unterminated")]),
    "escape of a letter": (b'a LOGIN "a\\x" y\r\n', [Unparsable("invalid escape")]),
    "escape at the end": (b'a LOGIN "abc\\\r\n', [Unparsable("invalid escape")]),
    "escaped closing quote": (b'a LOGIN "abc\\"\r\n', [Unparsable("unterminated")]),
    "NUL in a text literal": (b"a LOGIN " + lit(b"a\x00b") + b" x\r\n",
                              [ContinuationNeeded(3), Unparsable("NUL in a literal")]),
    "huge literal before login": (b"a1 LOGIN {4000000000}\r\n", [LiteralRefused(b"a1", 4_000_000_000)]),
    "huge second literal": (b"a2 LOGIN " + lit(b"alice") + b" {4000000000}\r\n",
                            [ContinuationNeeded(5), LiteralRefused(b"a2", 4_000_000_000)]),
    "huge binary literal": (b"a3 APPEND INBOX ~{100000000}\r\n", [LiteralRefused(b"a3", 100_000_000)]),
    "negative literal": (b"a4 LOGIN {-1}\r\n", [BadCommand(b"a4", "invalid literal")]),
    "23-digit literal": (b"a5 LOGIN {99999999999999999999999}\r\n", [BadCommand(b"a5", "invalid literal")]),
    "literal+ over the limit": (b"a APPEND INBOX {100000000+}\r\n",
                                [Fatal("non-synchronizing literal of 100000000 octets over the limit")]),
    "literal- over 4096": (b"a APPEND INBOX {5000-}\r\n",
                           [Fatal("non-synchronizing literal of 5000 octets over the limit")]),
    "text after the literal marker": (b"a LOGIN {5} \r\n", [Unparsable("unexpected '{'")]),
    "tag with +": (b"a+1 NOOP\r\n", [Unparsable("invalid tag")]),
    "tag *": (b"* NOOP\r\n", [Unparsable("invalid tag")]),
    "tag with %": (b"a% NOOP\r\n", [Unparsable("invalid tag")]),
    "empty line": (b"\r\n", [Unparsable("tag SP command")]),
    "quoted command name": (b'a "NOOP"\r\n', [Unparsable("tag SP command")]),
    "line over max_line": (b"a7 SEARCH " + b"X" * 9000 + b"\r\n", [BadCommand(b"a7", "line too long")]),
    "100,000 ( over max_line": (b"a8 SEARCH " + b"(" * 100_000 + b"\r\n",
                                [BadCommand(b"a8", "line too long")]),
    "escape char in an atom": (b"a SELECT IN\x1bBOX\r\n", [Unparsable("control character")]),
    "DEL in an atom": (b"a NOOP\x7f\r\n", [Unparsable("control character")]),
    "8-bit atom": (b"a SELECT Entw\xc3\xbcrfe\r\n", [Unparsable("8-bit")]),
    "invalid UTF-8 atom": (b"a LOGIN \xff\xfe secret\r\n", [Unparsable("8-bit")]),
}

MALFORMED_CHUNKS = [*range(1, 65), 512, 1 << 20]


def matches(got: list[Outcome], expected: list[Outcome]) -> bool:
    if len(got) != len(expected):
        return False
    for have, want in zip(got, expected, strict=True):
        if isinstance(want, Unparsable):
            if not (isinstance(have, Unparsable) and want.why in have.why):
                return False
        elif have != want:
            return False
    return True


@pytest.mark.parametrize(("wire", "expected"), MALFORMED.values(), ids=MALFORMED.keys())
def test_every_malformed_input_gets_its_outcome_at_every_chunk_size(
        wire: bytes, expected: list[Outcome]) -> None:
    fatal = isinstance(expected[-1], Fatal)
    want = expected if fatal else [*expected, NOOP]  # after Fatal nothing more is read
    for chunk in MALFORMED_CHUNKS:
        got = replay(wire + RESYNC, chunk)
        assert matches(got, want), f"chunk size {chunk}: {got!r}"


def test_a_hundred_thousand_open_parentheses_fail_fast_with_bounded_memory() -> None:
    """Dovecot CVE-2026-27857 with a line limit that lets them reach the tokenizer: deep
    ID and FETCH lists, balanced or not, are refused in well under a second."""
    for wire in (b"a ID " + b"(" * 100_000 + b"\r\n",
                 b"a FETCH 1 " + b"(" * 50_000 + b")" * 50_000 + b"\r\n"):
        framer = CommandFramer(max_line=1_000_000)
        framer.receive_data(wire)
        [command] = framer.events()
        assert isinstance(command, Command)
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(ParseError, match="nested too deeply"):
                parse_command(command)
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert elapsed < 1.0
        assert peak < 1_000_000  # the 100 kB line is not copied per level


def test_a_line_of_exactly_max_line_octets_is_accepted_however_it_is_split() -> None:
    """``max_line`` counts the line without its CRLF; a chunk that ends between CR and LF
    must not make the same line "too long"."""
    line = b"a1 X " + b"y" * 195
    assert len(line) == 200
    expected = [ParsedCommand("a1", "X", (Atom("y" * 195),)), NOOP]
    for chunk in [*range(1, 65), 201, 512]:
        assert replay(line + b"\r\n" + RESYNC, chunk, CommandFramer(max_line=200)) == expected, (
            f"chunk size {chunk}")


def test_an_overlong_line_after_a_literal_is_refused_with_the_command_tag_however_it_is_split() -> None:
    wire = b"a1 LOGIN " + lit(b"alice", b"+") + b"Z" * 300 + b"\r\n" + RESYNC
    for chunk in [*range(1, 65), 512]:
        got = replay(wire, chunk, CommandFramer(max_line=200))
        assert got == [BadCommand(b"a1", "line too long"), NOOP], f"chunk size {chunk}"


# -- what our writers produce parses back ----------------------------------------------


def parse_back(wire: bytes, chunk: int = 1 << 20) -> list[Outcome]:
    return replay(wire, chunk, CommandFramer(max_line=100_000, max_literal=100_000))


def written_as(value: bytes, written: bytes) -> String:
    """The token ``written`` must parse back as: quoted, a literal, or a binary literal."""
    return String(value, literal=not written.startswith(b'"'), binary=written.startswith(b"~{"))


with_nul = st.tuples(st.binary(max_size=40), st.binary(max_size=40)).map(lambda p: p[0] + b"\x00" + p[1])
string_values = st.one_of(
    st.binary(max_size=300),
    with_nul,
    st.text(max_size=40).map(lambda text: text.encode("utf-8")),
    st.binary(min_size=1020, max_size=1100),  # around MAX_QUOTED
)


@given(st.lists(string_values, min_size=1, max_size=3), st.booleans(), st.integers(min_value=1, max_value=64))
@example([b"a\x00b"], False, 1)
@example([b"evil\r\n* 1 EXISTS", b""], True, 3)
def test_any_bytes_written_as_strings_parse_back_as_those_strings(
        values: list[bytes], utf8: bool, chunk: int) -> None:
    written = [responses.string(value, utf8=utf8) for value in values]
    for value, out in zip(values, written, strict=True):
        if b"\x00" in value:
            assert out.startswith(b"~{%d}\r\n" % len(value))  # RFC 3516 binary literal
    wire = b"t X " + b" ".join(written) + b"\r\n"
    continuations = [ContinuationNeeded(len(value)) for value, out in zip(values, written, strict=True)
                     if not out.startswith(b'"')]
    tokens = tuple(written_as(value, out) for value, out in zip(values, written, strict=True))
    assert parse_back(wire, chunk) == [*continuations, ParsedCommand("t", "X", tokens)]


atom_like = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


@given(st.one_of(atom_like, st.text(max_size=30),
                 st.sampled_from(["NIL", "nil", "INBOX", "\\Seen", "a]b", "%", "*", "~", "+", "{3}", "a b"])),
       st.booleans())
@example("a[b", False)  # "[" is an ATOM-CHAR, but the tokenizer reads it as a fetch section
def test_any_astring_parses_back_as_the_same_atom_or_the_same_string(value: str, utf8: bool) -> None:
    data = value.encode("utf-8")
    written = responses.astring(value, utf8=utf8)
    got = parse_back(b"t X " + written + b"\r\n")
    if written == data:
        assert got == [ParsedCommand("t", "X", (Atom(value),))]
    else:
        continuations = [] if written.startswith(b'"') else [ContinuationNeeded(len(data))]
        assert got == [*continuations, ParsedCommand("t", "X", (written_as(data, written),))]


# -- sequence sets against a naive model -------------------------------------------------

seq_numbers = st.one_of(st.none(), st.integers(min_value=1, max_value=60),
                        st.integers(min_value=1, max_value=MAX_NUMBER))


def naive_members(ranges: list[tuple[int | None, int | None]], largest: int) -> list[int]:
    """RFC 9051 §9: ``*`` is the largest number in use, a:b is b:a, and only numbers
    1..largest exist."""
    def number(value: int | None) -> int:
        return largest if value is None else value

    return [n for n in range(1, largest + 1)
            if any(min(number(a), number(b)) <= n <= max(number(a), number(b)) for a, b in ranges)]


@given(st.lists(st.tuples(seq_numbers, seq_numbers), min_size=1, max_size=8),
       st.integers(min_value=1, max_value=80))
def test_a_written_sequence_set_reads_back_and_resolves_to_the_numbers_it_names(
        ranges: list[tuple[int | None, int | None]], largest: int) -> None:
    sequence_set = SequenceSet(tuple(ranges))
    parsed = parse_sequence_set(str(sequence_set))
    assert parsed == sequence_set
    assert parsed.resolve(largest) == naive_members(ranges, largest)


@pytest.mark.parametrize("text", ["*", "1:*", "*:1", "1", "3:7,*"])
def test_an_empty_mailbox_resolves_every_sequence_set_to_nothing(text: str) -> None:
    """0 is never a message number or a UID (nz-number): with no message, nothing."""
    assert parse_sequence_set(text).resolve(0) == []
