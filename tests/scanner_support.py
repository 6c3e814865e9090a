"""A real SMTP service with the built-in scorer on, its DNS a fake zone (DESIGN §7: fakes
only at external ports), and helpers to read what landed where."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapters import bootstrap
from adapters.bootstrap import Container, build
from adapters.tls import server_context
from domain.application.context import acting
from tests.conftest import drop_schemas, make_settings
from tests.outbound_support import FakeResolver
from tests.service_support import bound, on_a_thread
from tests.smtp_support import RunningSmtp

HOSTNAME = "mx.ledger.test"
ALICE = "alice@example.test"
HELO = "client.sender.test"


@contextmanager
def scored_store(tmp_path: Path, backend: str, **antiabuse: Any) -> Iterator[Container]:
    """A store whose intake scores MX mail, with one local domain and ALICE."""
    settings = make_settings(tmp_path / "data", backend, hostname=HOSTNAME,
                             antiabuse={"enabled": True, **antiabuse})
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
            container.app.create_account(ALICE, "correct horse battery")
        yield container
    finally:
        container.close()
        drop_schemas(settings)


@contextmanager
def running_mx(container: Container, resolver: FakeResolver) -> Iterator[RunningSmtp]:
    sockets, ports = bound("smtp", "submission", "submissions")
    service = bootstrap.smtp_service(container, server_context(container.settings), resolver=resolver)
    with on_a_thread(service, sockets, "smtp") as loop:
        yield RunningSmtp(container, service, ports, loop)


def send(port: int, sender: str, raw: bytes, recipients: tuple[str, ...] = (ALICE,)) -> tuple[int, bytes]:
    """One MX transaction from 127.0.0.1; the reply to the end of DATA."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname=HELO, timeout=10) as client:
        client.ehlo()
        code, text = client.mail(sender)
        assert code == 250, (code, text)
        for recipient in recipients:
            code, text = client.rcpt(recipient)
            assert code == 250, (code, text)
        return client.data(raw)


def bodies(container: Container, address: str, mailbox: str) -> list[bytes]:
    """Every message body in one mailbox of ``address``'s owner, oldest first."""
    app = container.app
    with acting("admin:test", protocol="test", purpose="testing"):
        account = app.account_for(address)
        box = app.repository.get(account.mailbox_id(mailbox))
        return [app.ports.blobs.get(copy.blob_id, copy.data_key) for copy in app.live_copies(box)]


def letter(subject: str = "Lunch", sender: str = "bob@sender.test", *, body: bytes = b"See you at noon.\r\n",
           extra: bytes = b"") -> bytes:
    """A well-formed message (Date and Message-ID present), CRLF throughout."""
    return (f"From: Bob <{sender}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@sender.test>\r\n"
            ).encode() + extra + b"\r\n" + body


def split_added(stored: bytes, raw: bytes) -> bytes:
    """What the server put above the Received: field; asserts the client's bytes follow
    our one Received: field unchanged."""
    assert stored.endswith(raw), stored[-300:]
    head = stored[: len(stored) - len(raw)]
    cut = head.index(b"Received: ")
    assert head[cut:].count(b"Received: ") == 1
    return head[:cut]
