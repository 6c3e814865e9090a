"""Outbound rate limit per account (issue 8): a stolen password cannot spam the world.

Through a real submission server with smtplib, on SQLite and PostgreSQL: an account
sends its ``outbound.max_messages_per_hour``, the next is refused with ``451 4.7.1``
(temporary: the client keeps it) and nothing of it is queued, while another account
sends on.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from adapters.bootstrap import Container, build
from adapters.smtp import replies
from domain.application.context import acting
from tests.conftest import drop_schemas, make_settings
from tests.smtp_support import PASSWORD, add_user, client_context, running_smtp

ALICE = "alice@example.test"
BOB = "bob@example.test"
FAR = "someone@elsewhere.test"


@pytest.fixture
def store_with(tmp_path: Path, backend: str) -> Iterator[Callable[[int], Container]]:
    with ExitStack() as stack:
        def start(per_hour: int) -> Container:
            # The queue worker is not started: queued mail stays queued, to be counted.
            settings = make_settings(tmp_path / "data", backend,
                                     outbound={"max_messages_per_hour": per_hour})
            stack.callback(drop_schemas, settings)
            container = build(settings)
            stack.callback(container.close)
            with acting("admin:test", protocol="test", purpose="testing"):
                container.app.add_domain("example.test")
            add_user(container, ALICE)
            add_user(container, BOB)
            return container

        yield start


def send(port: int, sender: str, recipients: list[str], number: int) -> tuple[int, str]:
    raw = (f"From: <{sender}>\r\nTo: <{recipients[0]}>\r\nSubject: note {number}\r\n"
           f"Message-ID: <{number}.{sender}>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nHi\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=client_context())
        client.login(sender, PASSWORD)
        try:
            client.sendmail(sender, recipients, raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error.decode()
    return 250, ""


def queued(container: Container) -> int:
    container.catch_up()
    return container.mailbox_view.queue_size()


def test_an_account_over_its_hourly_limit_gets_451_4_7_1_and_another_account_sends_on(
        store_with: Callable[[int], Container]) -> None:
    store = store_with(3)
    with running_smtp(store) as smtp:
        for number in range(3):
            assert send(smtp.submission, ALICE, [FAR], number) == (250, "")
        assert queued(store) == 3
        code, text = send(smtp.submission, ALICE, [FAR], 3)
        assert f"{code} {text}" == replies.RATE_LIMITED
        assert queued(store) == 3  # nothing of the refused message
        assert send(smtp.submission, BOB, [FAR], 4) == (250, "")
        assert queued(store) == 4


def test_recipients_count_so_one_message_to_many_cannot_slip_under_the_limit(
        store_with: Callable[[int], Container]) -> None:
    store = store_with(3)
    with running_smtp(store) as smtp:
        many = [f"person{n}@elsewhere.test" for n in range(4)]
        code, text = send(smtp.submission, ALICE, many, 0)
        assert f"{code} {text}" == replies.RATE_LIMITED
        assert queued(store) == 0
        # A refused message took nothing from the hour: three recipients still fit.
        assert send(smtp.submission, ALICE, many[:3], 1) == (250, "")


def test_zero_means_no_limit(store_with: Callable[[int], Container]) -> None:
    store = store_with(0)
    with running_smtp(store) as smtp:
        for number in range(5):
            assert send(smtp.submission, ALICE, [FAR], number) == (250, "")
    assert queued(store) == 5
