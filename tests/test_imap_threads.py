"""THREAD (RFC 5256): base subjects, ORDEREDSUBJECT and REFERENCES trees written as the
RFC writes them, and hostile headers (loops, huge References, deep chains) threaded in
linear time without recursion."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from adapters.imap.charsets import decode_words
from adapters.imap.threads import (
    Thread,
    ThreadInput,
    base_subject,
    format_threads,
    thread_orderedsubject,
    thread_references,
)

START = dt.datetime(2026, 3, 5, 9, 0, tzinfo=dt.UTC)


def message(number: int, *, subject: str = "", message_id: str = "", in_reply_to: str = "",
            references: str = "", minute: int | None = None) -> ThreadInput:
    """A message sent ``minute`` minutes after START (default: its number)."""
    sent = START + dt.timedelta(minutes=number if minute is None else minute)
    return ThreadInput(number, f"<{message_id}@example.test>" if message_id else "",
                       in_reply_to, references, subject, sent)


def ref(*ids: str) -> str:
    return " ".join(f"<{i}@example.test>" for i in ids)


@pytest.mark.parametrize(("subject", "base"), [
    ("Lunch", "lunch"),                                   # compared case-insensitively
    ("Re: Lunch", "lunch"),                               # §2.1 (3) subj-refwd
    ("RE: re: Fwd: FW: Lunch", "lunch"),                  # (5): repeated
    ("Re[2]: Lunch", "lunch"),                            # subj-refwd may hold a blob
    ("[list] Re: Lunch", "lunch"),                        # subj-leader: blobs, then re:
    ("Re: [PATCH] Lunch", "lunch"),                       # (4) a leading blob goes...
    ("[PATCH]", "[patch]"),                               # ...unless nothing would remain
    ("Lunch (fwd)", "lunch"),                             # (2) subj-trailer
    ("Lunch (FWD)  (fwd) ", "lunch"),                     # (2) repeated, with WSP
    ("[Fwd: Re: Lunch]", "lunch"),                        # (6) the forward wrapper
    ("[fwd: [fwd: Lunch (fwd)]]", "lunch"),               # (6) then again from (2)
    ("Re:\r\n\tLunch \t  at   noon", "lunch at noon"),    # (1) folding and runs of WSP
    ("=?utf-8?q?Re=3A_D=C3=A9jeuner?=", "déjeuner"),      # (1) RFC 2047 decoded first
    ("Re:", ""),
    ("", ""),
])
def test_base_subject_follows_the_rfc_5256_steps(subject: str, base: str) -> None:
    assert base_subject(subject) == base


def test_encoded_words_are_joined_when_adjacent_and_decoded_by_their_charset() -> None:
    # RFC 2047 §6.2: white space between adjacent encoded words is dropped; a character
    # split across two words of one charset is put back together.
    assert decode_words("=?utf-8?q?Caf=C3?= =?utf-8?q?=A9?= au =?ISO-8859-1?B?bGFpdA==?=") == "Café au lait"
    assert decode_words("=?x-no-such-charset?q?caf=C3=A9?= ok") == "café ok"
    assert decode_words("=?zlib?b?eJw=?=") == "x\ufffd"  # not a text encoding: read as UTF-8
    assert decode_words("plain =?utf-8?b?4pyT?=") == "plain ✓"


def test_a_pathological_subject_costs_linear_time() -> None:
    started = time.monotonic()
    assert base_subject("[x]" * 20_000 + " hi") == "hi"
    assert base_subject("[x]" * 20_000) == "[x]"
    assert base_subject("Re: " * 15_000 + "hi") == "hi"
    assert base_subject("[fwd: " * 6_000 + "hi" + "]" * 6_000) == "hi"
    assert base_subject("[a]" * 20_000 + "re x") == "re x"
    assert time.monotonic() - started < 1.0


# -- the response ----------------------------------------------------------------------


def test_format_threads_writes_the_rfc_5256_section_4_example() -> None:
    def chain(*numbers: int, below: list[Thread] | None = None) -> Thread:
        node = Thread(ThreadInput(numbers[-1], "", "", "", "", None), below or [])
        for number in reversed(numbers[:-1]):
            node = Thread(ThreadInput(number, "", "", "", "", None), [node])
        return node

    tree = chain(3, 6, below=[chain(4, 23), chain(44, 7, 96)])
    assert format_threads([chain(2), tree]) == b"(2)(3 6 (4 23)(44 7 96))"


def test_a_dummy_at_the_top_is_written_as_a_list_of_its_childrens_lists() -> None:
    dummy = Thread(None, [Thread(message(3)), Thread(message(5), [Thread(message(9))])])
    assert format_threads([dummy, Thread(message(7))]) == b"((3)(5 9))(7)"


def test_format_threads_prints_mapped_numbers_and_nothing_for_no_threads() -> None:
    threads = [Thread(message(101), [Thread(message(102))])]
    assert format_threads(threads, number=lambda uid: uid - 100) == b"(1 2)"
    assert format_threads([]) == b""


# -- ORDEREDSUBJECT -----------------------------------------------------------------------


def test_orderedsubject_groups_replies_by_base_subject() -> None:
    # Shapes from the RFC 5256 §4 ORDEREDSUBJECT example: threads in the sent order of
    # their first message (172 before 170), children in sent order (181 before 180).
    messages = [
        message(166, subject="one"), message(167, subject="two"),
        message(170, subject="three", minute=172), message(172, subject="four", minute=171),
        message(174, subject="Lunch", minute=174), message(175, subject="Re: lunch", minute=175),
        message(176, subject="RE: LUNCH", minute=176), message(178, subject="Lunch (fwd)", minute=178),
        message(180, subject="Re: Lunch", minute=181), message(181, subject="Re: Lunch", minute=180),
        message(179, subject="five", minute=190),
        message(194, subject="six", minute=194), message(195, subject="Re: six", minute=195),
    ]
    threads = thread_orderedsubject(messages)
    assert format_threads(threads) == b"(166)(167)(172)(170)(174 (175)(176)(178)(181)(180))(179)(194 195)"


def test_orderedsubject_breaks_equal_dates_by_sequence_number() -> None:
    messages = [message(3, subject="b", minute=0), message(1, subject="a", minute=0),
                message(2, subject="Re: b", minute=0)]
    assert format_threads(thread_orderedsubject(messages)) == b"(1)(2 3)"


# -- REFERENCES -------------------------------------------------------------------------------


def test_references_builds_the_rfc_5256_section_4_tree_from_headers() -> None:
    messages = [
        message(2, subject="elsewhere", message_id="m2"),
        message(3, subject="plans", message_id="m3"),
        message(6, subject="Re: plans", message_id="m6", in_reply_to=ref("m3")),
        message(4, subject="Re: plans", message_id="m4", references=ref("m3", "m6")),
        message(23, subject="Re: plans", message_id="m23", references=ref("m3", "m6", "m4")),
        message(44, subject="Re: plans", message_id="m44", references=ref("m3", "m6"), minute=30),
        message(7, subject="Re: plans", message_id="m7", in_reply_to=ref("m44"), minute=31),
        message(96, subject="Re: plans", message_id="m96", references=ref("m3", "m6", "m44", "m7")),
    ]
    assert format_threads(thread_references(messages)) == b"(2)(3 6 (4 23)(44 7 96))"


def test_references_puts_threads_with_one_subject_under_a_dummy() -> None:
    # RFC 5256 §4 REFERENCES example shapes "((170)(179))" and "((194)(195 196))": the
    # same base subject, neither a reply, so a dummy holds both (step 5(C)).
    messages = [
        message(170, subject="status", message_id="a"),
        message(179, subject="Status", message_id="b"),
        message(194, subject="report", message_id="c"),
        message(195, subject="report", message_id="d"),
        message(196, subject="Re: report", message_id="e", in_reply_to=ref("d")),
    ]
    assert format_threads(thread_references(messages)) == b"((170)(179))((194)(195 196))"


def test_a_reply_without_references_joins_the_thread_of_its_subject() -> None:
    # Step 5(C): a reply or forward becomes a child of the non-reply with its subject.
    messages = [message(1, subject="Re: lunch", message_id="r"), message(2, subject="Lunch", message_id="o",
                                                                         minute=0),
                message(3, subject="Fwd: lunch", message_id="f")]
    assert format_threads(thread_references(messages)) == b"(2 (1)(3))"


def test_missing_parents_become_dummies_that_are_pruned() -> None:
    messages = [
        # Two replies to a message that is not there: a dummy keeps them together.
        message(5, subject="a", message_id="x5", in_reply_to=ref("gone")),
        message(6, subject="b", message_id="x6", references=ref("gone")),
        # One reply to a missing message, under two missing ones: promoted to the top.
        message(7, subject="c", message_id="x7", references=ref("lost1", "lost2")),
        # A missing message between two present ones disappears from the chain.
        message(8, subject="d", message_id="x8"),
        message(9, subject="Re: d", message_id="x9", references=ref("x8", "between")),
    ]
    assert format_threads(thread_references(messages)) == b"((5)(6))(7)(8 9)"


def test_a_duplicate_message_id_belongs_to_the_first_message_only() -> None:
    messages = [message(1, subject="a", message_id="same"), message(2, subject="b", message_id="same"),
                message(3, subject="Re: a", message_id="r", in_reply_to=ref("same"))]
    assert format_threads(thread_references(messages)) == b"(1 3)(2)"


def test_in_reply_to_counts_only_without_references_and_only_its_first_id() -> None:
    messages = [message(1, subject="x", message_id="p"), message(2, subject="y", message_id="q"),
                message(3, subject="z", message_id="r", in_reply_to=ref("q", "p")),
                message(4, subject="w", message_id="s", in_reply_to=ref("q"), references=ref("p"))]
    assert format_threads(thread_references(messages)) == b"(1 4)(2 3)"


def test_a_reference_loop_is_not_followed() -> None:
    # A says it replies to B, B that it replies to A: one link is refused (step 1).
    messages = [message(1, subject="a", message_id="A", references=ref("B")),
                message(2, subject="b", message_id="B", references=ref("A")),
                message(3, subject="c", message_id="C", references=ref("C", "C"))]
    assert format_threads(thread_references(messages)) == b"(2 1)(3)"


def test_a_references_field_of_ten_thousand_ids_is_cheap() -> None:
    # 220 kB of ids: the last 64 kB are read, so the parent (the last id) still counts.
    huge = ref(*(f"id{n}" for n in range(10_000)))
    looping = ref(*(("p", "q")[n % 2] for n in range(10_000)))
    messages = [message(1, subject="a", message_id="m1", references=huge),
                message(2, subject="b", message_id="m2", references=looping),
                message(3, subject="c", message_id="id9999", references=huge)]
    started = time.monotonic()
    result = format_threads(thread_references(messages))
    assert time.monotonic() - started < 1.0
    assert result == b"(2)(3 1)"


@pytest.mark.parametrize("newest_first", [False, True])
def test_a_5000_deep_reply_chain_threads_without_recursion(newest_first: bool) -> None:
    chain = [message(1, subject="deep", message_id="d1")]
    chain += [message(n, subject="Re: deep", message_id=f"d{n}", in_reply_to=ref(f"d{n - 1}"))
              for n in range(2, 5001)]
    if newest_first:  # the deepest reply is seen first: its ancestors start as dummies
        chain = [ThreadInput(5001 - m.number, m.message_id, m.in_reply_to, m.references, m.subject,
                             START + dt.timedelta(minutes=m.number)) for m in chain]
    started = time.monotonic()
    threads = thread_references(chain)
    written = format_threads(threads)
    assert time.monotonic() - started < 2.0
    order = range(5000, 0, -1) if newest_first else range(1, 5001)
    assert written == b"(" + b" ".join(b"%d" % n for n in order) + b")"
    assert format_threads(thread_orderedsubject(chain)).startswith(b"(%d (" % order[0])


def test_sent_dates_compare_as_instants_and_a_missing_date_sorts_first() -> None:
    naive = ThreadInput(1, "<a@x>", "", "", "a", dt.datetime(2026, 3, 5, 10, 0))  # taken as UTC
    aware = ThreadInput(2, "<b@x>", "", "", "b",
                        dt.datetime(2026, 3, 5, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    undated = ThreadInput(3, "<c@x>", "", "", "c", None)
    assert format_threads(thread_references([naive, aware, undated])) == b"(3)(2)(1)"
    assert format_threads(thread_orderedsubject([naive, aware, undated])) == b"(3)(2)(1)"
