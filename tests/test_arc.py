"""ARC chain validation (RFC 8617 §5.2) on real chains sealed by dkimpy with a key in a
fake zone: an intact one-hop chain passes, a body changed after sealing fails, a seal
whose key is not published fails, and a message without ARC sets is ``none``."""

from __future__ import annotations

import dkim

from adapters.scanners.arc_verify import verify_arc
from adapters.smtp.dkim_signing import generate_keys
from tests.outbound_support import FakeResolver

RAW = (b"From: Bob <bob@sender.test>\r\nTo: list@forwarder.test\r\nSubject: Minutes\r\n"
       b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@sender.test>\r\n\r\n"
       b"The minutes of today's meeting.\r\n")


def sealed() -> tuple[bytes, FakeResolver]:
    """The message as forwarder.test passes it on: its Authentication-Results, then
    the ARC set (AAR, AMS, AS) it sealed with a fresh RSA key published in the zone."""
    key = generate_keys().rsa
    with_results = (b"Authentication-Results: forwarder.test; spf=pass smtp.mailfrom=bob@sender.test\r\n"
                    + RAW)
    arc_set = dkim.arc_sign(with_results, key.selector.encode(), b"forwarder.test", key.private_key,
                            b"forwarder.test")
    assert len(arc_set) == 3
    resolver = FakeResolver(txt={f"{key.selector}._domainkey.forwarder.test": [key.txt_value()]})
    return b"".join(arc_set) + with_results, resolver


def test_an_intact_chain_passes_and_a_message_without_one_is_none() -> None:
    message, resolver = sealed()
    assert message.lower().count(b"arc-seal:") == 1
    assert verify_arc(message, resolver).result == "pass"
    assert verify_arc(RAW, resolver).result == "none"


def test_a_body_changed_after_sealing_fails() -> None:
    message, resolver = sealed()
    tampered = message.replace(b"today's meeting", b"another meeting")
    assert tampered != message
    assert verify_arc(tampered, resolver).result == "fail"


def test_a_seal_whose_key_is_not_published_fails() -> None:
    message, _ = sealed()
    assert verify_arc(message, FakeResolver(txt={"forwarder.test": ["v=spf1 -all"]})).result == "fail"
