"""IMAP sessions that see each other: imaplib against the real server, two connections
on one mailbox (EXISTS, FETCH FLAGS and EXPUNGE reaching the other, and EXPUNGE held
back while sequence numbers may be in use), CONDSTORE and QRESYNC resynchronization,
IDLE woken by an SMTP delivery and by another session, and the audit trail each kind
of access leaves. On both backends.
"""

from __future__ import annotations

import imaplib
import re
import resource
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.bootstrap import Container
from projections.audit_trail.view import AuditEntry
from tests.imap_support import PASSWORD, RawImap, RunningImap, add_user, running_imap
from tests.smtp_support import running_smtp

ALICE = "alice@example.test"
#: How late an IDLE wake-up may be (the watcher polls every 0.1 s).
IDLE_DEADLINE = 1.0


def message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: Bob <bob@far.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{subject}@far.test>\r\n"
            f"\r\n").encode() + body


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def serving(store: Container) -> Iterator[RunningImap]:
    add_user(store, ALICE)
    with running_imap(store) as server:
        yield server


@contextmanager
def session(server: RunningImap, *setup: str) -> Iterator[RawImap]:
    """Alice, logged in, after the ``setup`` commands (each must answer OK)."""
    client = RawImap(server.imap)
    try:
        client.login(ALICE)
        for number, text in enumerate(setup):
            reply = client.command(f"P{number}", text)
            assert re.search(rb"^P%d OK " % number, reply, re.M), (text, reply)
        yield client
    finally:
        client.close()


def append(client: RawImap, raw: bytes, flags: str = "", tag: str = "AP") -> bytes:
    flag_part = f" ({flags})" if flags else ""
    client.send(f"{tag} APPEND INBOX{flag_part} {{{len(raw)}+}}\r\n".encode() + raw + b"\r\n")
    reply = client.until_tagged(tag)
    assert re.search(rb"^" + tag.encode() + rb" OK \[APPENDUID \d+ \d+\]", reply, re.M), reply
    return reply


def done(tag: str, verb: str = "FETCH") -> bytes:
    return f"{tag} OK {verb} completed\r\n".encode()


def highest_modseq(client: RawImap) -> int:
    return number(rb"HIGHESTMODSEQ (\d+)", client.command("HM", "STATUS INBOX (HIGHESTMODSEQ)"))


def fill(server: RunningImap, count: int) -> list[bytes]:
    raws = [message(f"m{n}") for n in range(1, count + 1)]
    with session(server) as client:
        for raw in raws:
            append(client, raw)
    return raws


def number(pattern: bytes, reply: bytes) -> int:
    match = re.search(pattern, reply)
    assert match, (pattern, reply)
    return int(match[1])


def audit_since(store: Container, position: int) -> list[AuditEntry]:
    store.catch_up()
    return [row.entry for row in store.audit_trail.rows() if row.entry.position > position]


def last_position(store: Container) -> int:
    store.catch_up()
    rows = store.audit_trail.rows()
    return rows[-1].entry.position if rows else 0


def types(entries: list[AuditEntry]) -> list[str]:
    """The message-level event types, sorted (the Mailbox.* bookkeeping, such as
    ModseqAdvanced and UidsAssigned, left out)."""
    return sorted(entry.event_type for entry in entries
                  if not entry.event_type.startswith(("Mailbox.", "Account.")))


@contextmanager
def address_space_headroom(extra: int) -> Iterator[None]:
    """While the block runs, this process may map only ``extra`` more bytes. A server
    bug that materializes a 2**32-number UID range then fails as a MemoryError inside
    its worker thread (an IMAP NO, or a closed connection) instead of taking the
    machine's memory, and the test fails instead of the test run."""
    status = Path("/proc/self/status")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if not status.exists():
        yield
        return
    size_kib = int(re.search(r"^VmSize:\s+(\d+) kB", status.read_text(), re.M)[1])  # type: ignore[index]
    limit = size_kib * 1024 + extra
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# -- imaplib: one whole session ------------------------------------------------------------


def test_an_imaplib_session_logs_in_selects_appends_fetches_stores_searches_copies_expunges_and_logs_out(
        store: Container) -> None:
    first, second = message("first"), message("second", b"Second body.\r\n")
    with serving(store) as server:
        client = imaplib.IMAP4("127.0.0.1", server.imap, timeout=10)
        logged_out = False
        try:
            assert "IMAP4REV1" in client.capabilities and "AUTH=PLAIN" in client.capabilities
            assert client.login(ALICE, PASSWORD)[0] == "OK"
            assert client.select("INBOX") == ("OK", [b"0"])
            typ, data = client.append("INBOX", r"(\Flagged)", imaplib.Time2Internaldate(1704103200), first)
            assert typ == "OK" and re.fullmatch(rb"\[APPENDUID \d+ 1\] APPEND completed", data[0]), data
            assert client.append("INBOX", None, None, second)[0] == "OK"
            assert client.response("EXISTS") == ("EXISTS", [b"0", b"1", b"2"])
            typ, data = client.fetch("1:2", "(UID FLAGS BODY.PEEK[])")
            assert typ == "OK"
            assert data == [(b"1 (UID 1 FLAGS (\\Flagged) BODY[] {%d}" % len(first), first), b")",
                            (b"2 (UID 2 FLAGS () BODY[] {%d}" % len(second), second), b")"]
            assert client.store("2", "+FLAGS", r"(\Seen)") == ("OK", [b"2 (FLAGS (\\Seen))"])
            assert client.search(None, "SEEN") == ("OK", [b"2"])
            assert client.search(None, "UNSEEN", "FLAGGED") == ("OK", [b"1"])
            assert client.uid("SEARCH", "BODY", '"Second body"') == ("OK", [b"2"])
            typ, data = client.copy("1:2", "Archive")
            assert typ == "OK" and re.fullmatch(rb"\[COPYUID \d+ 1:2 1:2\] COPY completed", data[0]), data
            assert client.store("1", "+FLAGS.SILENT", r"(\Deleted)") == ("OK", [None])
            assert client.expunge() == ("OK", [b"1"])
            assert client.fetch("1", "(UID FLAGS)") == ("OK", [b"1 (UID 2 FLAGS (\\Seen))"])
            assert client.status("Archive", "(MESSAGES UNSEEN)") == (
                "OK", [b"Archive (MESSAGES 2 UNSEEN 1)"])
            assert client.close()[0] == "OK"
            typ, data = client.logout()
            logged_out = True
            assert (typ, data) == ("BYE", [b"logging out"])
        finally:
            if not logged_out:
                client.shutdown()


# -- two sessions: unsolicited updates ----------------------------------------------------


def test_another_sessions_append_reaches_a_selected_session_as_exists(store: Container) -> None:
    with serving(store) as server:
        fill(server, 2)
        with session(server, "SELECT INBOX") as watcher, session(server, "SELECT INBOX") as writer:
            own = append(writer, message("new"), tag="w1")
            noop = watcher.command("a1", "NOOP")
            quiet = watcher.command("a2", "NOOP")
            append(writer, message("newer"), tag="w2")
            during_fetch = watcher.command("a3", "FETCH 1 FLAGS")
            uids = watcher.command("a4", "FETCH 3:4 UID")
    assert re.fullmatch(rb"\* 3 EXISTS\r\nw1 OK \[APPENDUID \d+ 3\] APPEND completed\r\n", own), own
    assert noop == b"* 3 EXISTS\r\na1 OK NOOP completed\r\n"
    assert quiet == b"a2 OK NOOP completed\r\n"
    # EXISTS may ride on any response, FETCH included (RFC 9051 §7.4.1).
    assert during_fetch == b"* 1 FETCH (FLAGS ())\r\n* 4 EXISTS\r\na3 OK FETCH completed\r\n"
    assert uids == b"* 3 FETCH (UID 3)\r\n* 4 FETCH (UID 4)\r\na4 OK FETCH completed\r\n"


def test_another_sessions_store_reaches_a_selected_session_as_fetch_flags(store: Container) -> None:
    with serving(store) as server:
        fill(server, 2)
        with session(server, "SELECT INBOX") as watcher, session(server, "SELECT INBOX") as writer:
            stored = writer.command("w1", "STORE 2 +FLAGS (\\Flagged $Work)")
            noop = watcher.command("a1", "NOOP")
            quiet = watcher.command("a2", "NOOP")
            watcher.command("a3", "ENABLE CONDSTORE")
            writer.command("w2", "STORE 1 FLAGS (\\Seen)")
            with_modseq = watcher.command("a4", "NOOP")
            modseq = number(rb"MODSEQ \((\d+)\)", watcher.command("a5", "FETCH 1 MODSEQ"))
    assert stored == b"* 2 FETCH (FLAGS ($Work \\Flagged))\r\nw1 OK STORE completed\r\n"
    assert noop == b"* 2 FETCH (UID 2 FLAGS ($Work \\Flagged))\r\na1 OK NOOP completed\r\n"
    assert quiet == b"a2 OK NOOP completed\r\n"
    assert with_modseq == (f"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ({modseq}))\r\n".encode()
                           + done("a4", "NOOP"))


def test_another_sessions_expunge_waits_during_fetch_store_and_search_and_comes_at_the_next_noop(
        store: Container) -> None:
    with serving(store) as server:
        fill(server, 3)
        with session(server, "SELECT INBOX") as watcher, session(server, "SELECT INBOX") as writer:
            writer.command("w1", "STORE 2 +FLAGS.SILENT (\\Deleted)")
            expunged = writer.command("w2", "EXPUNGE")
            fetch = watcher.command("a1", "FETCH 1:3 (UID)")
            stored = watcher.command("a2", "STORE 3 +FLAGS (\\Seen)")
            searched = watcher.command("a3", "SEARCH ALL")
            noop = watcher.command("a4", "NOOP")
            after = watcher.command("a5", "FETCH 1:* (UID FLAGS)")
    assert expunged == b"* 2 EXPUNGE\r\nw2 OK EXPUNGE completed\r\n"
    # The watcher's numbers stay as it knows them until a command that may renumber.
    assert fetch == b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\n" + done("a1")
    assert stored == b"* 3 FETCH (FLAGS (\\Seen))\r\na2 OK STORE completed\r\n"
    assert searched == b"* SEARCH 1 3\r\na3 OK SEARCH completed\r\n"
    assert noop == b"* 2 EXPUNGE\r\na4 OK NOOP completed\r\n"
    assert after == b"* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 3 FLAGS (\\Seen))\r\n" + done("a5")


# -- CONDSTORE and QRESYNC ---------------------------------------------------------------


def test_fetch_changedsince_returns_only_the_messages_changed_since_with_their_modseq(
        store: Container) -> None:
    with serving(store) as server:
        fill(server, 4)
        with session(server, "ENABLE CONDSTORE") as client:
            selected = client.command("s1", "SELECT INBOX")
        since = number(rb"HIGHESTMODSEQ (\d+)", selected)
        with session(server, "ENABLE CONDSTORE", "SELECT INBOX") as writer:
            first = number(rb"MODSEQ \((\d+)\)", writer.command("w1", "STORE 2 +FLAGS (\\Seen)"))
            second = number(rb"MODSEQ \((\d+)\)", writer.command("w2", "STORE 4 +FLAGS (\\Answered)"))
        with session(server, "SELECT INBOX") as client:
            changed = client.command("f1", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {since})")
            by_uid = client.command("f2", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {first})")
            nothing = client.command("f3", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {second})")
            with session(server, "ENABLE CONDSTORE", "SELECT INBOX") as writer:
                third = number(rb"MODSEQ \((\d+)\)", writer.command("w3", "STORE 1 +FLAGS (\\Flagged)"))
            live = client.command("f4", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {second})")
    assert since < first < second < third
    assert changed == (f"* 2 FETCH (FLAGS (\\Seen) MODSEQ ({first}))\r\n"
                       f"* 4 FETCH (FLAGS (\\Answered) MODSEQ ({second}))\r\n").encode() + done("f1")
    assert by_uid == f"* 4 FETCH (UID 4 FLAGS (\\Answered) MODSEQ ({second}))\r\n".encode() + done("f2")
    assert nothing == b"f3 OK FETCH completed\r\n"
    # Changed by another session while selected: reported once, with its MODSEQ.
    pattern = rb"\* 1 FETCH \((UID 1 )?FLAGS \(\\Flagged\) MODSEQ \(%d\)\)\r\n" % third
    assert re.fullmatch(pattern + done("f4"), live), live


def test_an_expunge_raises_the_highestmodseq_that_select_and_status_report(store: Container) -> None:
    """RFC 7162 §3.1.2.1, §3.2: a client that finds HIGHESTMODSEQ unchanged skips its
    resync, so an expunge must raise it: in SELECT as in STATUS."""
    with serving(store) as server:
        fill(server, 3)
        with session(server, "ENABLE CONDSTORE", "SELECT INBOX") as writer:
            writer.command("w1", "STORE 3 +FLAGS (\\Deleted)")
            writer.command("w2", "STORE 1 +FLAGS (\\Flagged)")
        with session(server, "ENABLE QRESYNC") as client:
            cached = number(rb"HIGHESTMODSEQ (\d+)", client.command("s1", "SELECT INBOX"))
            status_before = highest_modseq(client)
        with session(server, "SELECT INBOX") as writer:
            assert writer.command("w3", "EXPUNGE") == b"* 3 EXPUNGE\r\nw3 OK EXPUNGE completed\r\n"
        with session(server, "ENABLE QRESYNC") as client:
            status_after = highest_modseq(client)
            uidvalidity = number(rb"UIDVALIDITY (\d+)", client.command("t3", "STATUS INBOX (UIDVALIDITY)"))
            reselected = client.command("s2", f"SELECT INBOX (QRESYNC ({uidvalidity} {cached}))")
    assert cached == status_before
    assert status_after > cached
    assert number(rb"HIGHESTMODSEQ (\d+)", reselected) == status_after, reselected
    assert b"* VANISHED (EARLIER) 3\r\n" in reselected


def test_qresync_select_reports_vanished_earlier_and_the_changed_flags_since_the_clients_modseq(
        store: Container) -> None:
    with serving(store) as server:
        fill(server, 4)
        with session(server, "ENABLE QRESYNC") as client:
            selected = client.command("s1", "SELECT INBOX")
        uidvalidity = number(rb"UIDVALIDITY (\d+)", selected)
        since = number(rb"HIGHESTMODSEQ (\d+)", selected)
        with session(server, "ENABLE CONDSTORE", "SELECT INBOX") as writer:
            flagged = number(rb"MODSEQ \((\d+)\)", writer.command("w1", "STORE 1 +FLAGS (\\Flagged)"))
            writer.command("w2", "STORE 3 +FLAGS.SILENT (\\Deleted)")
            writer.command("w3", "EXPUNGE")
        with session(server, "ENABLE QRESYNC") as client:
            highest = highest_modseq(client)
            values = client.command("t1", "STATUS INBOX (MAILBOXID)")
            mailbox_id = re.search(rb"MAILBOXID \((\w+)\)", values)[1]  # type: ignore[index]
            resync = client.command("s2", f"SELECT INBOX (QRESYNC ({uidvalidity} {since}))")
            known = client.command("s3", f"EXAMINE INBOX (QRESYNC ({uidvalidity} {since} 1:2))")
            stale = client.command("s4", f"SELECT INBOX (QRESYNC ({uidvalidity + 1} {since}))")
    changes = f"* VANISHED (EARLIER) 3\r\n* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ ({flagged}))\r\n".encode()
    assert resync.endswith(changes + b"s2 OK [READ-WRITE] SELECT completed\r\n"), resync
    flags = b"\\Seen \\Answered \\Flagged \\Deleted \\Draft"
    assert resync == (b"* 3 EXISTS\r\n* 0 RECENT\r\n* FLAGS (" + flags + b")\r\n"
                      b"* OK [PERMANENTFLAGS (" + flags + b" \\*)] flags are kept\r\n"
                      b"* OK [UNSEEN 1] first unseen message\r\n"
                      + f"* OK [UIDVALIDITY {uidvalidity}] UIDs valid\r\n".encode()
                      + b"* OK [UIDNEXT 5] predicted next UID\r\n"
                      + f"* OK [HIGHESTMODSEQ {highest}] highest\r\n".encode()
                      + b"* OK [MAILBOXID (" + mailbox_id + b")] mailbox id\r\n"
                      + changes + b"s2 OK [READ-WRITE] SELECT completed\r\n")
    # Known UIDs 1:2: the vanished UID 3 is not among them; the flag change still is.
    assert known.startswith(b"* OK [CLOSED] previous mailbox closed\r\n* 3 EXISTS\r\n")
    assert b"VANISHED" not in known
    assert known.endswith(f"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ ({flagged}))\r\n"
                          f"s3 OK [READ-ONLY] EXAMINE completed\r\n".encode())
    # Another UIDVALIDITY: the client's cache is void, nothing is resynchronized.
    assert b"VANISHED" not in stale and b"FETCH" not in stale
    assert stale.endswith(b"s4 OK [READ-WRITE] SELECT completed\r\n")


def test_uid_fetch_changedsince_vanished_reports_the_expunged_uids_and_the_changed_flags(
        store: Container) -> None:
    with serving(store) as server:
        fill(server, 4)
        with session(server, "ENABLE QRESYNC") as client:
            since = number(rb"HIGHESTMODSEQ (\d+)", client.command("s1", "SELECT INBOX"))
        with session(server, "ENABLE CONDSTORE", "SELECT INBOX") as writer:
            seen = number(rb"MODSEQ \((\d+)\)", writer.command("w1", "STORE 4 +FLAGS (\\Seen)"))
            writer.command("w2", "STORE 2 +FLAGS.SILENT (\\Deleted)")
            writer.command("w3", "EXPUNGE")
        modifiers = f"(CHANGEDSINCE {since} VANISHED)"
        with session(server, "ENABLE QRESYNC", "SELECT INBOX") as client:
            client.sock.settimeout(20)
            bounded = client.command("f1", f"UID FETCH 1:10 (FLAGS) {modifiers}")
            with address_space_headroom(1 << 30):
                every = client.command("f2", f"UID FETCH 1:* (FLAGS) {modifiers}")
            with session(server, "SELECT INBOX") as plain:
                without_qresync = plain.command("f3", f"UID FETCH 1:* (FLAGS) {modifiers}")
    expected = f"* VANISHED (EARLIER) 2\r\n* 3 FETCH (UID 4 FLAGS (\\Seen) MODSEQ ({seen}))\r\n"
    assert bounded == (expected + "f1 OK FETCH completed\r\n").encode()
    assert every == (expected + "f2 OK FETCH completed\r\n").encode()
    assert without_qresync == b"f3 BAD VANISHED needs UID FETCH and QRESYNC enabled\r\n"


# -- IDLE ----------------------------------------------------------------------------------


def test_idle_wakes_within_a_second_after_an_smtp_delivery_to_the_mailbox(store: Container) -> None:
    raw = message("pushed")
    add_user(store, ALICE)
    with running_smtp(store) as smtp, running_imap(store) as imap, session(imap, "SELECT INBOX") as client:
        client.sock.settimeout(5)
        client.send("i1 IDLE\r\n")
        assert client.line() == b"+ idling\r\n"
        with smtplib.SMTP("127.0.0.1", smtp.mx, local_hostname="client.example", timeout=10) as mx:
            refused = mx.sendmail("bob@far.test", [ALICE], raw)
            accepted_at = time.monotonic()
        woke = client.line()
        elapsed = time.monotonic() - accepted_at
        client.send("DONE\r\n")
        done = client.until_tagged("i1")
        body = client.command("f1", "FETCH 1 BODY.PEEK[]")
    assert refused == {}
    assert woke == b"* 1 EXISTS\r\n"
    assert elapsed < IDLE_DEADLINE, f"IDLE woke {elapsed:.3f} s after the delivery was accepted"
    assert done == b"i1 OK IDLE terminated\r\n"
    assert body.endswith(raw + b")\r\nf1 OK FETCH completed\r\n")


def test_idle_wakes_after_another_sessions_store_and_expunge(store: Container) -> None:
    with serving(store) as server:
        fill(server, 2)
        with session(server, "SELECT INBOX") as idler, session(server, "SELECT INBOX") as writer:
            idler.sock.settimeout(5)
            idler.send("i1 IDLE\r\n")
            assert idler.line() == b"+ idling\r\n"
            writer.command("w1", "STORE 1 +FLAGS (\\Flagged)")
            stored_at = time.monotonic()
            flags = idler.line()
            flags_elapsed = time.monotonic() - stored_at
            writer.command("w2", "STORE 2 +FLAGS.SILENT (\\Deleted)")
            writer.command("w3", "EXPUNGE")
            expunged_at = time.monotonic()
            woken = [idler.line()]
            while b"EXPUNGE" not in woken[-1]:
                woken.append(idler.line())
            expunge_elapsed = time.monotonic() - expunged_at
            idler.send("DONE\r\n")
            done = idler.until_tagged("i1")
    assert flags == b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n"
    assert flags_elapsed < IDLE_DEADLINE, flags_elapsed
    # The \Deleted flag is announced if a wake-up fell between STORE and EXPUNGE.
    assert woken[-1] == b"* 2 EXPUNGE\r\n"
    assert woken[:-1] in ([], [b"* 2 FETCH (UID 2 FLAGS (\\Deleted))\r\n"]), woken
    assert expunge_elapsed < IDLE_DEADLINE, expunge_elapsed
    assert done == b"i1 OK IDLE terminated\r\n"


# -- the audit trail -------------------------------------------------------------------


def test_reading_a_body_records_one_messages_accessed_event_per_fetch_and_fetch_flags_none(
        store: Container) -> None:
    account_id = add_user(store, ALICE)
    with running_imap(store) as server:
        fill(server, 3)
        with session(server, "SELECT INBOX") as client:
            steps: dict[str, list[AuditEntry]] = {}
            for name, text in (("flags", "FETCH 1:3 (FLAGS UID)"),
                               ("summary", "FETCH 1:3 (ENVELOPE INTERNALDATE RFC822.SIZE)"),
                               ("peek three", "FETCH 1:3 BODY.PEEK[]"),
                               ("read one", "FETCH 2 BODY[TEXT]"),
                               ("uid peek two", "UID FETCH 1:2 (BODY.PEEK[HEADER] FLAGS)"),
                               ("binary", "FETCH 3 BINARY.PEEK[1]")):
                before = last_position(store)
                reply = client.command("f1", text)
                assert reply.endswith(b"f1 OK FETCH completed\r\n"), (text, reply)
                steps[name] = audit_since(store, before)
    accessed = {name: [e for e in entries if e.event_type == "AccessLedger.MessagesAccessed"]
                for name, entries in steps.items()}
    assert {name: len(events) for name, events in accessed.items()} == {
        "flags": 0, "summary": 0, "peek three": 1, "read one": 1, "uid peek two": 1, "binary": 1}
    assert steps["flags"] == [] and steps["summary"] == []
    # Reading without PEEK also set \Seen: a flag change of its own.
    assert types(steps["read one"]) == ["AccessLedger.MessagesAccessed", "MessageCopy.FlagsChanged"]
    sessions = {e.session for events in accessed.values() for e in events}
    assert len(sessions) == 1
    for events in accessed.values():
        for entry in events:
            assert (entry.actor, entry.protocol) == (f"user:{account_id}", "imap-imap")


def test_pipelined_fetches_are_answered_in_order_and_each_records_its_own_read(
        store: Container) -> None:
    """Commands sent together run as a batch (their reads saved together); each FETCH
    still gets its own MessagesAccessed event naming the message it read."""
    add_user(store, ALICE)
    with running_imap(store) as server:
        raws = fill(server, 5)
        with session(server, "SELECT INBOX") as client:
            before = last_position(store)
            client.send(b"".join(b"p%d FETCH %d BODY.PEEK[]\r\n" % (n, n) for n in range(1, 6)))
            replies = [client.until_tagged(f"p{n}") for n in range(1, 6)]
            entries = audit_since(store, before)
    for n, reply in enumerate(replies, start=1):
        assert reply == (b"* %d FETCH (BODY[] {%d}\r\n" % (n, len(raws[n - 1])) + raws[n - 1]
                         + b")\r\n" + done(f"p{n}"))
    reads = [e for e in entries if e.event_type == "AccessLedger.MessagesAccessed"]
    assert len(reads) == 5


def test_pipelined_appends_each_get_their_own_appenduid_and_a_bad_one_fails_alone(
        store: Container) -> None:
    add_user(store, ALICE)
    raws = [message(f"p{n}") for n in range(1, 5)]
    with running_imap(store) as server, session(server, "SELECT INBOX") as client:
        uidvalidity = number(rb"UIDVALIDITY (\d+)", client.command("S", "STATUS INBOX (UIDVALIDITY)"))
        commands = [b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (n, len(raw), raw) for n, raw in enumerate(raws, 1)]
        commands.insert(2, b"x1 APPEND Nowhere {%d+}\r\n%s\r\n" % (len(raws[0]), raws[0]))
        client.send(b"".join(commands))
        replies = {tag: client.until_tagged(tag) for tag in ("a1", "a2", "x1", "a3", "a4")}
        fetched = client.command("f1", "UID FETCH 1:* BODY.PEEK[]")
    assert replies["a1"].endswith(b"a1 OK [APPENDUID %d 1] APPEND completed\r\n" % uidvalidity)
    assert replies["a2"].endswith(b"a2 OK [APPENDUID %d 2] APPEND completed\r\n" % uidvalidity)
    assert replies["x1"] == b"x1 NO [TRYCREATE] no mailbox named 'Nowhere'\r\n"
    assert replies["a3"].endswith(b"a3 OK [APPENDUID %d 3] APPEND completed\r\n" % uidvalidity)
    assert replies["a4"].endswith(b"a4 OK [APPENDUID %d 4] APPEND completed\r\n" % uidvalidity)
    assert b"".join(replies.values()).count(b" EXISTS\r\n") >= 1
    assert [fetched.count(raw) for raw in raws] == [1, 1, 1, 1]


def test_idle_and_done_sent_in_one_write_end_the_idle_at_once(store: Container) -> None:
    add_user(store, ALICE)
    with running_imap(store) as server, session(server, "SELECT INBOX") as client:
        started = time.monotonic()
        client.send(b"i1 IDLE\r\nDONE\r\nn1 NOOP\r\n")
        idle = client.until_tagged("i1")
        noop = client.until_tagged("n1")
        elapsed = time.monotonic() - started
    assert idle == b"+ idling\r\ni1 OK IDLE terminated\r\n"
    assert noop == done("n1", "NOOP")
    assert elapsed < 1.0


def test_flag_changes_expunges_and_moves_are_audit_events(store: Container) -> None:
    with serving(store) as server:
        fill(server, 4)
        with session(server, "SELECT INBOX") as client:
            before = last_position(store)
            client.command("w1", "STORE 1:2 +FLAGS (\\Flagged)")
            flagged = audit_since(store, before)
            before = last_position(store)
            client.command("w2", "STORE 1:2 +FLAGS (\\Flagged)")  # no change: no event
            unchanged = audit_since(store, before)
            before = last_position(store)
            client.command("w3", "STORE 1 +FLAGS.SILENT (\\Deleted)")
            client.command("x1", "EXPUNGE")
            expunged = audit_since(store, before)
            before = last_position(store)
            moved_reply = client.command("m1", "MOVE 1 Archive")
            moved = audit_since(store, before)
            before = last_position(store)
            client.command("c1", "COPY 1 Trash")
            copied = audit_since(store, before)
    assert types(flagged) == ["MessageCopy.FlagsChanged", "MessageCopy.FlagsChanged"]
    assert types(unchanged) == []
    assert types(expunged) == ["MessageCopy.Expunged", "MessageCopy.FlagsChanged"]
    assert b"* 1 EXPUNGE\r\n" in moved_reply
    assert types(moved) == ["MessageCopy.Created", "MessageCopy.Expunged"]
    assert types(copied) == ["MessageCopy.Created"]
    for entry in flagged + expunged + moved + copied:
        assert entry.protocol == "imap-imap" and entry.actor.startswith("user:")
