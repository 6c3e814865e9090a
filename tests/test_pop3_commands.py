"""POP3 transcripts, one command and state at a time, against the real service.

RFC 1939 (USER/PASS, STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET, QUIT), RFC 2449 CAPA,
RFC 2595 STLS, RFC 5034 AUTH PLAIN with and without an initial response. Each test sends
exact bytes and expects exact bytes back. What the maildrop means for the rest of the
store is checked through IMAP and the audit trail: QUIT commits the deletions as one
save that IMAP sees as expunges, a dropped connection or RSET commits nothing, a second
session gets [IN-USE], UIDL is the IMAP UID and UIDVALIDITY, and RETR and TOP each leave
one MessagesAccessed event. On both backends.
"""

from __future__ import annotations

import base64
import poplib
import re
import time
from collections.abc import Iterator
from uuid import UUID

import pytest

from adapters.bootstrap import Container
from domain.application.context import acting
from domain.application.mail import AppendItem
from projections.audit_trail.view import AuditEntry
from tests.imap_support import RawImap, running_imap
from tests.pop3_support import PASSWORD, RawPop3, RunningPop3, add_user, client_context, running_pop3
from tests.smtp_support import inbox_bodies

ALICE = "alice@example.test"
GREETING = b"+OK localhost ledgermail POP3 ready\r\n"
CAPA_BEFORE_LOGIN = (b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
                     b"PIPELINING\r\nUTF8\r\nUSER\r\nSASL PLAIN\r\nSTLS\r\n"
                     b"IMPLEMENTATION ledgermail\r\n.\r\n")
CAPA_AFTER_TLS = CAPA_BEFORE_LOGIN.replace(b"STLS\r\n", b"")
CAPA_AFTER_LOGIN = (b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
                    b"PIPELINING\r\nUTF8\r\nIMPLEMENTATION ledgermail\r\n.\r\n")
IN_USE = b"-ERR [IN-USE] maildrop already locked by another session\r\n"


def message(n: int, body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: Bob <bob@far.test>\r\nTo: {ALICE}\r\nSubject: message {n}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m{n}@far.test>\r\n\r\n").encode() + body


def header(n: int) -> bytes:
    """The header lines of ``message(n)``, without the CRLF that ends the last one."""
    return message(n, b"").removesuffix(b"\r\n\r\n")


def plain(login: str, password: str, authzid: str = "") -> str:
    """RFC 4616 PLAIN, base64."""
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()


def unstuffed(answer: bytes) -> bytes:
    """The message inside a multi-line answer: status line, dot-stuffing and the final
    "." removed (RFC 1939 §3)."""
    _, _, rest = answer.partition(b"\r\n")
    assert rest.endswith(b"\r\n.\r\n") or rest == b".\r\n", answer
    lines = rest[:-3].split(b"\r\n")[:-1]
    for line in lines:
        assert not line.startswith(b".") or line.startswith(b".."), f"unstuffed dot line in {answer!r}"
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def alice(store: Container) -> UUID:
    return add_user(store, ALICE)


@pytest.fixture
def pop3(store: Container, alice: UUID) -> Iterator[RunningPop3]:
    with running_pop3(store) as server:
        yield server


def fill(store: Container, account_id: UUID, raws: list[bytes]) -> None:
    with acting("admin:test", protocol="test", purpose="testing"):
        _, position = store.app.append_many(account_id, "INBOX", [AppendItem(raw, []) for raw in raws])
    store.projections.wait_for(position, 30)


def logged_in(server: RunningPop3) -> RawPop3:
    client = RawPop3(server.pop3)
    assert client.greeting == GREETING
    client.login(ALICE)
    return client


def login_when_free(server: RunningPop3, seconds: float = 3.0) -> tuple[RawPop3, bytes]:
    """Log in as soon as the maildrop lock of a closed connection is released (the
    server notices the close a moment after the client makes it)."""
    deadline = time.monotonic() + seconds
    while True:
        client = RawPop3(server.pop3)
        assert client.command(f"USER {ALICE}") == b"+OK send PASS\r\n"
        reply = client.command(f"PASS {PASSWORD}")
        if reply != IN_USE:
            assert reply.startswith(b"+OK "), reply
            return client, reply
        client.close()
        assert time.monotonic() < deadline, "the maildrop of a closed connection stayed locked"
        time.sleep(0.05)


def quit_session(client: RawPop3, removed: int = 0) -> None:
    assert client.command("QUIT") == f"+OK bye; {removed} messages removed\r\n".encode()
    assert client.closed_within(2) == b""
    client.close()


def last_position(store: Container) -> int:
    store.catch_up()
    rows = store.audit_trail.rows()
    return rows[-1].entry.position if rows else 0


def audit_since(store: Container, position: int) -> list[AuditEntry]:
    store.catch_up()
    return [row.entry for row in store.audit_trail.rows() if row.entry.position > position]


def imap_state(port: int) -> tuple[int, list[int]]:
    """UIDVALIDITY and the UIDs of alice's INBOX, as a fresh IMAP session sees them."""
    client = RawImap(port)
    client.login(ALICE)
    selected = client.command("s", "SELECT INBOX")
    uidvalidity = int(re.search(rb"\[UIDVALIDITY (\d+)\]", selected)[1])  # type: ignore[index]
    searched = client.command("u", "UID SEARCH ALL")
    assert searched.endswith(b"u OK SEARCH completed\r\n"), searched
    uids = [int(n) for n in re.search(rb"\* SEARCH([ \d]*)\r\n", searched)[1].split()]  # type: ignore[index]
    client.command("z", "LOGOUT")
    client.close()
    return uidvalidity, uids


# -- greeting and CAPA (RFC 2449 §5, RFC 2595 §4) ----------------------------------------


def test_the_greeting_is_one_ok_line_naming_the_host(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.greeting == GREETING
    assert client.command("QUIT") == b"+OK bye\r\n"
    assert client.closed_within(2) == b""


def test_capa_before_login_lists_user_sasl_plain_and_stls(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command("CAPA", multiline=True) == CAPA_BEFORE_LOGIN
    assert client.command("capa", multiline=True) == CAPA_BEFORE_LOGIN  # commands are case-insensitive


def test_capa_after_login_lists_no_login_mechanisms_and_no_stls(pop3: RunningPop3) -> None:
    client = logged_in(pop3)
    assert client.command("CAPA", multiline=True) == CAPA_AFTER_LOGIN
    quit_session(client)


def test_capa_after_stls_and_on_pop3s_lists_user_and_sasl_plain_but_not_stls(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command("STLS") == b"+OK begin TLS negotiation\r\n"
    assert client.buffer == b""
    client.sock = client_context().wrap_socket(client.sock, server_hostname="localhost")
    assert client.command("CAPA", multiline=True) == CAPA_AFTER_TLS
    client.login(ALICE)
    assert client.command("CAPA", multiline=True) == CAPA_AFTER_LOGIN
    quit_session(client)

    client = RawPop3(pop3.pop3s, tls=True)
    assert client.greeting == GREETING
    assert client.command("CAPA", multiline=True) == CAPA_AFTER_TLS
    client.login(ALICE)
    quit_session(client)


def test_utf8_is_accepted_before_login(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command("UTF8") == b"+OK UTF8 enabled\r\n"
    client.login(ALICE)
    quit_session(client)


# -- USER / PASS and AUTH PLAIN (RFC 1939 §7, RFC 5034) -----------------------------------


def test_user_and_pass_log_in_and_the_answer_counts_the_maildrop(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1), message(2)])
    size = len(message(1)) + len(message(2))
    client = RawPop3(pop3.pop3)
    assert client.command(f"USER {ALICE}") == b"+OK send PASS\r\n"
    # The password is the rest of the line, spaces included.
    assert " " in PASSWORD
    assert client.command(f"PASS {PASSWORD}") == f"+OK 2 messages ({size} octets)\r\n".encode()
    quit_session(client)


def test_pass_without_user_is_refused_and_user_then_pass_works(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command(f"PASS {PASSWORD}") == b"-ERR USER first\r\n"
    assert client.command("USER") == b"-ERR USER takes one name\r\n"
    client.login(ALICE)
    quit_session(client)


def test_auth_plain_with_an_initial_response_logs_in(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == b"+OK 0 messages (0 octets)\r\n"
    assert client.command("STAT") == b"+OK 0 0\r\n"
    quit_session(client)


def test_auth_plain_with_a_continuation_logs_in(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command("AUTH PLAIN") == b"+ \r\n"
    assert client.command(plain(ALICE, PASSWORD, authzid=ALICE)) == b"+OK 0 messages (0 octets)\r\n"
    quit_session(client)


def test_auth_cancelled_with_a_star_gets_err_and_the_session_goes_on(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command("AUTH PLAIN") == b"+ \r\n"
    assert client.command("*") == b"-ERR authentication cancelled\r\n"
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == b"+OK 0 messages (0 octets)\r\n"
    quit_session(client)


def test_auth_lists_plain_and_refuses_other_mechanisms_and_other_users(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command("AUTH", multiline=True) == b"+OK mechanisms follow\r\nPLAIN\r\n.\r\n"
    assert client.command("AUTH CRAM-MD5") == b"-ERR unsupported mechanism; use PLAIN\r\n"
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD, authzid="bob@example.test")) == (
        b"-ERR [AUTH] cannot act as another user\r\n")
    client = RawPop3(pop3.pop3)
    assert client.command("AUTH PLAIN not-base64!") == b"-ERR invalid SASL PLAIN response\r\n"
    assert client.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == b"+OK 0 messages (0 octets)\r\n"
    quit_session(client)


# -- STAT, LIST, UIDL (RFC 1939 §5, §7) ---------------------------------------------------


def test_stat_list_and_list_n_give_counts_and_exact_sizes(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    raws = [message(1), message(2, b"A longer body.\r\n" * 10), message(3)]
    fill(store, alice, raws)
    sizes = [len(raw) for raw in raws]
    client = logged_in(pop3)
    assert client.command("STAT") == f"+OK 3 {sum(sizes)}\r\n".encode()
    assert client.command("LIST", multiline=True) == (
        f"+OK 3 messages ({sum(sizes)} octets)\r\n"
        f"1 {sizes[0]}\r\n2 {sizes[1]}\r\n3 {sizes[2]}\r\n.\r\n".encode())
    assert client.command("LIST 2") == f"+OK 2 {sizes[1]}\r\n".encode()
    assert client.command("list 3") == f"+OK 3 {sizes[2]}\r\n".encode()
    quit_session(client)


def test_an_empty_maildrop_lists_nothing(pop3: RunningPop3) -> None:
    client = logged_in(pop3)
    assert client.command("STAT") == b"+OK 0 0\r\n"
    assert client.command("LIST", multiline=True) == b"+OK 0 messages (0 octets)\r\n.\r\n"
    assert client.command("UIDL", multiline=True) == b"+OK unique-id listing follows\r\n.\r\n"
    assert client.command("LIST 1") == b"-ERR no such message: 1\r\n"
    quit_session(client)


def test_uidl_is_the_imap_uid_and_uidvalidity_and_stays_the_same_in_later_sessions(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(n) for n in range(1, 4)])
    with running_imap(store) as imap:
        uidvalidity, uids = imap_state(imap.imap)
        assert uids == [1, 2, 3]
        # Dovecot's default pop3_uidl_format %08Xu%08Xv, which prints lower-case hex.
        ids = [f"{uid:08x}{uidvalidity:08x}" for uid in uids]
        client = logged_in(pop3)
        assert client.command("UIDL", multiline=True) == (
            f"+OK unique-id listing follows\r\n1 {ids[0]}\r\n2 {ids[1]}\r\n3 {ids[2]}\r\n.\r\n".encode())
        assert client.command("UIDL 2") == f"+OK 2 {ids[1]}\r\n".encode()
        assert client.command("DELE 1") == b"+OK message 1 deleted\r\n"
        quit_session(client, removed=1)
        # Next session: the numbers moved up, the unique ids did not.
        client, _ = login_when_free(pop3)
        assert client.command("UIDL", multiline=True) == (
            f"+OK unique-id listing follows\r\n1 {ids[1]}\r\n2 {ids[2]}\r\n.\r\n".encode())
        quit_session(client)
        assert imap_state(imap.imap) == (uidvalidity, [2, 3])


# -- RETR and TOP (RFC 1939 §3, §7) -------------------------------------------------------


DOTTED = message(1, b".starts with a dot\r\n..two dots\r\n.\r\nmiddle . dot\r\n.\r\nlast\r\n")


@pytest.mark.parametrize("raw, wire", [
    (DOTTED, header(1) + b"\r\n\r\n..starts with a dot\r\n...two dots\r\n..\r\n"
                         b"middle . dot\r\n..\r\nlast\r\n"),
    (b".first line is dotted\r\nSubject: odd\r\n\r\nbody\r\n",
     b"..first line is dotted\r\nSubject: odd\r\n\r\nbody\r\n"),
    (message(2, b"no line end at the end"), header(2) + b"\r\n\r\nno line end at the end\r\n"),
    (message(3, b"ends with a dot line\r\n."), header(3) + b"\r\n\r\nends with a dot line\r\n..\r\n"),
], ids=["dot lines", "dot first", "no final CRLF", "final bare dot"])
def test_retr_sends_the_stored_bytes_crlf_and_dot_stuffed(
        store: Container, alice: UUID, pop3: RunningPop3, raw: bytes, wire: bytes) -> None:
    fill(store, alice, [raw])
    client = logged_in(pop3)
    answer = client.command("RETR 1", multiline=True)
    assert answer == f"+OK {len(raw)} octets\r\n".encode() + wire + b".\r\n"
    expected = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
    assert unstuffed(answer) == expected
    quit_session(client)


BODY = b"line 1\r\nline 2\r\n.line 3\r\nline 4\r\n"


def test_top_n_0_sends_the_header_and_the_blank_line(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1, BODY)])
    client = logged_in(pop3)
    assert client.command("TOP 1 0", multiline=True) == (
        b"+OK top of message follows\r\n" + header(1) + b"\r\n\r\n.\r\n")
    quit_session(client)


def test_top_n_2_sends_two_body_lines_and_top_past_the_end_sends_the_whole_message(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1, BODY)])
    client = logged_in(pop3)
    assert client.command("TOP 1 2", multiline=True) == (
        b"+OK top of message follows\r\n" + header(1) + b"\r\n\r\nline 1\r\nline 2\r\n.\r\n")
    assert client.command("TOP 1 3", multiline=True) == (
        b"+OK top of message follows\r\n" + header(1) + b"\r\n\r\nline 1\r\nline 2\r\n..line 3\r\n.\r\n")
    assert unstuffed(client.command("TOP 1 100", multiline=True)) == message(1, BODY)
    quit_session(client)


def test_top_counts_empty_body_lines_as_lines(store: Container, alice: UUID, pop3: RunningPop3) -> None:
    """RFC 1939 §7: "the number of lines" of the body; an empty line is a line."""
    fill(store, alice, [message(1, b"first\r\n\r\nthird\r\n"), message(2, b"first\r\n\r\n\r\nfourth\r\n")])
    client = logged_in(pop3)
    assert client.command("TOP 1 2", multiline=True) == (
        b"+OK top of message follows\r\n" + header(1) + b"\r\n\r\nfirst\r\n\r\n.\r\n")
    assert client.command("TOP 2 3", multiline=True) == (
        b"+OK top of message follows\r\n" + header(2) + b"\r\n\r\nfirst\r\n\r\n\r\n.\r\n")
    quit_session(client)


@pytest.mark.parametrize("raw", [
    b"Subject: empty body\r\n\r\n",
    b"Subject: a body of one empty line\r\n\r\n\r\n",
    b"Subject: no blank line and no body\r\n",
], ids=["empty body", "one empty body line", "header only"])
def test_top_never_sends_body_lines_the_message_does_not_have(
        store: Container, alice: UUID, pop3: RunningPop3, raw: bytes) -> None:
    fill(store, alice, [raw])
    client = logged_in(pop3)
    retr = client.command("RETR 1", multiline=True).partition(b"\r\n")[2]
    top_0 = client.command("TOP 1 0", multiline=True).partition(b"\r\n")[2]
    tops = [client.command(f"TOP 1 {n}", multiline=True).partition(b"\r\n")[2] for n in (1, 2, 5)]
    quit_session(client)
    # TOP 1 0 is the header and the blank line (one is supplied when the message has none).
    assert top_0 == raw.removesuffix(b"\r\n\r\n").removesuffix(b"\r\n") + b"\r\n\r\n.\r\n"
    # Asking for more lines than the body has gives the whole message, never more.
    whole = retr if raw.count(b"\r\n\r\n") else top_0
    assert tops == [whole] * 3, (raw, tops)


# -- DELE, RSET, NOOP, QUIT (RFC 1939 §5, §6) ---------------------------------------------


def test_dele_marks_a_message_that_stat_list_uidl_and_retr_then_leave_out(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    raws = [message(1), message(2), message(3)]
    fill(store, alice, raws)
    client = logged_in(pop3)
    uidl = client.command("UIDL", multiline=True).split(b"\r\n")
    assert client.command("DELE 2") == b"+OK message 2 deleted\r\n"
    kept = len(raws[0]) + len(raws[2])
    assert client.command("STAT") == f"+OK 2 {kept}\r\n".encode()
    assert client.command("LIST", multiline=True) == (
        f"+OK 2 messages ({kept} octets)\r\n1 {len(raws[0])}\r\n3 {len(raws[2])}\r\n.\r\n".encode())
    assert client.command("UIDL", multiline=True) == b"\r\n".join([uidl[0], uidl[1], uidl[3], b".", b""])
    for command in ("LIST 2", "UIDL 2", "RETR 2", "TOP 2 0"):
        assert client.command(command) == b"-ERR message 2 is deleted\r\n", command
    quit_session(client, removed=1)


def test_dele_twice_is_refused_the_second_time(store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1)])
    client = logged_in(pop3)
    assert client.command("DELE 1") == b"+OK message 1 deleted\r\n"
    assert client.command("DELE 1") == b"-ERR message 1 is deleted\r\n"
    quit_session(client, removed=1)


def test_rset_unmarks_every_deleted_message_and_quit_then_removes_nothing(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    raws = [message(1), message(2)]
    fill(store, alice, raws)
    total = sum(len(raw) for raw in raws)
    client = logged_in(pop3)
    assert client.command("DELE 1") == b"+OK message 1 deleted\r\n"
    assert client.command("DELE 2") == b"+OK message 2 deleted\r\n"
    assert client.command("STAT") == b"+OK 0 0\r\n"
    assert client.command("RSET") == f"+OK maildrop has 2 messages ({total} octets)\r\n".encode()
    assert client.command("STAT") == f"+OK 2 {total}\r\n".encode()
    assert unstuffed(client.command("RETR 1", multiline=True)) == raws[0]
    quit_session(client, removed=0)
    client, reply = login_when_free(pop3)
    assert reply == f"+OK 2 messages ({total} octets)\r\n".encode()
    quit_session(client)


def test_noop_answers_ok_and_changes_nothing(store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1)])
    client = logged_in(pop3)
    assert client.command("NOOP") == b"+OK\r\n"
    assert client.command("STAT") == f"+OK 1 {len(message(1))}\r\n".encode()
    quit_session(client)


def test_quit_before_login_says_bye_and_closes(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    assert client.command(f"USER {ALICE}") == b"+OK send PASS\r\n"
    assert client.command("QUIT") == b"+OK bye\r\n"
    assert client.closed_within(2) == b""


def test_quit_removes_the_marked_messages_in_one_save_that_imap_sees_as_expunges(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(n) for n in range(1, 5)])
    with running_imap(store) as imap:
        watcher = RawImap(imap.imap)
        watcher.login(ALICE)
        assert b"* 4 EXISTS\r\n" in watcher.command("s", "SELECT INBOX")
        client = logged_in(pop3)
        assert client.command("DELE 1") == b"+OK message 1 deleted\r\n"
        assert client.command("DELE 3") == b"+OK message 3 deleted\r\n"
        before = last_position(store)
        quit_session(client, removed=2)
        saved = audit_since(store, before)
        # The open IMAP session is told (RFC 9051 §7.5.1), in the order that keeps
        # sequence numbers right: 3 goes first, or 1 first and then the old 3 as 2.
        expunges = b""
        deadline = time.monotonic() + 5
        while expunges.count(b"EXPUNGE") < 2 and time.monotonic() < deadline:
            reply = watcher.command("n", "NOOP")
            expunges += b"".join(line + b"\r\n" for line in reply.split(b"\r\n") if line.endswith(b"EXPUNGE"))
            time.sleep(0.05)
        assert expunges in (b"* 3 EXPUNGE\r\n* 1 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n* 2 EXPUNGE\r\n"), expunges
        assert watcher.command("u", "UID SEARCH ALL") == b"* SEARCH 2 4\r\nu OK SEARCH completed\r\n"
        watcher.close()
    # One save: one contiguous run of the log under one envelope, from the POP3 session.
    assert sorted(e.event_type for e in saved if e.event_type.startswith("MessageCopy.")) == [
        "MessageCopy.Expunged", "MessageCopy.Expunged"]
    assert [e.position for e in saved] == list(range(before + 1, before + 1 + len(saved)))
    assert len({(e.at, e.session, e.actor, e.protocol) for e in saved}) == 1
    assert (saved[0].actor, saved[0].protocol) == (f"user:{alice}", "pop3-pop3")


def test_a_dropped_connection_deletes_nothing(store: Container, alice: UUID, pop3: RunningPop3) -> None:
    raws = [message(1), message(2)]
    fill(store, alice, raws)
    total = sum(len(raw) for raw in raws)
    before = last_position(store)
    client = logged_in(pop3)
    assert client.command("DELE 1") == b"+OK message 1 deleted\r\n"
    assert client.command("DELE 2") == b"+OK message 2 deleted\r\n"
    client.close()  # no QUIT
    client, reply = login_when_free(pop3)
    assert reply == f"+OK 2 messages ({total} octets)\r\n".encode()
    assert client.command("STAT") == f"+OK 2 {total}\r\n".encode()
    quit_session(client)
    assert [e for e in audit_since(store, before) if e.event_type == "MessageCopy.Expunged"] == []


def test_a_second_session_on_the_same_maildrop_gets_in_use_until_the_first_quits(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1)])
    first = logged_in(pop3)
    second = RawPop3(pop3.pop3)
    assert second.command(f"USER {ALICE}") == b"+OK send PASS\r\n"
    assert second.command(f"PASS {PASSWORD}") == IN_USE
    assert second.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == IN_USE
    # Still in the AUTHORIZATION state, and IMAP is not locked out meanwhile.
    assert second.command("STAT") == b"-ERR STAT is not valid in the authorization state\r\n"
    with running_imap(store) as imap:
        assert imap_state(imap.imap)[1] == [1]
    quit_session(first)
    assert second.command("AUTH PLAIN " + plain(ALICE, PASSWORD)) == (
        f"+OK 1 messages ({len(message(1))} octets)\r\n".encode())
    quit_session(second)


def test_pipelined_commands_are_answered_in_order(store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1)])
    size = len(message(1))
    client = RawPop3(pop3.pop3)
    client.send(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST 1\r\nRETR 1\r\nDELE 1\r\nSTAT\r\nQUIT\r\n")
    assert client.line() == b"+OK send PASS\r\n"
    assert client.line() == f"+OK 1 messages ({size} octets)\r\n".encode()
    assert client.line() == f"+OK 1 {size}\r\n".encode()
    assert client.line() == f"+OK 1 {size}\r\n".encode()
    assert unstuffed(client.multiline()) == message(1)
    assert client.line() == b"+OK message 1 deleted\r\n"
    assert client.line() == b"+OK 0 0\r\n"
    assert client.line() == b"+OK bye; 1 messages removed\r\n"
    assert client.closed_within(2) == b""


def test_a_continuation_pipelined_behind_auth_is_read_as_the_sasl_response(pop3: RunningPop3) -> None:
    client = RawPop3(pop3.pop3)
    client.send(f"AUTH PLAIN\r\n{plain(ALICE, PASSWORD)}\r\nSTAT\r\nQUIT\r\n")
    assert client.closed_within(2) == (
        b"+ \r\n+OK 0 messages (0 octets)\r\n+OK 0 0\r\n+OK bye; 0 messages removed\r\n")


def test_a_message_expunged_over_imap_keeps_its_number_but_cannot_be_retrieved(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    """RFC 1939 §5: the numbers are fixed for the session; what another session removed
    meanwhile is refused, and the rest of the maildrop is unaffected."""
    fill(store, alice, [message(1), message(2)])
    client = logged_in(pop3)
    with running_imap(store) as imap:
        other = RawImap(imap.imap)
        other.login(ALICE)
        other.command("s", "SELECT INBOX")
        stored = other.command("d", "UID STORE 1 +FLAGS.SILENT (\\Deleted)")
        assert stored.endswith(b"d OK STORE completed\r\n"), stored
        assert other.command("x", "EXPUNGE") == b"* 1 EXPUNGE\r\nx OK EXPUNGE completed\r\n"
        other.close()
    assert client.command("STAT") == f"+OK 2 {2 * len(message(1))}\r\n".encode()
    assert client.command("RETR 1") == b"-ERR [SYS/TEMP] message 1 was removed by another session\r\n"
    assert unstuffed(client.command("RETR 2", multiline=True)) == message(2)
    assert client.command("DELE 2") == b"+OK message 2 deleted\r\n"
    quit_session(client, removed=1)
    assert inbox_bodies(store, ALICE) == []


# -- the audit trail ------------------------------------------------------------------


def test_retr_and_top_each_record_one_messages_accessed_event_and_listing_records_none(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1), message(2)])
    client = logged_in(pop3)
    steps: dict[str, list[AuditEntry]] = {}
    for name, command, multiline in (("stat", "STAT", False), ("list", "LIST", True),
                                     ("uidl", "UIDL", True), ("noop", "NOOP", False),
                                     ("retr", "RETR 1", True), ("top", "TOP 2 0", True),
                                     ("top 5", "TOP 1 5", True), ("dele", "DELE 2", False),
                                     ("rset", "RSET", False)):
        before = last_position(store)
        assert client.command(command, multiline=multiline).startswith(b"+OK"), command
        steps[name] = audit_since(store, before)
    quit_session(client)
    # The account's first read also opens its access ledger (AccessLedger.Opened).
    assert {name: [e.event_type for e in entries if e.event_type != "AccessLedger.Opened"]
            for name, entries in steps.items()} == {
        "stat": [], "list": [], "uidl": [], "noop": [],
        "retr": ["AccessLedger.MessagesAccessed"], "top": ["AccessLedger.MessagesAccessed"],
        "top 5": ["AccessLedger.MessagesAccessed"], "dele": [], "rset": []}
    accessed = [e for name in ("retr", "top", "top 5") for e in steps[name]
                if e.event_type == "AccessLedger.MessagesAccessed"]
    assert {(e.actor, e.protocol) for e in accessed} == {(f"user:{alice}", "pop3-pop3")}
    assert len({e.session for e in accessed}) == 1


def test_pipelined_reads_record_one_messages_accessed_event_each_in_one_save(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1), message(2)])
    client = logged_in(pop3)
    assert client.command("STAT").startswith(b"+OK 2 ")
    before = last_position(store)
    client.send("RETR 1\r\nTOP 2 0\r\nLIST\r\nRETR 2\r\n")
    assert unstuffed(client.multiline()) == message(1)
    assert client.multiline() == b"+OK top of message follows\r\n" + header(2) + b"\r\n\r\n.\r\n"
    assert client.multiline().startswith(b"+OK 2 messages ")
    assert unstuffed(client.multiline()) == message(2)
    saved = [e for e in audit_since(store, before) if e.event_type != "AccessLedger.Opened"]
    quit_session(client)
    assert [e.event_type for e in saved] == ["AccessLedger.MessagesAccessed"] * 3
    assert [e.position for e in saved] == list(range(saved[0].position, saved[0].position + 3))
    assert len({(e.at, e.session) for e in saved}) == 1


# -- poplib --------------------------------------------------------------------------------


def test_a_poplib_session_over_stls_lists_retrieves_tops_deletes_resets_and_quits(
        store: Container, alice: UUID, pop3: RunningPop3) -> None:
    raws = [message(1, DOTTED.partition(b"\r\n\r\n")[2]), message(2), message(3)]
    fill(store, alice, raws)
    client = poplib.POP3("127.0.0.1", pop3.pop3, timeout=10)
    quitted = False
    try:
        assert client.getwelcome() == GREETING.rstrip(b"\r\n")
        capabilities = client.capa()
        for name in ("TOP", "UIDL", "USER", "SASL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS",
                     "UTF8"):
            assert name in capabilities, name
        assert capabilities["SASL"] == ["PLAIN"]
        client.stls(client_context())
        assert "STLS" not in client.capa()
        assert client.user(ALICE) == b"+OK send PASS"
        assert client.pass_(PASSWORD).startswith(b"+OK 3 messages")
        assert client.stat() == (3, sum(len(raw) for raw in raws))
        assert client.list() == (f"+OK 3 messages ({sum(len(raw) for raw in raws)} octets)".encode(),
                                 [f"{n} {len(raw)}".encode() for n, raw in enumerate(raws, 1)],
                                 sum(len(f"{n} {len(raw)}".encode()) + 2 for n, raw in enumerate(raws, 1)))
        uidl = client.uidl()[1]
        assert [line.split()[0] for line in uidl] == [b"1", b"2", b"3"]
        assert client.uidl(2) == b"+OK " + uidl[1]
        # poplib takes the dot-stuffing off: the lines are the stored lines.
        response, lines, _ = client.retr(1)
        assert response == f"+OK {len(raws[0])} octets".encode()
        assert b"".join(line + b"\r\n" for line in lines) == raws[0]
        assert client.top(2, 0)[1] == header(2).split(b"\r\n") + [b""]
        assert client.dele(3) == b"+OK message 3 deleted"
        assert client.stat()[0] == 2
        client.rset()
        assert client.stat()[0] == 3
        assert client.noop() == b"+OK"
        assert client.dele(1) == b"+OK message 1 deleted"
        with pytest.raises(poplib.error_proto, match="message 1 is deleted"):
            client.retr(1)
        assert client.quit() == b"+OK bye; 1 messages removed"
        quitted = True
    finally:
        if not quitted:
            client.close()
    with running_imap(store) as imap:
        assert imap_state(imap.imap)[1] == [2, 3]


def test_a_poplib_session_over_pop3s(store: Container, alice: UUID, pop3: RunningPop3) -> None:
    fill(store, alice, [message(1)])
    client = poplib.POP3_SSL("127.0.0.1", pop3.pop3s, context=client_context(), timeout=10)
    assert "STLS" not in client.capa()
    client.user(ALICE)
    client.pass_(PASSWORD)
    assert b"".join(line + b"\r\n" for line in client.retr(1)[1]) == message(1)
    assert client.quit() == b"+OK bye; 0 messages removed"
