"""Delivery status notifications (RFC 3464) as the outbound queue will send them.

Every report is parsed back with the standard library's parser (``policy.default``)
and checked part by part and field by field: the structure, the exact Status codes,
what RET returns and the size cap, the NOTIFY rules, and that no value that came from
outside (reply text, addresses, ENVID, ORCPT) can add a field or break a part.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.smtp.dsn import (
    MAX_DIAGNOSTIC,
    MAX_RETURNED_ORIGINAL,
    RecipientStatus,
    build_dsn,
    needs_dsn,
    should_notify,
    status_from_reply,
)

MTA = "mail.example.test"
SENDER = "alice@example.test"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
ARRIVAL = NOW - timedelta(hours=5)
ORIGINAL = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@remote.example\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Message-ID: <q1.123@example.test>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the figures are attached.\r\n"
)
ORIGINAL_HEADER = ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"


def failed(recipient: str = "bob@remote.example", **fields: object) -> RecipientStatus:
    values: dict[str, object] = {"action": "failed", "status": "5.1.1"}
    values.update(fields)
    return RecipientStatus(recipient=recipient, **values)  # type: ignore[arg-type]


def delayed(recipient: str = "carol@remote.example", **fields: object) -> RecipientStatus:
    values: dict[str, object] = {"action": "delayed", "status": "4.4.1"}
    values.update(fields)
    return RecipientStatus(recipient=recipient, **values)  # type: ignore[arg-type]


def dsn(recipients: list[RecipientStatus] | None = None, **overrides: object) -> bytes:
    args: dict[str, object] = {
        "reporting_mta": MTA, "original": ORIGINAL, "sender": SENDER,
        "recipients": recipients if recipients is not None else [failed()],
        "envid": None, "ret": None, "arrival": ARRIVAL, "now": NOW, "kind": "failure",
    }
    args.update(overrides)
    return build_dsn(**args)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    # The stdlib parser splits only message/delivery-status into blocks; the global
    # form (RFC 6533) has the same syntax, so it is read the same way here.
    raw = raw.replace(b"Content-Type: message/global-delivery-status",
                      b"Content-Type: message/delivery-status")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def parts(raw: bytes) -> list[EmailMessage]:
    return list(parse(raw).iter_parts())  # type: ignore[arg-type]


def blocks(raw: bytes) -> list[dict[str, str]]:
    """The delivery-status fields: the per-message block, then one per recipient."""
    status = parts(raw)[1]
    return [{name: str(value) for name, value in block.items()} for block in status.get_payload()]


def field_names(raw: bytes) -> list[list[str]]:
    return [list(block) for block in blocks(raw)]


def third_part_body(raw: bytes) -> bytes:
    """The bytes of the third part as written, between its header and the closing boundary."""
    boundary = parse(raw).get_boundary()
    assert boundary is not None
    third = raw.split(b"\r\n--" + boundary.encode())[3]
    return third.split(b"\r\n\r\n", 1)[1]


# -- structure ------------------------------------------------------------------------


def test_a_failure_report_is_a_multipart_report_of_three_parts_that_parses_without_defects() -> None:
    message = parse(dsn())
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in message.iter_parts()] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert message.defects == []
    assert all(part.defects == [] for part in message.walk())


def test_the_header_names_the_mailer_daemon_the_sender_and_marks_the_report_auto_replied() -> None:
    message = parse(dsn())
    assert message["From"] == f"Mail Delivery System <MAILER-DAEMON@{MTA}>"
    assert message["To"] == SENDER
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Date"].datetime == NOW
    assert re.fullmatch(rf"<[0-9a-f]{{32}}@{re.escape(MTA)}>", message["Message-ID"])
    assert message["MIME-Version"] == "1.0"
    assert message["Auto-Submitted"] == "auto-replied"  # RFC 3834 §5
    assert message["References"] == "<q1.123@example.test>"
    assert "Content-Transfer-Encoding" not in message  # all parts are 7bit


def test_each_report_has_a_message_id_of_its_own() -> None:
    assert parse(dsn())["Message-ID"] != parse(dsn())["Message-ID"]


def test_every_line_ends_in_crlf_and_none_is_longer_than_998_octets() -> None:
    raw = dsn([failed(diagnostic="550 " + "x" * 3000), delayed(diagnostic="451 " + "word " * 400)],
              ret="FULL")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"--\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_per_message_fields_come_first_in_rfc_3464_order() -> None:
    raw = dsn(envid="QQ314159")
    assert field_names(raw)[0] == ["Original-Envelope-Id", "Reporting-MTA", "Arrival-Date"]
    per_message = blocks(raw)[0]
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Reporting-MTA"] == f"dns; {MTA}"
    assert per_message["Arrival-Date"] == "Mon, 06 May 2024 02:08:09 +0000"


def test_the_envelope_id_is_decoded_from_xtext() -> None:
    # RFC 3461 §4.4: ENVID travels as xtext; "+2B" is "+", "+3D" is "=".
    assert blocks(dsn(envid="a+2Bb+3Dc"))[0]["Original-Envelope-Id"] == "a+b=c"


def test_without_an_envelope_id_the_field_is_left_out() -> None:
    assert "Original-Envelope-Id" not in blocks(dsn(envid=None))[0]


def test_a_recipient_block_carries_every_field_in_order() -> None:
    recipient = failed(original_recipient="rfc822;Bob@remote.example", remote_mta="mx1.remote.example",
                       diagnostic="550 5.1.1 <bob@remote.example>: Recipient address rejected",
                       last_attempt=NOW - timedelta(minutes=1))
    raw = dsn([recipient])
    assert field_names(raw)[1] == ["Original-Recipient", "Final-Recipient", "Action", "Status",
                                   "Remote-MTA", "Diagnostic-Code", "Last-Attempt-Date"]
    assert blocks(raw)[1] == {
        "Original-Recipient": "rfc822; Bob@remote.example",
        "Final-Recipient": "rfc822; bob@remote.example",
        "Action": "failed",
        "Status": "5.1.1",
        "Remote-MTA": "dns; mx1.remote.example",
        "Diagnostic-Code": "smtp; 550 5.1.1 <bob@remote.example>: Recipient address rejected",
        "Last-Attempt-Date": "Mon, 06 May 2024 07:07:09 +0000",
    }


def test_each_recipient_gets_a_block_of_its_own_after_the_per_message_block() -> None:
    raw = dsn([failed("a@remote.example"), failed("b@remote.example", status="5.2.2"), delayed()])
    found = blocks(raw)
    assert len(found) == 4
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in found[1:]] == [
        ("rfc822; a@remote.example", "failed", "5.1.1"),
        ("rfc822; b@remote.example", "failed", "5.2.2"),
        ("rfc822; carol@remote.example", "delayed", "4.4.1"),
    ]


def test_optional_recipient_fields_are_left_out_when_not_known() -> None:
    assert field_names(dsn([failed()]))[1] == ["Final-Recipient", "Action", "Status"]


def test_the_original_recipient_comes_from_orcpt_decoded_from_xtext() -> None:
    raw = dsn([failed(original_recipient="rfc822;bob+2Blists@remote.example")])
    assert blocks(raw)[1]["Original-Recipient"] == "rfc822; bob+lists@remote.example"


def test_an_orcpt_without_a_type_is_taken_as_an_rfc822_address() -> None:
    raw = dsn([failed(original_recipient="bob@remote.example")])
    assert blocks(raw)[1]["Original-Recipient"] == "rfc822; bob@remote.example"


@pytest.mark.parametrize("orcpt", ["bad type;bob@remote.example", ";bob@remote.example", "rfc822;", "  "])
def test_a_malformed_orcpt_leaves_the_original_recipient_out(orcpt: str) -> None:
    assert "Original-Recipient" not in blocks(dsn([failed(original_recipient=orcpt)]))[1]


def test_will_retry_until_is_written_for_delayed_recipients_only() -> None:
    until = NOW + timedelta(days=4)
    raw = dsn([delayed(will_retry_until=until), failed(will_retry_until=until)], kind="delay")
    assert blocks(raw)[1]["Will-Retry-Until"] == "Fri, 10 May 2024 07:08:09 +0000"
    assert "Will-Retry-Until" not in blocks(raw)[2]


@pytest.mark.parametrize(("action", "status"), [
    ("failed", "5.1.1"),  # bad destination mailbox address
    ("failed", "5.7.26"),  # multiple authentication checks failed (three-digit detail)
    ("failed", "4.4.7"),  # expired after temporary failures: failed with a 4.x.x status
    ("delayed", "4.4.1"),  # no answer from host
    ("delayed", "4.2.2"),  # mailbox full
    ("delivered", "2.0.0"),
    ("relayed", "2.0.0"),
])
def test_status_codes_are_written_exactly_as_given(action: str, status: str) -> None:
    recipient = RecipientStatus(recipient="bob@remote.example", action=action, status=status)
    assert blocks(dsn([recipient]))[1]["Status"] == status
    assert blocks(dsn([recipient]))[1]["Action"] == action


@pytest.mark.parametrize(("action", "status"), [
    ("failed", "550"), ("failed", "5.1"), ("failed", "3.1.1"), ("failed", "5.1.1 "), ("failed", "5.1234.1"),
    ("failed", "2.0.0"), ("delayed", "5.1.1"), ("delayed", "2.0.0"), ("delivered", "4.0.0"),
    ("bounced", "5.0.0"), ("Failed", "5.0.0"),
])
def test_a_status_or_action_outside_rfc_3463_and_3464_is_refused(action: str, status: str) -> None:
    with pytest.raises(ValueError):
        RecipientStatus(recipient="bob@remote.example", action=action, status=status)


def test_naive_times_are_taken_as_utc() -> None:
    raw = dsn([failed(last_attempt=NOW.replace(tzinfo=None))], arrival=ARRIVAL.replace(tzinfo=None),
              now=NOW.replace(tzinfo=None))
    assert blocks(raw)[0]["Arrival-Date"] == "Mon, 06 May 2024 02:08:09 +0000"
    assert blocks(raw)[1]["Last-Attempt-Date"] == "Mon, 06 May 2024 07:08:09 +0000"
    assert parse(raw)["Date"].datetime == NOW


def test_times_keep_their_own_offset() -> None:
    cest = timezone(timedelta(hours=2))
    raw = dsn(arrival=ARRIVAL.astimezone(cest))
    assert blocks(raw)[0]["Arrival-Date"] == "Mon, 06 May 2024 04:08:09 +0200"


# -- RET and the returned original (RFC 3461 §4.3) --------------------------------------


def test_ret_full_on_a_failure_returns_the_whole_original_as_message_rfc822() -> None:
    raw = dsn(ret="FULL")
    third = parts(raw)[2]
    assert third.get_content_type() == "message/rfc822"
    assert third["Content-Transfer-Encoding"] == "7bit"
    assert third_part_body(raw) == ORIGINAL
    inner = third.get_payload()[0]
    assert inner["Subject"] == "Quarterly figures"
    assert "the figures are attached." in inner.get_content()


def test_ret_is_read_without_regard_to_case() -> None:
    assert parts(dsn(ret="full"))[2].get_content_type() == "message/rfc822"


def test_ret_hdrs_returns_only_the_header_as_text_rfc822_headers() -> None:
    raw = dsn(ret="HDRS")
    third = parts(raw)[2]
    assert third.get_content_type() == "text/rfc822-headers"
    assert third_part_body(raw) == ORIGINAL_HEADER
    assert b"the figures are attached" not in raw


def test_without_ret_only_the_header_comes_back() -> None:
    raw = dsn(ret=None)
    assert parts(raw)[2].get_content_type() == "text/rfc822-headers"
    assert b"the figures are attached" not in raw


@pytest.mark.parametrize(("kind", "recipient"), [
    ("delay", RecipientStatus(recipient="bob@remote.example", action="delayed", status="4.4.1")),
    ("success", RecipientStatus(recipient="bob@remote.example", action="delivered", status="2.0.0")),
])
def test_a_report_without_a_failure_returns_the_header_even_with_ret_full(
        kind: str, recipient: RecipientStatus) -> None:
    raw = dsn([recipient], ret="FULL", kind=kind)
    assert parts(raw)[2].get_content_type() == "text/rfc822-headers"
    assert parts(raw)[2]["Content-Description"] == "Message Headers"
    assert b"the figures are attached" not in raw


def test_a_report_with_one_failure_among_delays_returns_the_whole_original() -> None:
    raw = dsn([delayed(), failed()], ret="FULL")
    assert parts(raw)[2].get_content_type() == "message/rfc822"


def test_an_original_within_the_size_cap_comes_back_whole() -> None:
    raw = dsn(ret="FULL", max_original=len(ORIGINAL))
    assert parts(raw)[2].get_content_type() == "message/rfc822"
    assert third_part_body(raw) == ORIGINAL


def test_an_original_over_the_size_cap_comes_back_as_its_header_with_a_note() -> None:
    raw = dsn(ret="FULL", max_original=len(ORIGINAL) - 1)
    assert parts(raw)[2].get_content_type() == "text/rfc822-headers"
    assert third_part_body(raw) == ORIGINAL_HEADER
    assert "too large to return in full" in parts(raw)[0].get_content()


def test_the_default_size_cap_is_ten_mebibytes() -> None:
    assert MAX_RETURNED_ORIGINAL == 10 * 1024 * 1024
    big = ORIGINAL + b"x" * 76 + b"\r\n"
    big += (b"y" * 998 + b"\r\n") * ((MAX_RETURNED_ORIGINAL - len(big)) // 1000 + 1)
    assert len(big) > MAX_RETURNED_ORIGINAL
    raw = dsn(ret="FULL", original=big)
    assert parts(raw)[2].get_content_type() == "text/rfc822-headers"
    assert len(raw) < 10_000


def test_a_header_over_the_size_cap_is_cut_after_a_whole_line() -> None:
    header = b"".join(b"X-Filler-%03d: %s\r\n" % (n, b"z" * 60) for n in range(50))
    original = header + b"\r\nbody\r\n"
    raw = dsn(original=original, ret="HDRS", max_original=1000)
    body = third_part_body(raw)
    assert len(body) <= 1000
    assert body.endswith(b"\r\n")
    assert header.startswith(body)
    assert body.count(b"\r\n") == 1000 // len(b"X-Filler-000: " + b"z" * 60 + b"\r\n")


def test_an_empty_original_leaves_the_third_part_out() -> None:
    types = [p.get_content_type() for p in parts(dsn(original=b""))]
    assert types == ["text/plain", "message/delivery-status"]


def test_an_original_without_a_blank_line_is_all_header() -> None:
    original = b"Subject: only a header\r\nX-Thing: 1\r\n"
    assert third_part_body(dsn(original=original)) == original


def test_bare_line_feeds_in_the_original_come_back_as_crlf() -> None:
    original = b"Subject: unix\nFrom: a@example.test\n\nline one\nline two\rthree\n"
    raw = dsn(original=original, ret="FULL")
    assert third_part_body(raw) == (
        b"Subject: unix\r\nFrom: a@example.test\r\n\r\nline one\r\nline two\r\nthree\r\n")
    assert third_part_body(dsn(original=original)) == b"Subject: unix\r\nFrom: a@example.test\r\n"


def test_an_8bit_original_is_returned_with_8bit_transfer_encoding() -> None:
    original = b"Subject: plain\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    raw = dsn(original=original, ret="FULL")
    assert parts(raw)[2].get_content_type() == "message/rfc822"
    assert parts(raw)[2]["Content-Transfer-Encoding"] == "8bit"
    assert parse(raw)["Content-Transfer-Encoding"] == "8bit"  # RFC 2045 §6.4
    assert third_part_body(raw) == original


def test_an_original_with_an_over_long_line_is_returned_as_binary() -> None:
    original = b"Subject: long\r\n\r\n" + b"a" * 1200 + b"\r\n"
    raw = dsn(original=original, ret="FULL")
    assert parts(raw)[2]["Content-Transfer-Encoding"] == "binary"
    assert parse(raw)["Content-Transfer-Encoding"] == "binary"


def test_an_original_with_a_utf8_header_comes_back_as_message_global() -> None:
    original = "Subject: Grüße\r\nFrom: jörg@bücher.example\r\n\r\nHallo\r\n".encode()
    assert parts(dsn(original=original, ret="FULL"))[2].get_content_type() == "message/global"
    assert parts(dsn(original=original, ret="HDRS"))[2].get_content_type() == "message/global-headers"


def test_boundary_lookalikes_in_the_original_do_not_break_the_report() -> None:
    original = (b"Subject: nested\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/mixed; boundary=\"=_abc\"\r\n\r\n"
                b"--=_abc\r\nContent-Type: text/plain\r\n\r\n--\r\n-- \r\n--=_\r\n--=_abc--\r\n")
    raw = dsn(original=original, ret="FULL")
    assert len(parts(raw)) == 3
    assert third_part_body(raw) == original
    assert len(blocks(raw)) == 2


# -- values from outside never break the structure --------------------------------------


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r", "\x85", "\u2028", "\r\n\t", "\x0b"])
def test_a_diagnostic_with_a_line_break_and_bcc_stays_one_field(newline: str) -> None:
    raw = dsn([failed(diagnostic=f"550 5.1.1 no such user{newline}Bcc: victim@example.test")])
    recipient = blocks(raw)[1]
    assert "Bcc" not in recipient
    assert list(recipient) == ["Final-Recipient", "Action", "Status", "Diagnostic-Code"]
    assert recipient["Diagnostic-Code"].startswith("smtp; 550 5.1.1 no such user")
    assert recipient["Diagnostic-Code"].endswith("Bcc: victim@example.test")
    assert "Bcc" not in parse(raw)
    assert not re.search(rb"\r\nBcc:", raw)


def test_a_diagnostic_cannot_end_the_recipient_block_or_add_one() -> None:
    forged = "550 gone\r\n\r\nFinal-Recipient: rfc822; forged@example.test\r\nAction: delivered"
    raw = dsn([failed(diagnostic=forged)])
    found = blocks(raw)
    assert len(found) == 2
    assert found[1]["Action"] == "failed"
    assert found[1]["Final-Recipient"] == "rfc822; bob@remote.example"


def test_a_boundary_that_occurs_in_the_original_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # The random source is the one thing faked: its first boundary is in the original.
    draws = iter(["00" * 16, "11" * 16, "22" * 16])
    monkeypatch.setattr("adapters.smtp.dsn.secrets.token_hex", lambda n: next(draws)[: 2 * n])
    taken = f"=_{'00' * 12}/{MTA}"
    original = f"Subject: trap\r\n\r\n--{taken}--\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n".encode()
    raw = dsn(original=original, ret="FULL")
    assert parse(raw).get_boundary() == f"=_{'11' * 12}/{MTA}"
    assert [p.get_content_type() for p in parts(raw)] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    assert third_part_body(raw) == original


def test_a_diagnostic_holding_a_mime_boundary_line_stays_in_its_field() -> None:
    diagnostic = f"550 x\r\n--=_{'0' * 24}/{MTA}--\r\nContent-Type: text/html\r\n\r\n<b>x</b>"
    raw = dsn([failed(diagnostic=diagnostic)], ret="FULL")
    assert [p.get_content_type() for p in parts(raw)] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    assert list(blocks(raw)[1]) == ["Final-Recipient", "Action", "Status", "Diagnostic-Code"]
    assert blocks(raw)[1]["Diagnostic-Code"].endswith("Content-Type: text/html <b>x</b>")


@pytest.mark.parametrize(("unsafe", "shown"), [
    ("\x00", "?"), ("\x1b[31m", "?[31m"), ("\x7f", "?"), ("\x9b", "?"), ("\u202e", "?"), ("\u2066", "?"),
    ("\udcff", "?"),  # a surrogate-escaped byte from a lenient decode
])
def test_control_characters_in_a_diagnostic_are_masked(unsafe: str, shown: str) -> None:
    recipient = blocks(dsn([failed(diagnostic=f"550 a{unsafe}b")]))[1]
    assert recipient["Diagnostic-Code"] == f"smtp; 550 a{shown}b"


def test_non_ascii_reply_text_is_masked_in_an_ascii_report() -> None:
    raw = dsn([failed(diagnostic="550 Empfänger unbekannt")])
    assert blocks(raw)[1]["Diagnostic-Code"] == "smtp; 550 Empf?nger unbekannt"
    assert raw.isascii()


def test_a_long_diagnostic_is_folded_and_unfolds_to_the_same_text() -> None:
    text = "550-5.7.1 " + " ".join(f"word{n}" for n in range(120))
    raw = dsn([failed(diagnostic=text)])
    assert blocks(raw)[1]["Diagnostic-Code"] == f"smtp; {text}"
    status_lines = [line for line in raw.split(b"\r\n") if line.startswith((b"Diagnostic-Code", b" word"))]
    assert len(status_lines) > 5
    assert all(len(line) <= 78 for line in status_lines)


def test_a_multiline_reply_becomes_one_line() -> None:
    text = "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check."
    assert blocks(dsn([failed(diagnostic=text)]))[1]["Diagnostic-Code"] == (
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 Please check.")


def test_an_over_long_diagnostic_is_cut() -> None:
    value = blocks(dsn([failed(diagnostic="550 " + "y" * (MAX_DIAGNOSTIC * 2))]))[1]["Diagnostic-Code"]
    assert value.endswith(" [...]")
    assert len(value.replace(" ", "")) <= MAX_DIAGNOSTIC + 20


def test_an_orcpt_that_decodes_to_crlf_cannot_add_a_field() -> None:
    raw = dsn([failed(original_recipient="rfc822;x@y+0D+0ABcc:+20victim@example.test")])
    recipient = blocks(raw)[1]
    assert "Bcc" not in recipient
    assert recipient["Original-Recipient"] == "rfc822; x@y Bcc: victim@example.test"


def test_an_envid_that_decodes_to_crlf_cannot_add_a_field() -> None:
    per_message = blocks(dsn(envid="id+0D+0AReporting-MTA:+20dns;+20evil.example"))[0]
    assert per_message["Reporting-MTA"] == f"dns; {MTA}"
    assert list(per_message) == ["Original-Envelope-Id", "Reporting-MTA", "Arrival-Date"]


def test_a_recipient_or_remote_host_with_crlf_cannot_add_a_field() -> None:
    raw = dsn([failed("bob@remote.example\r\nAction: delivered", remote_mta="mx.example\r\nStatus: 2.0.0")])
    recipient = blocks(raw)[1]
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Final-Recipient"] == "rfc822; bob@remote.example Action: delivered"
    assert recipient["Remote-MTA"] == "dns; mx.exampleStatus:2.0.0"


def test_a_sender_with_crlf_cannot_add_a_header_field() -> None:
    message = parse(dsn(sender="alice@example.test\r\nBcc: victim@example.test"))
    assert "Bcc" not in message
    assert len(message.get_all("To")) == 1


def test_a_malformed_message_id_in_the_original_is_not_copied() -> None:
    original = b"Message-ID: <a b@x>\r\nSubject: s\r\n\r\n"
    assert "References" not in parse(dsn(original=original))


@settings(max_examples=150, deadline=None)
@given(diagnostic=st.text(max_size=300), recipient=st.text(min_size=1, max_size=80),
       envid=st.none() | st.text(max_size=60), original=st.binary(max_size=400))
def test_no_outside_value_changes_the_shape_of_the_report(diagnostic: str, recipient: str, envid: str | None,
                                                          original: bytes) -> None:
    raw = dsn([failed(recipient, diagnostic=diagnostic, original_recipient="rfc822;" + recipient), delayed()],
              envid=envid, original=original, ret="FULL")
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    message = parse(raw)
    assert message.defects == []
    assert len(parts(raw)) == (3 if original else 2)
    found = blocks(raw)
    assert len(found) == 3
    assert set(found[1]) <= {"Original-Recipient", "Final-Recipient", "Action", "Status", "Diagnostic-Code"}
    assert (found[1]["Action"], found[1]["Status"]) == ("failed", "5.1.1")
    assert (found[2]["Action"], found[2]["Status"]) == ("delayed", "4.4.1")
    assert set(message) <= {"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
                            "Content-Type", "Content-Transfer-Encoding", "References"}
    assert len(message.get_all("To")) == 1


# -- SMTPUTF8 addresses (RFC 6533) ------------------------------------------------------


def test_a_non_ascii_recipient_is_of_the_utf8_type_in_a_global_report() -> None:
    raw = dsn([failed("用户@例子.example"), failed("bob@remote.example")], sender="jörg@bücher.example")
    status_part = BytesParser(policy=policy.default).parsebytes(raw).get_payload()[1]
    assert status_part.get_content_type() == "message/global-delivery-status"
    assert status_part["Content-Transfer-Encoding"] == "8bit"
    found = blocks(raw)
    assert found[1]["Final-Recipient"] == "utf-8; 用户@例子.example"
    assert found[2]["Final-Recipient"] == "rfc822; bob@remote.example"
    assert "To: <jörg@bücher.example>".encode() in raw  # RFC 6532 §3.2
    assert "<用户@例子.example>".encode() in parts(raw)[0].get_payload(decode=True)


def test_a_utf8_orcpt_keeps_its_own_form() -> None:
    orcpt = "utf-8;\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.example"  # RFC 6533 §3 utf-8-addr-xtext
    raw = dsn([failed("用户@例子.example", original_recipient=orcpt)])
    assert blocks(raw)[1]["Original-Recipient"] == "utf-8; \\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.example"


def test_an_orcpt_that_decodes_to_utf8_is_of_the_utf8_type() -> None:
    raw = dsn([failed(original_recipient="rfc822;j+C3+B6rg@example.test")])
    assert blocks(raw)[1]["Original-Recipient"] == "utf-8; jörg@example.test"
    assert parts(raw)[1].get_content_type() == "message/delivery-status"  # as parse() reads the global form
    assert b"message/global-delivery-status" in raw


def test_reply_text_keeps_its_utf8_in_a_global_report() -> None:
    raw = dsn([failed("用户@例子.example", diagnostic="550 用户不存在")])
    assert blocks(raw)[1]["Diagnostic-Code"] == "smtp; 550 用户不存在"


def test_an_ascii_report_stays_ascii() -> None:
    raw = dsn([failed(), delayed()], envid="x", ret="FULL")
    assert raw.isascii()
    assert parts(raw)[0].get_content_charset() == "us-ascii"


# -- the human-readable part ------------------------------------------------------------


@pytest.mark.parametrize(("kind", "subject", "recipient"), [
    ("failure", "Undelivered Mail Returned to Sender", failed()),
    ("delay", "Delayed Mail (still being retried)", delayed()),
    ("success", "Successful Mail Delivery Report",
     RecipientStatus(recipient="bob@remote.example", action="delivered", status="2.0.0")),
])
def test_the_subject_follows_the_kind_of_report(kind: str, subject: str, recipient: RecipientStatus) -> None:
    assert parse(dsn([recipient], kind=kind))["Subject"] == subject


def test_the_explanation_names_each_recipient_with_its_reason() -> None:
    raw = dsn([failed(remote_mta="mx1.remote.example", diagnostic="550 5.1.1 No such user"), delayed()])
    text = " ".join(parts(raw)[0].get_content().split())
    assert f"host {MTA}" in text
    assert "could not be delivered" in text
    assert "<bob@remote.example> (host mx1.remote.example): 550 5.1.1 No such user [5.1.1]" in text
    assert "<carol@remote.example>: delivery is delayed, still trying [4.4.1]" in text
    assert "header of the message is attached" in text


def test_the_delay_notice_says_how_long_and_until_when_it_is_retried() -> None:
    raw = dsn([delayed(will_retry_until=ARRIVAL + timedelta(days=5))], kind="delay")
    text = " ".join(parts(raw)[0].get_content().split())
    assert "THIS IS A WARNING ONLY" in text
    assert "could not be delivered for 5.0 hours" in text
    assert "retried until Sat, 11 May 2024 02:08:09 +0000" in text


# -- when to send one -------------------------------------------------------------------


@pytest.mark.parametrize(("sender", "expected"), [
    ("", False), ("<>", False), ("  ", False), ("alice@example.test", True), ("jörg@bücher.example", True),
])
def test_a_null_reverse_path_never_gets_a_dsn(sender: str, expected: bool) -> None:
    assert needs_dsn(sender) is expected


@pytest.mark.parametrize("sender", ["", "<>"])
def test_building_a_dsn_for_a_null_sender_is_refused(sender: str) -> None:
    with pytest.raises(ValueError, match="null reverse-path"):
        dsn(sender=sender)


@pytest.mark.parametrize("overrides", [
    {"recipients": []}, {"kind": "bounce"}, {"reporting_mta": "mail.example.test\r\nBcc: x"},
    {"reporting_mta": ""}, {"reporting_mta": "-bad-.example"},
])
def test_building_a_dsn_refuses_a_report_it_cannot_write(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dsn(**overrides)


@pytest.mark.parametrize(("notify", "kind", "expected"), [
    # RFC 3461 §4.1: no NOTIFY means failures (and, our choice, delays), not successes.
    (None, "failure", True), (None, "delay", True), (None, "success", False),
    ([], "failure", True), ([], "delay", True), ([], "success", False),
    (["NEVER"], "failure", False), (["NEVER"], "delay", False), (["NEVER"], "success", False),
    (["SUCCESS"], "success", True), (["SUCCESS"], "failure", False), (["SUCCESS"], "delay", False),
    (["FAILURE"], "failure", True), (["FAILURE"], "delay", False), (["FAILURE"], "success", False),
    (["DELAY"], "delay", True), (["DELAY"], "failure", False),
    (["SUCCESS", "FAILURE", "DELAY"], "success", True), (["SUCCESS", "FAILURE", "DELAY"], "delay", True),
    (["failure", "delay"], "failure", True),
])
def test_notify_decides_which_reports_are_sent(notify: list[str] | None, kind: str, expected: bool) -> None:
    assert should_notify(notify, kind) is expected


def test_should_notify_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError):
        should_notify(None, "bounce")


@pytest.mark.parametrize(("code", "text", "status"), [
    (550, "5.1.1 No such user", "5.1.1"),  # RFC 2034 §4
    (550, "5.7.26 Unauthenticated email", "5.7.26"),
    (451, "4.7.1 Greylisted, try again", "4.7.1"),
    (550, "No such user", "5.0.0"),  # no enhanced code: class.0.0
    (421, "Service not available", "4.0.0"),
    (550, "4.1.1 mismatched class", "5.0.0"),  # a code of another class is not believed
    (550, "5.1.1.1 too many parts", "5.0.0"),
    (250, "2.6.0 Queued as 123", "2.6.0"),
])
def test_status_from_reply_takes_the_enhanced_code_of_the_reply_class(code: int, text: str,
                                                                      status: str) -> None:
    assert status_from_reply(code, text) == status


def test_status_from_reply_refuses_a_code_that_is_not_a_final_reply() -> None:
    with pytest.raises(ValueError):
        status_from_reply(354, "Start mail input")
