"""IMAP commands as transcripts: raw bytes to the real ``imap`` listener, the exact
bytes it answers, on both backends. One test per command (or per behaviour of one), in
the states where it is valid and where it is not.

Values the server picks (UIDVALIDITY, MAILBOXID, HIGHESTMODSEQ) are read back with
STATUS or FETCH first and then expected in full, so every other byte of a response is
still compared exactly. Messages are appended with LITERAL+ (``{n+}``) unless a test is
about the synchronizing form.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.bootstrap import Container
from domain.application.context import acting
from tests.imap_support import PASSWORD, RawImap, RunningImap, add_user, running_imap

ALICE = "alice@example.test"
BOB = "bob@example.test"
SYSTEM_FLAGS = "\\Seen \\Answered \\Flagged \\Deleted \\Draft"
#: The mailboxes every new account has (RFC 6154 special-use) and their LIST attributes.
DEFAULT_MAILBOXES = {"INBOX": "\\HasNoChildren", "Archive": "\\Archive \\HasNoChildren",
                     "Drafts": "\\Drafts \\HasNoChildren", "Junk": "\\Junk \\HasNoChildren",
                     "Sent": "\\Sent \\HasNoChildren", "Trash": "\\Trash \\HasNoChildren"}
PLAIN_TEXT = b"Greetings from Cologne.\r\nSecond line.\r\n"
ATTACHMENT = b"\x00\x01\x02binary\xff"


def b64(data: bytes) -> bytes:
    """Base64 in 76-column lines with CRLF ends, as a MIME body carries it."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


#: multipart/mixed: 1 is a base64 text/plain part, 2 a base64 attachment holding NUL.
MULTIPART = (b"From: Carol <carol@far.test>\r\nTo: alice@example.test\r\nSubject: parts\r\n"
             b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <parts@far.test>\r\n"
             b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n'
             b"This is a multi-part message.\r\n"
             b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             + b64(PLAIN_TEXT)
             + b'--XX\r\nContent-Type: application/octet-stream; name="a.bin"\r\n'
             b'Content-Disposition: attachment; filename="a.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
             + b64(ATTACHMENT)
             + b"--XX--\r\n")


def listing_of(tag: str, rows: dict[str, str], *, defaults: bool = True) -> bytes:
    """The LIST "" "*" answer for these mailboxes (name -> attributes), INBOX first,
    then by name."""
    every = {**DEFAULT_MAILBOXES, **rows} if defaults else rows
    ordered = sorted(every, key=lambda name: (name != "INBOX", name))
    return b"".join(f'* LIST ({every[name]}) "/" {name}\r\n'.encode() for name in ordered) + \
        f"{tag} OK LIST completed\r\n".encode()


def message(subject: str, sender: str = "Bob <bob@far.test>", date: str = "Mon, 1 Jan 2024 10:00:00 +0000",
            *, extra: bytes = b"", body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\nDate: {date}\r\n".encode()
            + extra + b"\r\n" + body)


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def serving(store: Container, *users: str) -> Iterator[RunningImap]:
    for user in users or (ALICE,):
        add_user(store, user)
    with running_imap(store) as server:
        yield server


@contextmanager
def connected(server: RunningImap, user: str | None = ALICE) -> Iterator[RawImap]:
    client = RawImap(server.imap)
    try:
        if user is not None:
            client.login(user)
        yield client
    finally:
        client.close()


@contextmanager
def logged_in(store: Container) -> Iterator[RawImap]:
    """Alice, logged in on a fresh server."""
    with serving(store) as server, connected(server) as client:
        yield client


def append(client: RawImap, raw: bytes, mailbox: str = "INBOX", flags: str = "", date: str = "",
           tag: str = "AP") -> bytes:
    head = " ".join(p for p in (f"{tag} APPEND {mailbox}", f"({flags})" if flags else "",
                                f'"{date}"' if date else "") if p)
    client.send(head.encode() + b" {%d+}\r\n" % len(raw) + raw + b"\r\n")
    return client.until_tagged(tag)


def appended(client: RawImap, *messages: bytes, mailbox: str = "INBOX") -> None:
    for raw in messages:
        reply = append(client, raw, mailbox)
        assert reply.startswith(b"AP OK [APPENDUID "), reply


def status(client: RawImap, mailbox: str, items: str) -> dict[str, str]:
    reply = client.command("ST", f"STATUS {mailbox} ({items})")
    match = re.fullmatch(rb"\* STATUS \S+ \((.*)\)\r\nST OK STATUS completed\r\n", reply, re.S)
    assert match, reply
    return {k.decode(): v.decode().strip("()") for k, v in re.findall(rb"([A-Z]+) (\([^)]*\)|\d+)", match[1])}


def mailbox_id(client: RawImap, mailbox: str) -> str:
    return status(client, mailbox, "MAILBOXID")["MAILBOXID"]


def create_ok(tag: str, object_id: str) -> bytes:
    """CREATE's tagged OK names the new mailbox's MAILBOXID (RFC 8474 §4.1)."""
    return f"{tag} OK [MAILBOXID ({object_id})] CREATE completed\r\n".encode()


def modseqs(client: RawImap, numbers: str = "1:*") -> dict[int, int]:
    """Sequence number -> MODSEQ (the FETCH turns CONDSTORE on, RFC 7162 §3.1)."""
    reply = client.command("MS", f"FETCH {numbers} (MODSEQ)")
    assert reply.endswith(b"MS OK FETCH completed\r\n"), reply
    return {int(seq): int(value) for seq, value in re.findall(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", reply)}


def item(label: bytes, data: bytes) -> bytes:
    """A FETCH data item whose value is a literal: ``label {n}`` CRLF data."""
    return label + b" {%d}\r\n" % len(data) + data


def done(tag: str, verb: str = "FETCH") -> bytes:
    return f"{tag} OK {verb} completed\r\n".encode()


def capabilities(line: bytes) -> list[str]:
    match = re.search(rb"CAPABILITY ([^\]\r]+)", line)
    assert match, line
    return match[1].decode().split()


def plain_response(user: str, password: str = PASSWORD) -> str:
    return base64.b64encode(b"\x00" + user.encode() + b"\x00" + password.encode()).decode()


class Deflated:
    """A socket stand-in speaking RFC 4978 DEFLATE (raw deflate, wbits -15, each send
    ending with Z_SYNC_FLUSH), so ``RawImap`` reads and writes through it unchanged."""

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.wire_in = 0

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))  # type: ignore[attr-defined]

    def recv(self, size: int) -> bytes:
        while True:
            chunk = self.sock.recv(size)  # type: ignore[attr-defined]
            if not chunk:
                return b""
            self.wire_in += len(chunk)
            data = self.inflate.decompress(chunk)
            if data:
                return data

    def close(self) -> None:
        self.sock.close()  # type: ignore[attr-defined]


# -- any state: CAPABILITY, NOOP, LOGOUT, ID --------------------------------------------


def test_capability_before_login_offers_auth_plain_and_starttls_and_no_logindisabled_on_loopback(
        store: Container) -> None:
    with serving(store) as server, connected(server, None) as client:
        greeting = client.greeting
        reply = client.command("c1", "CAPABILITY")
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ") and greeting.endswith(b"\r\n")
    assert reply.endswith(b"\r\nc1 OK CAPABILITY completed\r\n")
    assert reply.count(b"\r\n") == 2 and reply.startswith(b"* CAPABILITY IMAP4rev1 ")
    listed = capabilities(reply)
    assert listed == capabilities(greeting)
    assert listed[:2] == ["IMAP4rev1", "IMAP4rev2"]
    for name in ("AUTH=PLAIN", "STARTTLS", "SASL-IR", "LITERAL+", "ENABLE", "ID", "UNAUTHENTICATE"):
        assert name in listed, name
    assert "LOGINDISABLED" not in listed  # 127.0.0.1 counts as secure
    assert f"APPENDLIMIT={store.settings.max_message_bytes}" in listed


def test_capability_after_login_drops_auth_and_starttls_and_equals_the_list_in_the_login_ok(
        store: Container) -> None:
    with serving(store) as server, connected(server, None) as client:
        login = client.command("l1", f'LOGIN "{ALICE}" "{PASSWORD}"')
        reply = client.command("c1", "CAPABILITY")
    assert re.fullmatch(rb"l1 OK \[CAPABILITY [^\]]+\] logged in\r\n", login), login
    listed = capabilities(reply)
    assert listed == capabilities(login)
    assert not [name for name in listed if name.startswith("AUTH=") or name in ("STARTTLS", "LOGINDISABLED")]
    for name in ("IDLE", "MOVE", "UIDPLUS", "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "SORT",
                 "THREAD=REFERENCES", "BINARY", "MULTIAPPEND", "SPECIAL-USE", "LIST-STATUS",
                 "OBJECTID", "PREVIEW", "QUOTA", "UTF8=ACCEPT", "COMPRESS=DEFLATE", "NAMESPACE"):
        assert name in listed, name


def test_noop_answers_ok_before_login_after_login_and_with_a_mailbox_selected(store: Container) -> None:
    with serving(store) as server, connected(server, None) as client:
        before = client.command("n1", "NOOP")
        client.login(ALICE)
        authenticated = client.command("n2", "NOOP")
        client.command("s1", "SELECT INBOX")
        selected = client.command("n3", "NOOP")
        with_argument = client.command("n4", "NOOP now")
    assert (before, authenticated, selected) == (b"n1 OK NOOP completed\r\n", b"n2 OK NOOP completed\r\n",
                                                 b"n3 OK NOOP completed\r\n")
    assert with_argument == b"n4 BAD NOOP takes no arguments\r\n"


def test_logout_says_bye_then_the_tagged_ok_then_closes_the_connection(store: Container) -> None:
    with serving(store) as server:
        with connected(server, None) as client:
            before_login = client.command("z1", "LOGOUT")
            rest = client.closed_within(5)
        with connected(server) as client:
            client.command("s1", "SELECT INBOX")
            selected = client.command("z2", "LOGOUT")
            rest_selected = client.closed_within(5)
    assert before_login == b"* BYE logging out\r\nz1 OK LOGOUT completed\r\n"
    assert selected == b"* BYE logging out\r\nz2 OK LOGOUT completed\r\n"
    assert rest == rest_selected == b""


def test_id_answers_with_the_server_name_only_and_refuses_an_odd_list(store: Container) -> None:
    with serving(store) as server, connected(server, None) as client:
        nil = client.command("i1", "ID NIL")
        pairs = client.command("i2", 'ID ("name" "test-client" "version" "1.0")')
        odd = client.command("i3", 'ID ("name")')
    assert nil == b'* ID ("name" "ledgermail")\r\ni1 OK ID completed\r\n'
    assert pairs == b'* ID ("name" "ledgermail")\r\ni2 OK ID completed\r\n'
    assert odd == b"i3 BAD ID takes at most 30 field-value pairs\r\n"


# -- not authenticated: LOGIN, AUTHENTICATE ------------------------------------------------


def test_login_with_the_right_password_succeeds_and_a_wrong_password_or_unknown_user_fail_alike(
        store: Container) -> None:
    store.settings.auth.failure_delay = 0.0  # the growing delay is the abuse tests' subject
    with serving(store) as server, connected(server, None) as client:
        wrong = client.command("l1", f'LOGIN "{ALICE}" "not the password"')
        unknown = client.command("l2", f'LOGIN "nobody@example.test" "{PASSWORD}"')
        still_out = client.command("s1", "SELECT INBOX")
        right = client.command("l3", f"LOGIN {ALICE} {{{len(PASSWORD)}+}}\r\n{PASSWORD}")
        selected = client.command("s2", "SELECT INBOX")
    assert wrong == b"l1 NO [AUTHENTICATIONFAILED] invalid credentials\r\n"
    assert unknown == b"l2 NO [AUTHENTICATIONFAILED] invalid credentials\r\n"
    assert still_out == b"s1 BAD SELECT is not valid in the not authenticated state\r\n"
    assert right.startswith(b"l3 OK [CAPABILITY IMAP4rev1 ") and right.endswith(b"] logged in\r\n")
    assert selected.endswith(b"s2 OK [READ-WRITE] SELECT completed\r\n")


def test_authenticate_plain_with_an_initial_response_logs_in(store: Container) -> None:
    with serving(store) as server, connected(server, None) as client:
        reply = client.command("a1", "AUTHENTICATE PLAIN " + plain_response(ALICE))
        selected = client.command("s1", "SELECT INBOX")
    assert re.fullmatch(rb"a1 OK \[CAPABILITY IMAP4rev1 [^\]]+\] logged in\r\n", reply), reply
    assert b"AUTH=" not in reply
    assert selected.endswith(b"s1 OK [READ-WRITE] SELECT completed\r\n")


def test_authenticate_plain_with_a_continuation_logs_in_and_a_wrong_password_fails(store: Container) -> None:
    store.settings.auth.failure_delay = 0.0
    with serving(store) as server, connected(server, None) as client:
        client.send("a1 AUTHENTICATE PLAIN\r\n")
        first = client.line()
        client.send(plain_response(ALICE, "wrong") + "\r\n")
        failed = client.until_tagged("a1")
        client.send("a2 AUTHENTICATE PLAIN\r\n")
        second = client.line()
        client.send(plain_response(ALICE) + "\r\n")
        reply = client.until_tagged("a2")
        selected = client.command("s1", "SELECT INBOX")
    assert first == second == b"+ \r\n"
    assert failed == b"a1 NO [AUTHENTICATIONFAILED] invalid credentials\r\n"
    assert re.fullmatch(rb"a2 OK \[CAPABILITY IMAP4rev1 [^\]]+\] logged in\r\n", reply), reply
    assert selected.endswith(b"s1 OK [READ-WRITE] SELECT completed\r\n")


def test_commands_outside_their_state_are_bad_and_change_nothing(store: Container) -> None:
    with serving(store) as server:
        with connected(server, None) as client:
            # Two only: the third BAD before login ends the connection.
            not_authenticated = [client.command("b1", 'LIST "" "*"'), client.command("b2", "FETCH 1 FLAGS")]
        with connected(server) as client:
            authenticated = [client.command(f"c{i}", text) for i, text in enumerate(
                (f'LOGIN "{ALICE}" "{PASSWORD}"', "AUTHENTICATE PLAIN", "STARTTLS", "FETCH 1 FLAGS",
                 "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "CLOSE", "CHECK", "SEARCH ALL", "UID FETCH 1 FLAGS",
                 "XYZZY"))]
            client.command("s1", "SELECT INBOX")
            selected = [client.command("d1", f'LOGIN "{ALICE}" "{PASSWORD}"'),
                        client.command("d2", "STARTTLS")]
            still = client.command("d3", "CHECK")
    assert not_authenticated == [b"b1 BAD LIST is not valid in the not authenticated state\r\n",
                                 b"b2 BAD FETCH is not valid in the not authenticated state\r\n"]
    names = ["LOGIN", "AUTHENTICATE", "STARTTLS", "FETCH", "STORE", "EXPUNGE", "CLOSE", "CHECK", "SEARCH",
             "UID"]
    assert authenticated == [f"c{i} BAD {name} is not valid in the authenticated state\r\n".encode()
                             for i, name in enumerate(names)] + [b"c10 BAD unknown command XYZZY\r\n"]
    assert selected == [b"d1 BAD LOGIN is not valid in the selected state\r\n",
                        b"d2 BAD STARTTLS is not valid in the selected state\r\n"]
    assert still == b"d3 OK CHECK completed\r\n"


# -- ENABLE, NAMESPACE -------------------------------------------------------------------


def test_enable_reports_only_what_it_newly_turned_on(store: Container) -> None:
    with logged_in(store) as client:
        condstore = client.command("e1", "ENABLE CONDSTORE")
        both = client.command("e2", "ENABLE QRESYNC UTF8=ACCEPT")
        again = client.command("e3", "ENABLE CONDSTORE QRESYNC X-UNKNOWN")
        not_atoms = client.command("e4", 'ENABLE "CONDSTORE"')
    assert condstore == b"* ENABLED CONDSTORE\r\ne1 OK ENABLE completed\r\n"
    assert both == b"* ENABLED QRESYNC UTF8=ACCEPT\r\ne2 OK ENABLE completed\r\n"
    assert again == b"* ENABLED\r\ne3 OK ENABLE completed\r\n"
    assert not_atoms == b"e4 BAD ENABLE takes capability names\r\n"


def test_namespace_is_one_personal_namespace_with_the_slash_delimiter(store: Container) -> None:
    with logged_in(store) as client:
        reply = client.command("n1", "NAMESPACE")
    assert reply == b'* NAMESPACE (("" "/")) NIL NIL\r\nn1 OK NAMESPACE completed\r\n'


# -- SELECT, EXAMINE ---------------------------------------------------------------------


def test_select_reports_exists_flags_permanentflags_uidvalidity_uidnext_and_highestmodseq_read_write(
        store: Container) -> None:
    with logged_in(store) as client:
        assert append(client, message("one"), flags="\\Seen $Label").startswith(b"AP OK")
        assert append(client, message("two")).startswith(b"AP OK")
        values = status(client, "INBOX", "UIDVALIDITY UIDNEXT HIGHESTMODSEQ MAILBOXID")
        reply = client.command("s1", "SELECT INBOX")
    expected = (b"* 2 EXISTS\r\n* 0 RECENT\r\n"
                b"* FLAGS (" + SYSTEM_FLAGS.encode() + b" $Label)\r\n"
                b"* OK [PERMANENTFLAGS (" + SYSTEM_FLAGS.encode() + b" $Label \\*)] flags are kept\r\n"
                b"* OK [UNSEEN 2] first unseen message\r\n"
                + f"* OK [UIDVALIDITY {values['UIDVALIDITY']}] UIDs valid\r\n"
                  f"* OK [UIDNEXT 3] predicted next UID\r\n"
                  f"* OK [HIGHESTMODSEQ {values['HIGHESTMODSEQ']}] highest\r\n"
                  f"* OK [MAILBOXID ({values['MAILBOXID']})] mailbox id\r\n".encode()
                + b"s1 OK [READ-WRITE] SELECT completed\r\n")
    assert reply == expected
    assert values["UIDNEXT"] == "3" and int(values["HIGHESTMODSEQ"]) >= 2


def test_examine_is_read_only_with_no_permanent_flags_refuses_store_and_fetch_body_leaves_seen_alone(
        store: Container) -> None:
    with logged_in(store) as client:
        appended(client, message("one"))
        values = status(client, "INBOX", "UIDVALIDITY HIGHESTMODSEQ MAILBOXID")
        reply = client.command("x1", "EXAMINE INBOX")
        refused = client.command("x2", "STORE 1 +FLAGS (\\Flagged)")
        body = client.command("x3", "FETCH 1 BODY[]")
        flags = client.command("x4", "FETCH 1 FLAGS")
        expunge = client.command("x5", "EXPUNGE")
    assert reply == (b"* 1 EXISTS\r\n* 0 RECENT\r\n* FLAGS (" + SYSTEM_FLAGS.encode() + b")\r\n"
                     b"* OK [PERMANENTFLAGS ()] flags are kept\r\n* OK [UNSEEN 1] first unseen message\r\n"
                     + f"* OK [UIDVALIDITY {values['UIDVALIDITY']}] UIDs valid\r\n"
                       f"* OK [UIDNEXT 2] predicted next UID\r\n"
                       f"* OK [HIGHESTMODSEQ {values['HIGHESTMODSEQ']}] highest\r\n"
                       f"* OK [MAILBOXID ({values['MAILBOXID']})] mailbox id\r\n".encode()
                     + b"x1 OK [READ-ONLY] EXAMINE completed\r\n")
    assert refused == b"x2 NO [READ-ONLY] the mailbox is read-only (EXAMINE)\r\n"
    raw = message("one")
    assert body == b"* 1 FETCH (BODY[] {%d}\r\n" % len(raw) + raw + b")\r\nx3 OK FETCH completed\r\n"
    assert flags == b"* 1 FETCH (FLAGS ())\r\nx4 OK FETCH completed\r\n"
    assert expunge == b"x5 NO [READ-ONLY] the mailbox is read-only (EXAMINE)\r\n"


def test_select_of_a_missing_mailbox_is_nonexistent_and_leaves_no_mailbox_selected(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, message("one"))
        client.command("s1", "SELECT INBOX")
        missing = client.command("s2", "SELECT Nowhere")
        fetch = client.command("f1", "FETCH 1 FLAGS")
        examine = client.command("s3", "EXAMINE Nowhere/Deeper")
    assert missing == b"s2 NO [NONEXISTENT] no mailbox named 'Nowhere'\r\n"
    assert fetch == b"f1 BAD FETCH is not valid in the authenticated state\r\n"
    assert examine == b"s3 NO [NONEXISTENT] no mailbox named 'Nowhere/Deeper'\r\n"


# -- CREATE, DELETE, RENAME --------------------------------------------------------------


def test_create_makes_the_missing_parents_refuses_an_existing_name_and_takes_a_special_use(
        store: Container) -> None:
    with logged_in(store) as client:
        deep = client.command("c1", "CREATE Projects/2024/Q1")
        exists = client.command("c2", "CREATE Projects/2024")
        inbox = client.command("c3", "CREATE INBOX")
        sent = client.command("c4", "CREATE Outgoing (USE (\\Sent))")
        unknown_use = client.command("c5", "CREATE Other (USE (\\Important))")
        trailing = client.command("c6", "CREATE Later/")
        listing = client.command("l1", 'LIST "" "*"')
        ids = {name: mailbox_id(client, name) for name in ("Projects/2024/Q1", "Outgoing", "Later")}
    assert deep == create_ok("c1", ids["Projects/2024/Q1"])
    assert len(set(ids.values())) == 3
    assert exists == b"c2 NO [ALREADYEXISTS] mailbox 'Projects/2024' already exists\r\n"
    assert inbox == b"c3 NO [ALREADYEXISTS] INBOX already exists\r\n"
    assert sent == create_ok("c4", ids["Outgoing"])
    assert unknown_use == b"c5 NO [USEATTR] unknown special-use attribute \\Important\r\n"
    assert trailing == create_ok("c6", ids["Later"])
    assert listing == listing_of("l1", {"Later": "\\HasNoChildren", "Outgoing": "\\Sent \\HasNoChildren",
                                        "Projects": "\\HasChildren", "Projects/2024": "\\HasChildren",
                                        "Projects/2024/Q1": "\\HasNoChildren"})


def test_delete_keeps_the_children_of_a_mailbox_and_refuses_inbox_and_a_bare_level(
        store: Container) -> None:
    """RFC 9051 §6.3.5: deleting a mailbox with inferiors removes it and its messages but
    not the inferiors; its name stays as a level above them, which alone cannot be deleted."""
    with logged_in(store) as client:
        client.command("c1", "CREATE Work/Old")
        appended(client, message("in the parent"), mailbox="Work")
        parent = client.command("d1", "DELETE Work")
        level = client.command("l0", 'LIST "" "Work*"')
        gone = client.command("s1", "STATUS Work (MESSAGES)")
        bare = client.command("d1b", "DELETE Work")
        inbox = client.command("d2", "DELETE inbox")
        leaf = client.command("d3", "DELETE Work/Old")
        leaf_gone = client.command("d4", "STATUS Work/Old (MESSAGES)")
        missing = client.command("d5", "DELETE Work/Old")
        level_gone = client.command("d6", "DELETE Work")
        listing = client.command("l1", 'LIST "" "*"')
    assert parent == b"d1 OK DELETE completed\r\n"
    assert level == (b'* LIST (\\NonExistent \\HasChildren) "/" Work\r\n'
                     b'* LIST (\\HasNoChildren) "/" Work/Old\r\nl0 OK LIST completed\r\n')
    assert gone == b"s1 NO [NONEXISTENT] no mailbox named 'Work'\r\n"
    assert bare == b"d1b NO [HASCHILDREN] mailbox 'Work' has child mailboxes; delete them first\r\n"
    assert inbox == b"d2 NO [CANNOT] INBOX cannot be deleted\r\n"
    assert leaf == b"d3 OK DELETE completed\r\n"
    assert leaf_gone == b"d4 NO [NONEXISTENT] no mailbox named 'Work/Old'\r\n"
    assert missing.startswith(b"d5 NO [NONEXISTENT] ")
    assert level_gone.startswith(b"d6 NO [NONEXISTENT] ")
    assert listing == listing_of("l1", {})


def test_rename_moves_the_children_with_the_mailbox_and_keeps_the_messages(store: Container) -> None:
    with logged_in(store) as client:
        client.command("c1", "CREATE Work/Clients/Acme")
        appended(client, message("acme"), mailbox="Work/Clients/Acme")
        before = status(client, "Work/Clients/Acme", "MESSAGES UIDVALIDITY MAILBOXID")
        reply = client.command("r1", "RENAME Work Job")
        listing = client.command("l1", 'LIST "" "Job*"')
        old = client.command("l2", 'LIST "" "Work*"')
        after = status(client, "Job/Clients/Acme", "MESSAGES UIDVALIDITY MAILBOXID")
        taken = client.command("r2", "RENAME Job Archive")
        to_inbox = client.command("r3", "RENAME Job INBOX")
    assert reply == b"r1 OK RENAME completed\r\n"
    assert listing == (b'* LIST (\\HasChildren) "/" Job\r\n* LIST (\\HasChildren) "/" Job/Clients\r\n'
                       b'* LIST (\\HasNoChildren) "/" Job/Clients/Acme\r\nl1 OK LIST completed\r\n')
    assert old == b"l2 OK LIST completed\r\n"
    assert after == before and after["MESSAGES"] == "1"
    assert taken == b"r2 NO [ALREADYEXISTS] mailbox 'Archive' already exists\r\n"
    assert to_inbox == b"r3 NO [ALREADYEXISTS] INBOX already exists\r\n"


def test_rename_inbox_moves_its_messages_to_the_new_mailbox_and_leaves_inbox_empty(store: Container) -> None:
    with logged_in(store) as client:
        first, second = message("first"), message("second", extra=b"X-N: 2\r\n")
        appended(client, first, second)
        before = status(client, "INBOX", "MESSAGES UIDNEXT UIDVALIDITY")
        reply = client.command("r1", "RENAME INBOX Old-Inbox")
        inbox = status(client, "INBOX", "MESSAGES UIDNEXT UIDVALIDITY")
        moved = status(client, "Old-Inbox", "MESSAGES")
        client.command("s1", "EXAMINE Old-Inbox")
        bodies = client.command("f1", "FETCH 1:* BODY.PEEK[]")
    assert reply == b"r1 OK RENAME completed\r\n"
    assert inbox == {"MESSAGES": "0", "UIDNEXT": before["UIDNEXT"], "UIDVALIDITY": before["UIDVALIDITY"]}
    assert moved == {"MESSAGES": "2"}
    assert bodies == (b"* 1 FETCH (" + item(b"BODY[]", first) + b")\r\n"
                      b"* 2 FETCH (" + item(b"BODY[]", second) + b")\r\n" + done("f1"))


# -- SUBSCRIBE, UNSUBSCRIBE, LSUB -------------------------------------------------------


def test_subscribe_unsubscribe_and_lsub_follow_each_other(store: Container) -> None:
    with logged_in(store) as client:
        client.command("c1", "CREATE Lists/Python")
        unsubscribe = client.command("u1", "UNSUBSCRIBE Lists/Python")
        lsub = client.command("l1", 'LSUB "" "Lists*"')
        subscribe = client.command("s1", "SUBSCRIBE Lists/Python")
        lsub_again = client.command("l2", 'LSUB "" "Lists/%"')
        missing = client.command("s2", "SUBSCRIBE Nowhere")
        unsubscribe_missing = client.command("u2", "UNSUBSCRIBE Nowhere")
    assert unsubscribe == b"u1 OK UNSUBSCRIBE completed\r\n"
    assert lsub == b'* LSUB (\\Subscribed) "/" Lists\r\nl1 OK LSUB completed\r\n'
    assert subscribe == b"s1 OK SUBSCRIBE completed\r\n"
    assert lsub_again == b'* LSUB (\\Subscribed) "/" Lists/Python\r\nl2 OK LSUB completed\r\n'
    assert missing == b"s2 NO [NONEXISTENT] no mailbox named 'Nowhere'\r\n"
    assert unsubscribe_missing == b"u2 OK UNSUBSCRIBE completed\r\n"


# -- LIST ------------------------------------------------------------------------------


def test_list_with_star_lists_every_level_and_percent_stops_at_the_delimiter(store: Container) -> None:
    with logged_in(store) as client:
        client.command("c1", "CREATE Work/Clients")
        star = client.command("l1", 'LIST "" "*"')
        percent = client.command("l2", 'LIST "" "%"')
        below = client.command("l3", 'LIST "" "Work/%"')
        reference = client.command("l4", 'LIST "Work/" "%"')
        nothing = client.command("l5", 'LIST "" "Nope*"')
    work = {"Work": "\\HasChildren"}
    clients = b'* LIST (\\HasNoChildren) "/" Work/Clients\r\n'
    assert star == listing_of("l1", {**work, "Work/Clients": "\\HasNoChildren"})
    assert percent == listing_of("l2", work)
    assert below == clients + b"l3 OK LIST completed\r\n"
    assert reference == clients + b"l4 OK LIST completed\r\n"
    assert nothing == b"l5 OK LIST completed\r\n"


def test_list_return_children_special_use_and_status_gives_a_status_after_each_mailbox(
        store: Container) -> None:
    with logged_in(store) as client:
        client.command("c1", "CREATE Work/Clients")
        appended(client, message("one"), message("two"))
        append(client, message("seen"), flags="\\Seen")
        appended(client, message("sent"), mailbox="Sent")
        reply = client.command("l1", 'LIST "" "*" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))')
    rows = [("INBOX", "\\HasNoChildren", 3, 2), ("Archive", "\\Archive \\HasNoChildren", 0, 0),
            ("Drafts", "\\Drafts \\HasNoChildren", 0, 0), ("Junk", "\\Junk \\HasNoChildren", 0, 0),
            ("Sent", "\\Sent \\HasNoChildren", 1, 1), ("Trash", "\\Trash \\HasNoChildren", 0, 0),
            ("Work", "\\HasChildren", 0, 0), ("Work/Clients", "\\HasNoChildren", 0, 0)]
    assert reply == b"".join(f'* LIST ({attributes}) "/" {name}\r\n'
                             f"* STATUS {name} (MESSAGES {messages} UNSEEN {unseen})\r\n".encode()
                             for name, attributes, messages, unseen in rows) + b"l1 OK LIST completed\r\n"


def test_list_subscribed_selects_only_subscribed_mailboxes_and_marks_them(store: Container) -> None:
    with logged_in(store) as client:
        client.command("c1", "CREATE Quiet")
        client.command("c2", "CREATE Loud")
        client.command("u1", "UNSUBSCRIBE Quiet")
        client.command("u2", "UNSUBSCRIBE Junk")
        reply = client.command("l1", 'LIST (SUBSCRIBED) "" "*"')
        returned = client.command("l2", 'LIST "" "*" RETURN (SUBSCRIBED)')
    assert reply == (b'* LIST (\\Subscribed \\HasNoChildren) "/" INBOX\r\n'
                     b'* LIST (\\Subscribed \\Archive \\HasNoChildren) "/" Archive\r\n'
                     b'* LIST (\\Subscribed \\Drafts \\HasNoChildren) "/" Drafts\r\n'
                     b'* LIST (\\Subscribed \\HasNoChildren) "/" Loud\r\n'
                     b'* LIST (\\Subscribed \\Sent \\HasNoChildren) "/" Sent\r\n'
                     b'* LIST (\\Subscribed \\Trash \\HasNoChildren) "/" Trash\r\n'
                     b"l1 OK LIST completed\r\n")
    assert returned == (b'* LIST (\\Subscribed \\HasNoChildren) "/" INBOX\r\n'
                        b'* LIST (\\Subscribed \\Archive \\HasNoChildren) "/" Archive\r\n'
                        b'* LIST (\\Subscribed \\Drafts \\HasNoChildren) "/" Drafts\r\n'
                        b'* LIST (\\Junk \\HasNoChildren) "/" Junk\r\n'
                        b'* LIST (\\Subscribed \\HasNoChildren) "/" Loud\r\n'
                        b'* LIST (\\HasNoChildren) "/" Quiet\r\n'
                        b'* LIST (\\Subscribed \\Sent \\HasNoChildren) "/" Sent\r\n'
                        b'* LIST (\\Subscribed \\Trash \\HasNoChildren) "/" Trash\r\n'
                        b"l2 OK LIST completed\r\n")


def test_list_special_use_selects_only_special_use_mailboxes(store: Container) -> None:
    with logged_in(store) as client:
        client.command("c1", "CREATE Plain")
        client.command("c2", "CREATE Outgoing (USE (\\Sent))")
        reply = client.command("l1", 'LIST (SPECIAL-USE) "" "*"')
    assert reply == (b'* LIST (\\Archive \\HasNoChildren) "/" Archive\r\n'
                     b'* LIST (\\Drafts \\HasNoChildren) "/" Drafts\r\n'
                     b'* LIST (\\Junk \\HasNoChildren) "/" Junk\r\n'
                     b'* LIST (\\Sent \\HasNoChildren) "/" Outgoing\r\n'
                     b'* LIST (\\Sent \\HasNoChildren) "/" Sent\r\n'
                     b'* LIST (\\Trash \\HasNoChildren) "/" Trash\r\n'
                     b"l1 OK LIST completed\r\n")


def test_list_with_an_empty_pattern_returns_the_noselect_root_and_the_delimiter(store: Container) -> None:
    with logged_in(store) as client:
        reply = client.command("l1", 'LIST "" ""')
        with_reference = client.command("l2", 'LIST "Work" ""')
    assert reply == b'* LIST (\\Noselect) "/" ""\r\nl1 OK LIST completed\r\n'
    assert with_reference == b'* LIST (\\Noselect) "/" ""\r\nl2 OK LIST completed\r\n'


# -- mailbox names -----------------------------------------------------------------------


def test_mailbox_names_with_dot_levels_an_empty_level_control_characters_or_bad_utf7_are_refused(
        store: Container) -> None:
    refused = {
        "n1": b"CREATE ..",
        "n2": b"CREATE a/../b",
        "n3": b"CREATE a/./b",
        "n4": b"CREATE /leading",
        "n5": b"CREATE a//b",
        "n6": b'CREATE "a\x01b"',
        "n7": b"CREATE &Jjo",  # a shift never closed
        "n8": b"CREATE &AGE-",  # printable ASCII ("a") must not be encoded
        "n9": b'CREATE "Caf\xc3\xa9"',  # 8-bit without UTF8=ACCEPT
    }
    with logged_in(store) as client:
        replies = {tag: client.command(tag, text) for tag, text in refused.items()}
        client.command("e1", "ENABLE UTF8=ACCEPT")
        client.send(b"u1 CREATE {3+}\r\na\x01b\r\n")
        control = client.until_tagged("u1")
        client.send(b"u2 CREATE {6+}\r\nx\xe2\x80\xa8y\r\n")  # U+2028 LINE SEPARATOR
        separator = client.until_tagged("u2")
        listing = client.command("l1", 'LIST "" "*"')
    for tag, reply in replies.items():
        assert reply.startswith(tag.encode() + b" NO [CANNOT] invalid mailbox name"), (refused[tag], reply)
        assert reply.count(b"\r\n") == 1
    assert control.startswith(b"u1 NO [CANNOT] invalid mailbox name") and control.count(b"\r\n") == 1
    assert separator.startswith(b"u2 NO [CANNOT] invalid mailbox name") and separator.count(b"\r\n") == 1
    assert listing == listing_of("l1", {})


def test_inbox_is_case_insensitive_in_every_command(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, message("one"))
        selected = client.command("s1", "SELECT inbox")
        state = client.command("s2", "STATUS iNbOx (MESSAGES)")
        create = client.command("c1", "CREATE Inbox")
        child = client.command("c2", "CREATE inbox/Sub")
        listing = client.command("l1", 'LIST "" "inbox*"')
        sub_id = mailbox_id(client, "INBOX/Sub")
    assert selected.startswith(b"* 1 EXISTS\r\n")
    assert selected.endswith(b"s1 OK [READ-WRITE] SELECT completed\r\n")
    assert state == b"* STATUS INBOX (MESSAGES 1)\r\ns2 OK STATUS completed\r\n"
    assert create == b"c1 NO [ALREADYEXISTS] INBOX already exists\r\n"
    assert child == create_ok("c2", sub_id)
    assert listing == (b'* LIST (\\HasChildren) "/" INBOX\r\n* LIST (\\HasNoChildren) "/" INBOX/Sub\r\n'
                       b"l1 OK LIST completed\r\n")


def test_a_non_ascii_name_is_utf8_with_utf8_accept_and_modified_utf7_without(store: Container) -> None:
    utf8 = "Été/Köln".encode()
    with serving(store) as server:
        with connected(server) as client:
            created = client.command("c1", b"CREATE &AMk-t&AOk-/K&APY-ln")
            utf7_list = client.command("l1", 'LIST "" "*ln"')
            utf7_status = client.command("s1", "STATUS &AMk-t&AOk-/K&APY-ln (MESSAGES)")
            koeln_id = mailbox_id(client, "&AMk-t&AOk-/K&APY-ln")
        with connected(server) as client:
            enabled = client.command("e1", "ENABLE UTF8=ACCEPT")
            utf8_list = client.command("l2", 'LIST "" "*ln"')
            utf8_select = client.command("s2", b'SELECT "' + utf8 + b'"')
            client.send(b"c2 CREATE {%d+}\r\n" % len("Ärger".encode()) + "Ärger".encode() + b"\r\n")
            literal_create = client.until_tagged("c2")
            aerger_id = status(client, '"' + "Ärger" + '"', "MAILBOXID")["MAILBOXID"]
        with connected(server) as client:
            seen_in_utf7 = client.command("l3", 'LIST "" "&AMQ-*"')
    assert created == create_ok("c1", koeln_id)
    assert utf7_list == b'* LIST (\\HasNoChildren) "/" &AMk-t&AOk-/K&APY-ln\r\nl1 OK LIST completed\r\n'
    assert utf7_status == b"* STATUS &AMk-t&AOk-/K&APY-ln (MESSAGES 0)\r\ns1 OK STATUS completed\r\n"
    assert enabled == b"* ENABLED UTF8=ACCEPT\r\ne1 OK ENABLE completed\r\n"
    assert utf8_list == b'* LIST (\\HasNoChildren) "/" "' + utf8 + b'"\r\nl2 OK LIST completed\r\n'
    assert utf8_select.endswith(b"s2 OK [READ-WRITE] SELECT completed\r\n")
    assert literal_create == create_ok("c2", aerger_id)
    assert seen_in_utf7 == b'* LIST (\\HasNoChildren) "/" &AMQ-rger\r\nl3 OK LIST completed\r\n'


# -- STATUS ------------------------------------------------------------------------------


def test_status_reports_messages_uidnext_uidvalidity_unseen_deleted_size_highestmodseq_and_mailboxid(
        store: Container) -> None:
    one, two, three = message("one"), message("two", body=b"Longer body.\r\n" * 4), message("three")
    with logged_in(store) as client:
        append(client, one, flags="\\Seen")
        append(client, two, flags="\\Deleted")
        append(client, three)
        selected = client.command("s1", "SELECT INBOX")
        highest = re.search(rb"HIGHESTMODSEQ (\d+)", selected)[1].decode()  # type: ignore[index]
        mailbox_id = re.search(rb"MAILBOXID \((\w+)\)", selected)[1].decode()  # type: ignore[index]
        uidvalidity = re.search(rb"UIDVALIDITY (\d+)", selected)[1].decode()  # type: ignore[index]
        client.command("u1", "UNSELECT")
        reply = client.command("t1", "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE "
                                     "HIGHESTMODSEQ MAILBOXID)")
        empty = client.command("t2", "STATUS Trash (MESSAGES UNSEEN SIZE)")
        unknown = client.command("t3", "STATUS INBOX (MESSAGES COLOUR)")
        missing = client.command("t4", "STATUS Nowhere (MESSAGES)")
    size = len(one) + len(two) + len(three)
    assert reply == (f"* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY {uidvalidity} UNSEEN 2 DELETED 1 "
                     f"SIZE {size} HIGHESTMODSEQ {highest} MAILBOXID ({mailbox_id}))\r\n"
                     f"t1 OK STATUS completed\r\n").encode()
    assert empty == b"* STATUS Trash (MESSAGES 0 UNSEEN 0 SIZE 0)\r\nt2 OK STATUS completed\r\n"
    assert unknown == b"t3 BAD unknown STATUS item COLOUR\r\n"
    assert missing == b"t4 NO [NONEXISTENT] no mailbox named 'Nowhere'\r\n"


# -- APPEND ------------------------------------------------------------------------------


def test_append_keeps_the_flags_and_the_date_and_answers_appenduid(store: Container) -> None:
    raw = message("dated")
    with logged_in(store) as client:
        uidvalidity = status(client, "Archive", "UIDVALIDITY")["UIDVALIDITY"]
        reply = append(client, raw, "Archive", flags="\\Flagged $Work", date="02-Jan-2024 10:30:00 +0100")
        client.send(b"a2 APPEND Archive {%d}\r\n" % len(raw))
        go_ahead = client.line()
        client.send(raw + b"\r\n")
        synchronizing = client.until_tagged("a2")
        client.command("x1", "EXAMINE Archive")
        fetched = client.command("f1", "FETCH 1:2 (FLAGS INTERNALDATE RFC822.SIZE)")
    assert reply == f"AP OK [APPENDUID {uidvalidity} 1] APPEND completed\r\n".encode()
    assert go_ahead == b"+ ready for literal data\r\n"
    assert synchronizing == f"a2 OK [APPENDUID {uidvalidity} 2] APPEND completed\r\n".encode()
    first, second = fetched.split(b"\r\n")[:2]
    assert first == (b'* 1 FETCH (FLAGS ($Work \\Flagged) INTERNALDATE " 2-Jan-2024 10:30:00 +0100" '
                     b"RFC822.SIZE %d)" % len(raw))
    now = rb'"[ \d]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"'
    assert re.fullmatch(rb"\* 2 FETCH \(FLAGS \(\) INTERNALDATE " + now + rb" RFC822.SIZE %d\)" % len(raw),
                        second), second


def test_append_to_a_missing_mailbox_says_trycreate_and_stores_nothing(store: Container) -> None:
    with logged_in(store) as client:
        reply = append(client, message("lost"), "Nowhere")
        listing = client.command("l1", 'LIST "" "Nowhere"')
        recent = client.command("r1", "APPEND INBOX (\\Recent) {3+}\r\nx\r\n")
        empty = status(client, "INBOX", "MESSAGES")
    assert reply == b"AP NO [TRYCREATE] no mailbox named 'Nowhere'\r\n"
    assert listing == b"l1 OK LIST completed\r\n"
    assert recent == b"r1 BAD APPEND flags are flag atoms (not \\Recent)\r\n"
    assert empty == {"MESSAGES": "0"}


def test_multiappend_stores_three_messages_in_one_command_and_answers_three_uids(store: Container) -> None:
    first, second, third = message("first"), message("second"), message("third")
    with logged_in(store) as client:
        uidvalidity = status(client, "INBOX", "UIDVALIDITY")["UIDVALIDITY"]
        client.send(b"m1 APPEND INBOX (\\Seen) {%d+}\r\n" % len(first) + first
                    + b' (\\Flagged) "03-Jan-2024 08:00:00 +0000" {%d+}\r\n' % len(second) + second
                    + b" {%d+}\r\n" % len(third) + third + b"\r\n")
        reply = client.until_tagged("m1")
        client.command("x1", "EXAMINE INBOX")
        fetched = client.command("f1", "FETCH 1:* (UID FLAGS BODY.PEEK[])")
    assert reply == f"m1 OK [APPENDUID {uidvalidity} 1:3] APPEND completed\r\n".encode()
    assert fetched == (b"* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(first) + first + b")\r\n"
                       b"* 2 FETCH (UID 2 FLAGS (\\Flagged) BODY[] {%d}\r\n" % len(second) + second + b")\r\n"
                       b"* 3 FETCH (UID 3 FLAGS () BODY[] {%d}\r\n" % len(third) + third + b")\r\n"
                       b"f1 OK FETCH completed\r\n")


# -- FETCH -------------------------------------------------------------------------------


def test_fetch_flags_uid_internaldate_size_and_envelope(store: Container) -> None:
    raw = message("Zebra", extra=b"Cc: Dora <dora@far.test>\r\nMessage-ID: <z@far.test>\r\n"
                                 b"In-Reply-To: <y@far.test>\r\n")
    with logged_in(store) as client:
        append(client, raw, flags="\\Answered", date="01-Jan-2024 10:00:00 +0000")
        client.command("s1", "SELECT INBOX")
        reply = client.command("f1", "FETCH 1 (FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE)")
        fast = client.command("f2", "FETCH 1 FAST")
        by_uid = client.command("f3", "UID FETCH 1 RFC822.SIZE")
    assert reply == (b'* 1 FETCH (UID 1 FLAGS (\\Answered) INTERNALDATE " 1-Jan-2024 10:00:00 +0000" '
                     b"RFC822.SIZE %d ENVELOPE (" % len(raw)
                     + b'"Mon, 1 Jan 2024 10:00:00 +0000" "Zebra" (("Bob" NIL "bob" "far.test")) '
                     b'(("Bob" NIL "bob" "far.test")) (("Bob" NIL "bob" "far.test")) '
                     b'((NIL NIL "alice" "example.test")) (("Dora" NIL "dora" "far.test")) NIL '
                     b'"<y@far.test>" "<z@far.test>"))\r\nf1 OK FETCH completed\r\n')
    assert fast == (b'* 1 FETCH (FLAGS (\\Answered) INTERNALDATE " 1-Jan-2024 10:00:00 +0000" '
                    b"RFC822.SIZE %d)\r\n" % len(raw) + done("f2"))
    assert by_uid == b"* 1 FETCH (UID 1 RFC822.SIZE %d)\r\nf3 OK FETCH completed\r\n" % len(raw)


def test_fetch_bodystructure_of_a_multipart_message(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, MULTIPART)
        client.command("s1", "SELECT INBOX")
        reply = client.command("f1", "FETCH 1 BODYSTRUCTURE")
    assert reply == (b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" %d 1 '
                     b'NIL NIL NIL NIL)("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" %d '
                     b'NIL ("ATTACHMENT" ("FILENAME" "a.bin")) NIL NIL) "MIXED" ("BOUNDARY" "XX") NIL NIL '
                     b"NIL))\r\n" % (len(b64(PLAIN_TEXT)) - 2, len(b64(ATTACHMENT)) - 2) + done("f1"))


def test_fetch_body_structure_without_a_section_does_not_set_seen(store: Container) -> None:
    """BODY alone is the non-extensible BODYSTRUCTURE (RFC 9051 §6.4.5), not content:
    only BODY[section] sets \\Seen."""
    with logged_in(store) as client:
        appended(client, MULTIPART)
        client.command("s1", "SELECT INBOX")
        reply = client.command("f1", "FETCH 1 BODY")
        flags = client.command("f2", "FETCH 1 FLAGS")
    assert reply == (b'* 1 FETCH (BODY (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" %d 1)'
                     b'("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" %d) "MIXED"))\r\n'
                     % (len(b64(PLAIN_TEXT)) - 2, len(b64(ATTACHMENT)) - 2)
                     + b"f1 OK FETCH completed\r\n")
    assert flags == b"* 1 FETCH (FLAGS ())\r\nf2 OK FETCH completed\r\n"


def test_fetch_body_sections_are_the_exact_stored_bytes(store: Container) -> None:
    header_end = MULTIPART.index(b"\r\n\r\n") + 4
    with logged_in(store) as client:
        appended(client, MULTIPART)
        client.command("s1", "SELECT INBOX")
        whole = client.command("f1", "FETCH 1 BODY.PEEK[]")
        subject = client.command("f2", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        part_one = client.command("f3", "FETCH 1 BODY.PEEK[1]")
        mime_two = client.command("f4", "FETCH 1 BODY.PEEK[2.MIME]")
        partial = client.command("f5", "FETCH 1 BODY.PEEK[TEXT]<0.5>")
        header = client.command("f6", "FETCH 1 RFC822.HEADER")
        no_part = client.command("f7", "FETCH 1 BODY.PEEK[3]")
        flags = client.command("f8", "FETCH 1 FLAGS")
    assert whole == b"* 1 FETCH (" + item(b"BODY[]", MULTIPART) + b")\r\n" + done("f1")
    assert subject == (b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: parts\r\n\r\n)\r\n"
                       + done("f2"))
    encoded = b64(PLAIN_TEXT)[:-2]
    assert part_one == b"* 1 FETCH (" + item(b"BODY[1]", encoded) + b")\r\n" + done("f3")
    mime = (b'Content-Type: application/octet-stream; name="a.bin"\r\n'
            b'Content-Disposition: attachment; filename="a.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n')
    assert mime_two == b"* 1 FETCH (" + item(b"BODY[2.MIME]", mime) + b")\r\n" + done("f4")
    assert partial == b"* 1 FETCH (BODY[TEXT]<0> {5}\r\nThis )\r\nf5 OK FETCH completed\r\n"
    assert header == (b"* 1 FETCH (RFC822.HEADER {%d}\r\n" % header_end + MULTIPART[:header_end]
                      + b")\r\nf6 OK FETCH completed\r\n")
    assert no_part == b"* 1 FETCH (BODY[3] NIL)\r\nf7 OK FETCH completed\r\n"
    assert flags == b"* 1 FETCH (FLAGS ())\r\nf8 OK FETCH completed\r\n"  # PEEK and RFC822.HEADER


def test_fetch_binary_decodes_a_base64_part_and_binary_size_counts_the_decoded_octets(
        store: Container) -> None:
    with logged_in(store) as client:
        appended(client, MULTIPART)
        client.command("s1", "SELECT INBOX")
        text = client.command("b1", "FETCH 1 BINARY.PEEK[1]")
        binary = client.command("b2", "FETCH 1 BINARY.PEEK[2]")
        sizes = client.command("b3", "FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2])")
        partial = client.command("b4", "FETCH 1 BINARY.PEEK[1]<10.4>")
        missing = client.command("b5", "FETCH 1 BINARY.PEEK[7]")
    assert text == b"* 1 FETCH (" + item(b"BINARY[1]", PLAIN_TEXT) + b")\r\n" + done("b1")
    # RFC 3516 §4.2: a NUL makes it a literal8.
    assert binary == b"* 1 FETCH (BINARY[2] ~{10}\r\n" + ATTACHMENT + b")\r\nb2 OK FETCH completed\r\n"
    assert sizes == b"* 1 FETCH (BINARY.SIZE[1] %d BINARY.SIZE[2] 10)\r\n" % len(PLAIN_TEXT) + done("b3")
    assert partial == b"* 1 FETCH (BINARY[1]<10> {4}\r\nfrom)\r\nb4 OK FETCH completed\r\n"
    assert missing == b"b5 NO [NONEXISTENT] no such body part\r\n"


def test_fetch_preview_modseq_and_an_emailid_that_a_copy_shares(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, MULTIPART, message("other"))
        client.command("s1", "SELECT INBOX")
        preview = client.command("p1", "FETCH 1 PREVIEW")
        lazy = client.command("p2", "FETCH 1 (PREVIEW (LAZY))")
        seqs = modseqs(client)
        ids = client.command("e1", "FETCH 1:2 EMAILID")
        client.command("c1", "COPY 1 Archive")
        client.command("x1", "EXAMINE Archive")
        copy_id = client.command("e2", "FETCH 1 EMAILID")
    assert preview == b'* 1 FETCH (PREVIEW "Greetings from Cologne. Second line.")\r\n' + done("p1")
    assert lazy == b'* 1 FETCH (PREVIEW "Greetings from Cologne. Second line.")\r\n' + done("p2")
    assert set(seqs) == {1, 2} and 0 < seqs[1] < seqs[2]
    object_id = rb"([A-Za-z0-9_-]{1,255})"  # RFC 8474 §7
    match = re.fullmatch(rb"\* 1 FETCH \(EMAILID \(" + object_id + rb"\)\)\r\n"
                         rb"\* 2 FETCH \(EMAILID \(" + object_id + rb"\)\)\r\ne1 OK FETCH completed\r\n", ids)
    assert match, ids
    assert match[1] != match[2]
    assert copy_id == b"* 1 FETCH (EMAILID (" + match[1] + b"))\r\ne2 OK FETCH completed\r\n"


def test_two_different_messages_never_share_an_emailid(store: Container) -> None:
    """RFC 8474 §5.1: EMAILID identifies one message; clients cache bodies by it. Two
    different messages of equal size, appended in the same second without Message-ID
    or Date, must still get different EMAILIDs."""
    with logged_in(store) as client:
        for raw in (b"Subject: a\r\n\r\nsame size\r\n", b"Subject: b\r\n\r\nsame size\r\n"):
            assert append(client, raw, date="01-Jan-2024 10:00:00 +0000").startswith(b"AP OK")
        client.command("s1", "SELECT INBOX")
        ids = client.command("e1", "FETCH 1:2 EMAILID")
    found = re.findall(rb"EMAILID \(([A-Za-z0-9_-]+)\)", ids)
    assert len(found) == 2, ids
    assert found[0] != found[1], ids


def test_fetch_body_without_peek_sets_seen_and_reports_the_flags_and_peek_does_not(store: Container) -> None:
    first, second = message("first"), message("second")
    with logged_in(store) as client:
        appended(client, first, second)
        client.command("s1", "SELECT INBOX")
        read = client.command("f1", "FETCH 1 BODY[]")
        again = client.command("f2", "FETCH 1 BODY[]")
        peek = client.command("f3", "FETCH 2 BODY.PEEK[]")
        text = client.command("f4", "FETCH 2 BODY[TEXT]")
        flags = client.command("f5", "FETCH 1:2 FLAGS")
        unseen = status(client, "INBOX", "UNSEEN")
    assert read == b"* 1 FETCH (FLAGS (\\Seen) " + item(b"BODY[]", first) + b")\r\n" + done("f1")
    assert again == b"* 1 FETCH (" + item(b"BODY[]", first) + b")\r\n" + done("f2")
    assert peek == b"* 2 FETCH (" + item(b"BODY[]", second) + b")\r\n" + done("f3")
    assert text == b"* 2 FETCH (FLAGS (\\Seen) BODY[TEXT] {8}\r\nHello.\r\n)\r\nf4 OK FETCH completed\r\n"
    assert flags == b"* 1 FETCH (FLAGS (\\Seen))\r\n* 2 FETCH (FLAGS (\\Seen))\r\nf5 OK FETCH completed\r\n"
    assert unseen == {"UNSEEN": "0"}


# -- STORE -------------------------------------------------------------------------------


def test_store_replaces_adds_and_removes_flags_and_silent_answers_nothing(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, message("one"), message("two"))
        client.command("s1", "SELECT INBOX")
        replace = client.command("w1", "STORE 1 FLAGS (\\Answered $Label)")
        add = client.command("w2", "STORE 1:2 +FLAGS (\\Flagged)")
        remove = client.command("w3", "STORE 1 -FLAGS ($Label \\Answered)")
        silent = client.command("w4", "STORE 2 +FLAGS.SILENT (\\Draft)")
        by_uid = client.command("w5", "UID STORE 2 -FLAGS (\\Flagged)")
        flags = client.command("f1", "FETCH 1:2 FLAGS")
    assert replace == b"* 1 FETCH (FLAGS ($Label \\Answered))\r\nw1 OK STORE completed\r\n"
    assert add == (b"* 1 FETCH (FLAGS ($Label \\Answered \\Flagged))\r\n* 2 FETCH (FLAGS (\\Flagged))\r\n"
                   b"w2 OK STORE completed\r\n")
    assert remove == b"* 1 FETCH (FLAGS (\\Flagged))\r\nw3 OK STORE completed\r\n"
    assert silent == b"w4 OK STORE completed\r\n"
    assert by_uid == b"* 2 FETCH (UID 2 FLAGS (\\Draft))\r\nw5 OK STORE completed\r\n"
    assert flags == b"* 1 FETCH (FLAGS (\\Flagged))\r\n* 2 FETCH (FLAGS (\\Draft))\r\n" + done("f1")


def test_store_of_recent_or_an_unknown_system_flag_is_bad_and_changes_nothing(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, message("one"))
        client.command("s1", "SELECT INBOX")
        recent = client.command("w1", "STORE 1 +FLAGS (\\Recent)")
        unknown = client.command("w2", "STORE 1 FLAGS (\\Seen \\Bogus)")
        flags = client.command("f1", "FETCH 1 FLAGS")
    assert recent == b"w1 BAD unknown system flag '\\\\Recent'\r\n"
    assert unknown == b"w2 BAD unknown system flag '\\\\Bogus'\r\n"
    assert flags == b"* 1 FETCH (FLAGS ())\r\nf1 OK FETCH completed\r\n"


def test_store_unchangedsince_skips_messages_changed_since_and_names_them_in_modified(
        store: Container) -> None:
    with logged_in(store) as client:
        appended(client, message("one"), message("two"))
        client.command("s1", "SELECT INBOX")
        before = modseqs(client)
        reply = client.command("w1", f"STORE 1:2 (UNCHANGEDSINCE {before[1]}) +FLAGS (\\Deleted)")
        after = modseqs(client)
        by_uid = client.command("w2", f"UID STORE 1:2 (UNCHANGEDSINCE {before[1]}) -FLAGS (\\Deleted)")
        flags = client.command("f1", "FETCH 1:2 FLAGS")
    assert before[1] < before[2]
    assert after[1] > before[2] and after[2] == before[2]
    assert reply == (f"* 1 FETCH (FLAGS (\\Deleted) MODSEQ ({after[1]}))\r\n"
                     f"w1 OK [MODIFIED 2] conditional STORE failed for some messages\r\n").encode()
    assert by_uid == b"w2 OK [MODIFIED 1:2] conditional STORE failed for some messages\r\n"
    assert flags == b"* 1 FETCH (FLAGS (\\Deleted))\r\n* 2 FETCH (FLAGS ())\r\nf1 OK FETCH completed\r\n"


# -- SEARCH, ESEARCH, SEARCHRES ---------------------------------------------------------

M1 = message("Zebra", "Bob <bob@far.test>", "Mon, 1 Jan 2024 10:00:00 +0000", extra=b"Message-ID: <a@x>\r\n")
M2 = message("Re: Zebra", "Amy <amy@far.test>", "Wed, 3 Jan 2024 10:00:00 +0000",
             extra=b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <a@x>\r\n",
             body=b"A much longer answer.\r\n" * 20)
M3 = message("apple", "Carl <carl@far.test>", "Tue, 2 Jan 2024 10:00:00 +0000",
             extra=b"Message-ID: <c@x>\r\nX-Custom: marker\r\nMIME-Version: 1.0\r\n"
                   b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
             body=b64("Der Bär tanzt im Schnee.\r\n".encode()))


@contextmanager
def three_messages(store: Container) -> Iterator[RawImap]:
    """M1 (\\Seen, dated 2024), M2 (\\Flagged, large), M3 (base64 UTF-8 body), INBOX selected."""
    with logged_in(store) as client:
        append(client, M1, flags="\\Seen", date="01-Jan-2024 10:00:00 +0000")
        append(client, M2, flags="\\Flagged")
        append(client, M3)
        client.command("s1", "SELECT INBOX")
        yield client


def search(client: RawImap, criteria: str) -> bytes:
    reply = client.command("q", f"SEARCH {criteria}")
    assert reply.endswith(b"q OK SEARCH completed\r\n"), (criteria, reply)
    return reply[: -len(b"q OK SEARCH completed\r\n")]


def test_search_by_flags_addresses_headers_size_dates_numbers_and_not_or(store: Container) -> None:
    cases = {
        "ALL": b"1 2 3", "SEEN": b"1", "UNSEEN": b"2 3", "FLAGGED": b"2", "UNFLAGGED": b"1 3",
        "FROM amy": b"2", "TO alice": b"1 2 3", "SUBJECT zebra": b"1 2", 'SUBJECT "re: zebra"': b"2",
        "HEADER X-Custom marker": b"3", "HEADER Message-ID <c@x>": b"3", "HEADER X-Missing x": b"",
        "LARGER 300": b"2", "SMALLER 300": b"1 3",
        "SINCE 2-Jan-2024": b"2 3", "BEFORE 2-Jan-2024": b"1", "ON 1-Jan-2024": b"1",
        "SENTSINCE 2-Jan-2024": b"2 3", "SENTBEFORE 2-Jan-2024": b"1", "SENTON 3-Jan-2024": b"2",
        "UID 2:*": b"2 3", "UID 3,1": b"1 3", "2:3": b"2 3", "*": b"3",
        "NOT SEEN": b"2 3", "OR SEEN FLAGGED": b"1 2", "NOT OR SEEN FLAGGED": b"3",
        "(SEEN) (FROM bob)": b"1", "SEEN FROM amy": b"",
    }
    assert len(M2) > 300 and len(M1) < 300 and len(M3) < 300
    with three_messages(store) as client:
        found = {criteria: search(client, criteria) for criteria in cases}
        bad = client.command("b1", "SEARCH SINCE yesterday")
    for criteria, numbers in cases.items():
        expected = b"* SEARCH" + (b" " + numbers if numbers else b"") + b"\r\n"
        assert found[criteria] == expected, (criteria, found[criteria])
    assert bad.startswith(b"b1 BAD ")


def test_search_text_and_body_match_the_decoded_base64_body_with_charset_utf8_literals(
        store: Container) -> None:
    with three_messages(store) as client:
        text = search(client, "TEXT schnee")
        body = search(client, "BODY tanzt")
        encoded = search(client, "BODY RGVyIEJ")  # the base64 text itself is not the body
        header_text = search(client, "TEXT marker")
        client.send("u1 SEARCH CHARSET UTF-8 BODY {4+}\r\nBär\r\n".encode())
        utf8_body = client.until_tagged("u1")
        client.send("u2 SEARCH CHARSET UTF-8 TEXT {5+}\r\nbÄR \r\n".encode())
        utf8_text = client.until_tagged("u2")
        latin1 = client.command("u3", "SEARCH CHARSET ISO-8859-1 ALL")
    assert (text, body, encoded, header_text) == (b"* SEARCH 3\r\n", b"* SEARCH 3\r\n", b"* SEARCH\r\n",
                                                  b"* SEARCH 3\r\n")
    assert utf8_body == b"* SEARCH 3\r\nu1 OK SEARCH completed\r\n"
    assert utf8_text == b"* SEARCH 3\r\nu2 OK SEARCH completed\r\n"
    assert latin1 == b"u3 NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset\r\n"


def test_search_modseq_answers_the_highest_modseq_and_older_younger_count_seconds(store: Container) -> None:
    with three_messages(store) as client:
        seqs = modseqs(client)
        since_third = search(client, f"MODSEQ {seqs[3]}")
        since_second = search(client, f"MODSEQ {seqs[2]}")
        none = search(client, f"MODSEQ {seqs[3] + 1}")
        older = search(client, "OLDER 3600")
        younger = search(client, "YOUNGER 3600")
        zero = client.command("b1", "SEARCH OLDER 0")
    assert since_third == f"* SEARCH 3 (MODSEQ {seqs[3]})\r\n".encode()
    assert since_second == f"* SEARCH 2 3 (MODSEQ {seqs[3]})\r\n".encode()
    assert none == b"* SEARCH\r\n"
    assert older == b"* SEARCH 1\r\n"  # appended with a 2024 date
    assert younger == b"* SEARCH 2 3\r\n"
    assert zero.startswith(b"b1 BAD ")


def test_esearch_return_min_max_count_and_all(store: Container) -> None:
    with three_messages(store) as client:
        every = client.command("e1", "SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
        default = client.command("e2", "SEARCH RETURN () ALL")
        by_uid = client.command("e3", "UID SEARCH RETURN (COUNT MAX) ALL")
        nothing = client.command("e4", "SEARCH RETURN (MIN MAX COUNT ALL) KEYWORD $Nothing")
        unknown = client.command("e5", "SEARCH RETURN (FIRST) ALL")
    assert every == b'* ESEARCH (TAG "e1") MIN 2 MAX 3 COUNT 2 ALL 2:3\r\ne1 OK SEARCH completed\r\n'
    assert default == b'* ESEARCH (TAG "e2") ALL 1:3\r\ne2 OK SEARCH completed\r\n'
    assert by_uid == b'* ESEARCH (TAG "e3") UID MAX 3 COUNT 3\r\ne3 OK SEARCH completed\r\n'
    assert nothing == b'* ESEARCH (TAG "e4") COUNT 0\r\ne4 OK SEARCH completed\r\n'
    assert unknown.startswith(b"e5 BAD ")


def test_searchres_save_then_fetch_dollar_names_the_saved_messages(store: Container) -> None:
    with three_messages(store) as client:
        saved = client.command("r1", "SEARCH RETURN (SAVE) UNSEEN")
        fetched = client.command("r2", "FETCH $ (UID FLAGS)")
        searched = client.command("r3", "UID SEARCH UID $ FLAGGED")
        saved_min = client.command("r4", "SEARCH RETURN (SAVE MIN) ALL")
        fetched_min = client.command("r5", "UID FETCH $ UID")
    assert saved == b"r1 OK SEARCH completed\r\n"
    assert fetched == (b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n* 3 FETCH (UID 3 FLAGS ())\r\n"
                       b"r2 OK FETCH completed\r\n")
    assert searched == b"* SEARCH 2\r\nr3 OK SEARCH completed\r\n"
    assert saved_min == b'* ESEARCH (TAG "r4") MIN 1\r\nr4 OK SEARCH completed\r\n'
    assert fetched_min == b"* 1 FETCH (UID 1)\r\nr5 OK FETCH completed\r\n"


# -- SORT, ESORT, THREAD -----------------------------------------------------------------


def test_sort_by_subject_reverse_date_and_from_and_esort_return_all(store: Container) -> None:
    with three_messages(store) as client:
        subject = client.command("o1", "SORT (SUBJECT) UTF-8 ALL")
        reverse_date = client.command("o2", "SORT (REVERSE DATE) UTF-8 ALL")
        sender = client.command("o3", "SORT (FROM) UTF-8 ALL")
        esort = client.command("o4", "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL")
        esort_min_max = client.command("o5", "SORT RETURN (MIN MAX COUNT) (REVERSE DATE) UTF-8 ALL")
        by_uid = client.command("o6", "UID SORT (DATE) UTF-8 UNSEEN")
        bad = client.command("o7", "SORT (COLOUR) UTF-8 ALL")
    assert subject == b"* SORT 3 1 2\r\no1 OK SORT completed\r\n"  # apple, zebra, (re:) zebra
    assert reverse_date == b"* SORT 2 3 1\r\no2 OK SORT completed\r\n"
    assert sender == b"* SORT 2 1 3\r\no3 OK SORT completed\r\n"  # amy, bob, carl
    assert esort == b'* ESEARCH (TAG "o4") ALL 3,1,2\r\no4 OK SORT completed\r\n'
    assert esort_min_max == b'* ESEARCH (TAG "o5") MIN 2 MAX 1 COUNT 3\r\no5 OK SORT completed\r\n'
    assert by_uid == b"* SORT 3 2\r\no6 OK SORT completed\r\n"
    assert bad.startswith(b"o7 BAD ")


def test_thread_references_and_orderedsubject(store: Container) -> None:
    with three_messages(store) as client:
        references = client.command("t1", "THREAD REFERENCES UTF-8 ALL")
        ordered = client.command("t2", "THREAD ORDEREDSUBJECT UTF-8 ALL")
        by_uid = client.command("t3", "UID THREAD REFERENCES UTF-8 NOT SEEN")
        unknown = client.command("t4", "THREAD BYCOLOUR UTF-8 ALL")
    assert references == b"* THREAD (1 2)(3)\r\nt1 OK THREAD completed\r\n"
    assert ordered == b"* THREAD (1 2)(3)\r\nt2 OK THREAD completed\r\n"
    assert by_uid == b"* THREAD (3)(2)\r\nt3 OK THREAD completed\r\n"
    assert unknown == b"t4 BAD unknown threading algorithm\r\n"


# -- COPY, MOVE, EXPUNGE, CLOSE, UNSELECT, CHECK ----------------------------------------


def test_copy_answers_copyuid_and_leaves_the_source_alone(store: Container) -> None:
    with three_messages(store) as client:
        archive = status(client, "Archive", "UIDVALIDITY")["UIDVALIDITY"]
        reply = client.command("c1", "COPY 1:2 Archive")
        by_uid = client.command("c2", "UID COPY 3 Archive")
        missing = client.command("c3", "COPY 1 Nowhere")
        source = status(client, "INBOX", "MESSAGES")
        target = status(client, "Archive", "MESSAGES UNSEEN")
        client.command("x1", "EXAMINE Archive")
        flags = client.command("f1", "FETCH 1:3 (FLAGS BODY.PEEK[])")
    assert reply == f"c1 OK [COPYUID {archive} 1:2 1:2] COPY completed\r\n".encode()
    assert by_uid == f"c2 OK [COPYUID {archive} 3 3] COPY completed\r\n".encode()
    assert missing == b"c3 NO [TRYCREATE] no mailbox named 'Nowhere'\r\n"
    assert source == {"MESSAGES": "3"} and target == {"MESSAGES": "3", "UNSEEN": "2"}
    assert flags == (b"* 1 FETCH (FLAGS (\\Seen) " + item(b"BODY[]", M1) + b")\r\n"
                     b"* 2 FETCH (FLAGS (\\Flagged) " + item(b"BODY[]", M2) + b")\r\n"
                     b"* 3 FETCH (FLAGS () " + item(b"BODY[]", M3) + b")\r\n" + done("f1"))


def test_move_sends_copyuid_in_an_untagged_ok_then_the_expunge_and_uid_move_too(store: Container) -> None:
    with three_messages(store) as client:
        archive = status(client, "Archive", "UIDVALIDITY")["UIDVALIDITY"]
        trash = status(client, "Trash", "UIDVALIDITY")["UIDVALIDITY"]
        moved = client.command("m1", "MOVE 2 Archive")
        by_uid = client.command("m2", "UID MOVE 3 Trash")
        left = client.command("f1", "FETCH 1:* UID")
        counts = [status(client, name, "MESSAGES") for name in ("INBOX", "Archive", "Trash")]
    assert moved == (f"* OK [COPYUID {archive} 2 1] moved\r\n* 2 EXPUNGE\r\n"
                     f"m1 OK MOVE completed\r\n").encode()
    assert by_uid == (f"* OK [COPYUID {trash} 3 1] moved\r\n* 2 EXPUNGE\r\n"
                      f"m2 OK MOVE completed\r\n").encode()
    assert left == b"* 1 FETCH (UID 1)\r\nf1 OK FETCH completed\r\n"
    assert counts == [{"MESSAGES": "1"}, {"MESSAGES": "1"}, {"MESSAGES": "1"}]


def test_expunge_removes_every_deleted_message_and_uid_expunge_only_the_named_ones(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, *(message(f"m{n}") for n in range(1, 6)))
        client.command("s1", "SELECT INBOX")
        client.command("w1", "STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        expunged = client.command("x1", "EXPUNGE")
        client.command("w2", "STORE 1:3 +FLAGS.SILENT (\\Deleted)")  # UIDs 2, 4, 5
        by_uid = client.command("x2", "UID EXPUNGE 4:5")
        left = client.command("f1", "FETCH 1:* (UID FLAGS)")
        nothing = client.command("x3", "UID EXPUNGE 99")
    assert expunged == b"* 3 EXPUNGE\r\n* 1 EXPUNGE\r\nx1 OK EXPUNGE completed\r\n"
    assert by_uid == b"* 3 EXPUNGE\r\n* 2 EXPUNGE\r\nx2 OK EXPUNGE completed\r\n"
    assert left == b"* 1 FETCH (UID 2 FLAGS (\\Deleted))\r\nf1 OK FETCH completed\r\n"
    assert nothing == b"x3 OK EXPUNGE completed\r\n"


def test_close_expunges_silently_but_unselect_does_not_and_check_is_ok(store: Container) -> None:
    with logged_in(store) as client:
        appended(client, message("one"), message("two"))
        client.command("s1", "SELECT INBOX")
        check = client.command("k1", "CHECK")
        client.command("w1", "STORE 1 +FLAGS.SILENT (\\Deleted)")
        unselect = client.command("u1", "UNSELECT")
        after_unselect = status(client, "INBOX", "MESSAGES DELETED")
        client.command("s2", "SELECT INBOX")
        close = client.command("c1", "CLOSE")
        after_close = status(client, "INBOX", "MESSAGES DELETED")
        not_selected = client.command("c2", "CLOSE")
        client.command("s3", "SELECT INBOX")
        client.command("w2", "STORE 1 +FLAGS.SILENT (\\Deleted)")
        client.command("u2", "UNSELECT")
        client.command("s4", "EXAMINE INBOX")
        read_only_close = client.command("c3", "CLOSE")
        after_read_only_close = status(client, "INBOX", "MESSAGES DELETED")
    assert check == b"k1 OK CHECK completed\r\n"
    assert unselect == b"u1 OK UNSELECT completed\r\n"
    assert after_unselect == {"MESSAGES": "2", "DELETED": "1"}
    assert close == b"c1 OK CLOSE completed\r\n"
    assert after_close == {"MESSAGES": "1", "DELETED": "0"}
    assert not_selected == b"c2 BAD CLOSE is not valid in the authenticated state\r\n"
    assert read_only_close == b"c3 OK CLOSE completed\r\n"
    assert after_read_only_close == {"MESSAGES": "1", "DELETED": "1"}  # EXAMINE: CLOSE expunges nothing


# -- QUOTA, UNAUTHENTICATE, COMPRESS -------------------------------------------------------


def test_getquotaroot_and_getquota_report_storage_in_kib_and_setquota_is_refused(store: Container) -> None:
    with acting("admin:test", protocol="test", purpose="testing"):
        store.app.create_account(ALICE, PASSWORD, quota_bytes=5 * 1024 * 1024)
    big = message("big", body=b"x" * 3000 + b"\r\n")
    with running_imap(store) as server, connected(server) as client:
        appended(client, big)
        root = client.command("q1", "GETQUOTAROOT INBOX")
        quota = client.command("q2", 'GETQUOTA ""')
        other = client.command("q3", 'GETQUOTA "user/bob"')
        set_quota = client.command("q4", 'SETQUOTA "" (STORAGE 1)')
    used = (len(big) + 1023) // 1024
    assert root == (f'* QUOTAROOT INBOX ""\r\n* QUOTA "" (STORAGE {used} 5120)\r\n'.encode()
                    + done("q1", "GETQUOTAROOT"))
    assert quota == f'* QUOTA "" (STORAGE {used} 5120)\r\nq2 OK GETQUOTA completed\r\n'.encode()
    assert other == b"q3 NO [NONEXISTENT] no such quota root\r\n"
    assert set_quota == b"q4 NO [NOPERM] quotas are set by the administrator (ledgermail CLI)\r\n"


def test_unauthenticate_returns_to_the_not_authenticated_state_as_if_newly_connected(
        store: Container) -> None:
    with serving(store, ALICE, BOB) as server, connected(server) as client:
        client.command("e1", "ENABLE UTF8=ACCEPT")
        client.command("s1", "SELECT INBOX")
        reply = client.command("u1", "UNAUTHENTICATE")
        caps = client.command("c1", "CAPABILITY")
        refused = client.command("s2", "SELECT INBOX")
        again = client.command("l1", f'LOGIN "{BOB}" "{PASSWORD}"')
        enabled = client.command("e2", "ENABLE UTF8=ACCEPT")
    assert reply == b"u1 OK UNAUTHENTICATE completed\r\n"
    assert "AUTH=PLAIN" in capabilities(caps)
    assert refused == b"s2 BAD SELECT is not valid in the not authenticated state\r\n"
    assert again.startswith(b"l1 OK [CAPABILITY ")
    assert enabled == b"* ENABLED UTF8=ACCEPT\r\ne2 OK ENABLE completed\r\n"  # enabled state was reset


def test_compress_deflate_then_both_directions_are_deflated(store: Container) -> None:
    raw = message("squeezed", body=b"Compressible line. " * 200 + b"\r\n")
    with logged_in(store) as client:
        appended(client, raw)
        reply = client.command("z1", "COMPRESS DEFLATE")
        wire = client.sock
        deflated = Deflated(wire)
        client.sock = deflated  # type: ignore[assignment]
        noop = client.command("z2", "NOOP")
        caps = client.command("z3", "CAPABILITY")
        client.command("z4", "SELECT INBOX")
        body = client.command("z5", "FETCH 1 BODY.PEEK[]")
        twice = client.command("z6", "COMPRESS DEFLATE")
        client.send(b"z7 APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
        appended_reply = client.until_tagged("z7")
        logout = client.command("z8", "LOGOUT")
    assert reply == b"z1 OK DEFLATE active\r\n"
    assert noop == b"z2 OK NOOP completed\r\n"
    assert "COMPRESS=DEFLATE" not in capabilities(caps)
    assert body == b"* 1 FETCH (BODY[] {%d}\r\n" % len(raw) + raw + b")\r\nz5 OK FETCH completed\r\n"
    assert deflated.wire_in < len(raw)  # the 4 kB body crossed the wire compressed
    assert twice == b"z6 NO [COMPRESSIONACTIVE] compression is already active\r\n"
    assert re.fullmatch(rb"\* 2 EXISTS\r\nz7 OK \[APPENDUID \d+ 2\] APPEND completed\r\n",
                        appended_reply), appended_reply
    assert logout == b"* BYE logging out\r\nz8 OK LOGOUT completed\r\n"


def test_savedate_is_when_the_copy_was_saved_not_the_internal_date_given_by_append(
        store: Container) -> None:
    """RFC 8514 §4: APPEND may set INTERNALDATE in the past; SAVEDATE is the save itself."""
    with logged_in(store) as client:
        reply = client.command("AP", b'APPEND INBOX "01-Jan-2020 10:00:00 +0000" {%d+}\r\n'
                               % len(message("old")) + message("old"))
        assert reply.startswith(b"AP OK [APPENDUID ")
        client.command("s1", "SELECT INBOX")
        fetched = client.command("f1", "FETCH 1 (INTERNALDATE SAVEDATE)")
        today = client.command("s2", "SEARCH SAVEDSINCE 1-Jan-2025 SAVEDATESUPPORTED")
        internal = client.command("s3", "SEARCH SINCE 1-Jan-2025")
    match = re.fullmatch(rb'\* 1 FETCH \(INTERNALDATE " 1-Jan-2020 10:00:00 \+0000" SAVEDATE "([^"]+)"\)\r\n'
                         rb"f1 OK FETCH completed\r\n", fetched)
    assert match is not None, fetched
    assert not match.group(1).endswith(b"2020 10:00:00 +0000")
    assert today == b"* SEARCH 1\r\ns2 OK SEARCH completed\r\n"
    assert internal == b"* SEARCH\r\ns3 OK SEARCH completed\r\n"
