"""DKIM for outbound mail: keys, the records to publish, and two signatures per message.

Verification is dkimpy's, against a DNS stub that answers from the zone lines
``dns_records`` prints (no network): what an operator pastes is what a receiver reads.
"""

from __future__ import annotations

import base64
import datetime
import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from adapters.smtp.dkim_signing import (
    DkimKey,
    DkimSigningError,
    DnsRecord,
    DomainKeys,
    dns_records,
    generate_keys,
    include_headers,
    mta_sts_policy,
    selectors_for,
    sign,
    to_crlf,
)

# RFC 8463 Appendix A: the example Ed25519 key, and its published record's p= value.
RFC8463_SEED_B64 = b"nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
RFC8463_PUBLIC_B64 = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

# A test RSA-2048 key made with `openssl genpkey`, and its public key as
# `openssl pkey -pubout -outform DER | base64 -w0` prints it: an independent p= value.
RSA_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCyMDf8IwneGhcs
yov6/ZFRNGfVnXAcuYcLMrvbYRJxEz7YyiT457IVclNVhgnRj2WKYlo3Ek+yJxKS
XDnXlvuBGGLkPQBRohY2anjYfdFIZFvSYw6ppA0H84bA2c7TlNhPvaUIJk3GJwMK
b+tUp8v6XJQZBOWWY93GMITbaa4+Z6X24oizBaYX5sbnXiDz0ZFVae2H3XqNEhP5
qt05cFWF4qx+8/Cv/Kh62KXa7bXgucUtcKXCI30WY/BHF/k7onpozzwJ3y7xAeG6
0y4V0l7TqaZhoCsa1Z64t6mWgmkq7RwL1nU+hlprBd/dcy+HBkcxw+7ZJl6bLlqT
sJT+2hE9AgMBAAECggEAUbfCXRwWkOinOy/yrVsvky209ubafRnqoEyWkZ/9jKT2
XAasmQftCF/jbuPnSdd5ClNbq0j3Cq1Xm463KjOASS6NX73IESgEBtWicSqWWZxI
7f3mwg7NuRlKcdQRwb/PyhYfgtLKNTc78kPsiWjgp4Ngme7Aec137kXfEB7xvYUX
9WMTc1EurFerUekywux2bTnKFjHCTgpzbYWqf5QfZ8tc+XQKWSo3N4nnTKbRXU8A
n5z4Es+jgi7ihpPJ8MmNCrBZMCCdTlqvsuXBvrfhUYU/4pbrVatPSceY/FB8M8+7
Gyoi7cT0R1l3Ud65eI8IfYUWz16L3xgPESKEwSdEwwKBgQDjQbxJfN8FGj3rxPPN
2Rm150WFt5SKmJLkcRFCK5A8mx9B9EVoteeNO4ID02zqnZ4eZx46w39vRjXXBPrd
US83G0TsP7FydNbhFTSQLXfT7ANLnFQ5xzokyPdicvqxeuBBWlnouvvseOJLmKQt
2zGc5v26+jMYDspVSchmZWV9DwKBgQDIubbrWS/S3G37KxlN0XPNkPf/GUKz1Mm4
D+JF8LOfeWIz6nLxorra7uxGfHcn/e3s6WRsKdlDyU2T7b+qtUQ+OoetMZaFIkLB
8bDA+G8Nd6bR0E6qKVeGAVLlrVuIT3c6CjmNl5RPOGpYlDni7LNW+zGfnC2QRWW1
xFeVl63k8wKBgQDbq24Khwa40u3p2d5lKybcG2qrX5HZCrRq1xR8pslsm/Fx+mGh
XrwtW8lIU3Vjr+nor3qcCN9Eu1RNvMWVauU92kEcMFEhNumCdtHxT9IVanyg+MK9
euOsLQpcApJrPkBJS8G+4gekRBFSS4DfxpJFfU7kDveWmK1iFcj9maOpZwKBgCh0
BUF5QAInGqM8FGVyiPws804eMSs8/0pxKREfaZQCSqBb5757JV1qOYQbIYiVzJWq
k+qYpIjc0R23FKG61n4UHbPyAnviY8Hii9TYPMliC+TNLo1st47yRVq0jXXzTfwM
g3zdx64PmJ8xgFkTizFEfsPEHgqtccooP96OKyWxAoGATP8YGT2KQXaUpLhAfqRY
H8eiIiC4EQH9W8Y12p9BS3ACFH8yyP/zmiCmOqt53cMZrDecuxlIQ7zev3Og2ASm
1WZA2WO8xHfsq25X6ogjriudGhs2mTALzSBlpuIiNkEY/MuP1Yc/hy9PcoPy7aUs
X+lIUJS4OsiyZye1W95ZKUM=
-----END PRIVATE KEY-----
"""
RSA_SPKI_B64 = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsjA3/CMJ3hoXLMqL+v2RUTRn1Z1wHLmHCzK722EScRM+2Mok"
    "+OeyFXJTVYYJ0Y9limJaNxJPsicSklw515b7gRhi5D0AUaIWNmp42H3RSGRb0mMOqaQNB/OGwNnO05TYT72lCCZNxicD"
    "Cm/rVKfL+lyUGQTllmPdxjCE22muPmel9uKIswWmF+bG514g89GRVWnth916jRIT+ardOXBVheKsfvPwr/yoetil2u21"
    "4LnFLXClwiN9FmPwRxf5O6J6aM88Cd8u8QHhutMuFdJe06mmYaArGtWeuLeploJpKu0cC9Z1PoZaawXf3XMvhwZHMcPu"
    "2SZemy5ak7CU/toRPQIDAQAB"
)

# A 512-bit key (openssl genpkey): below RFC 8301 §3.2's 1024-bit floor.
RSA_512_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAt93jcmBWRY3i1lvj
Yd9+f6Yn6mn8qpckZ7PFMn09jVGFfQRA3EOZAEv3G+8ANnVfEkVEgJ6retHel+uL
8OWV8wIDAQABAkBP55UNwsIbThMTdzF0+kyeKtZT8CWG+VIv4xdC3tyeCd/n6aFF
qKmIYw39wRDtGFFlgl+oXmiJXJ/bk+ROUYj5AiEA3plm5HW8wZ0mLGs4q3KX8fNP
eyFItkhPzgqFVivJ0JUCIQDTdKyoWayAUNU3Rb/KMp5QXlJduqPMchvffdeuZuuC
ZwIgeaoGnt/rJzepYaXI94xOmCOQUZBDmb20QL1nW03bpHECIQDNJ4XcUCRs2gAD
gEhzhGjU0K5ZAZup34vracy4CGK2QQIhALpxwVuZC81bWoQFkLcapiBkQZMwIepQ
rJTLee9i/SkZ
-----END PRIVATE KEY-----
"""

DOMAIN = "football.example.com"
MX = "mx.football.example.com"

# RFC 8463 Appendix A's message, with bare LF line ends as a local program writes them.
MESSAGE = (
    b"From: Joe SixPack <joe@football.example.com>\n"
    b"To: Suzie Q <suzie@shopping.example.net>\n"
    b"Subject: Is dinner ready?\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\n"
    b"Received: from client1.football.example.com by mx.football.example.com\n"
    b"\n"
    b"Hi.\n"
    b"\n"
    b"We lost the game.  Are you hungry yet?\n"
    b"\n"
    b"Joe.\n"
)


@pytest.fixture(scope="module")
def keys() -> DomainKeys:
    return DomainKeys(
        ed25519=DkimKey.from_private_key("ed25519", "ed20260314", RFC8463_SEED_B64),
        rsa=DkimKey.from_private_key("rsa", "rsa20260314", RSA_PEM),
    )


def zone_dns(records: list[DnsRecord]):
    """A TXT resolver over the records' zone lines: the quoted strings of each line,
    joined as a resolver joins them (RFC 6376 §3.6.2.2)."""
    table: dict[bytes, bytes] = {}
    for record in records:
        if record.type != "TXT":
            continue
        line = record.zone_line()
        owner = line.split(" ", 1)[0]
        strings = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
        table[owner.encode()] = "".join(re.sub(r"\\(.)", r"\1", s) for s in strings).encode()

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return table.get(name)

    return dnsfunc


@pytest.fixture(scope="module")
def dnsfunc(keys: DomainKeys):
    return zone_dns(dns_records(DOMAIN, keys, mx_host=MX, mta_sts_id="20260314"))


def tags(field_value: bytes) -> dict[bytes, bytes]:
    return dkim.util.parse_tag_value(field_value)


def signatures(message: bytes) -> list[dict[bytes, bytes]]:
    headers, _body = dkim.rfc822_parse(message)
    return [tags(value) for name, value in headers if name.lower() == b"dkim-signature"]


def results(message: bytes, dnsfunc) -> list[bool | str]:
    """Each signature's result, top first: True, False, or the error dkimpy raised."""
    outcomes: list[bool | str] = []
    for idx in (0, 1):
        try:
            outcomes.append(dkim.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException as error:
            outcomes.append(f"{type(error).__name__}: {error}")
    return outcomes


# --- signing ----------------------------------------------------------------------------


def test_a_signed_message_carries_two_signatures_that_both_verify(keys, dnsfunc) -> None:
    signed = sign(MESSAGE, DOMAIN, keys)
    assert results(signed, dnsfunc) == [True, True]
    assert dkim.verify(signed, dnsfunc=dnsfunc)  # the top one, as simple verifiers check


def test_the_rsa_signature_is_on_top_and_the_ed25519_one_below_it(keys) -> None:
    sigs = signatures(sign(MESSAGE, DOMAIN, keys))
    assert [(s[b"a"], s[b"s"]) for s in sigs] == [
        (b"rsa-sha256", b"rsa20260314"),
        (b"ed25519-sha256", b"ed20260314"),
    ]
    assert {s[b"d"] for s in sigs} == {DOMAIN.encode()}


def test_both_signatures_use_relaxed_canonicalization_and_sign_the_usual_headers_with_from_twice(
    keys,
) -> None:
    for sig in signatures(sign(MESSAGE, DOMAIN, keys)):
        assert sig[b"c"] == b"relaxed/relaxed"
        signed = [name.strip() for name in re.sub(rb"\s+", b"", sig[b"h"]).split(b":")]
        # Received is present but never signed (RFC 6376 §5.4.1); From is over-signed.
        assert signed == [b"from", b"to", b"subject", b"date", b"message-id", b"from"]


def test_the_body_hash_is_the_one_rfc_8463_appendix_a_publishes_for_its_message(keys) -> None:
    for sig in signatures(sign(MESSAGE, DOMAIN, keys)):
        assert sig[b"bh"] == b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="


def test_bare_line_feeds_are_signed_and_returned_as_crlf(keys, dnsfunc) -> None:
    signed = sign(MESSAGE, DOMAIN, keys)
    assert re.search(rb"(?<!\r)\n", signed) is None
    assert signed.endswith(MESSAGE.replace(b"\n", b"\r\n"))
    assert to_crlf(b"a\rb\nc\r\nd") == b"a\r\nb\r\nc\r\nd"
    assert results(signed, dnsfunc) == [True, True]


def test_a_message_that_is_already_crlf_is_left_as_it_is_below_the_signatures(keys) -> None:
    wire = MESSAGE.replace(b"\n", b"\r\n")
    signed = sign(wire, DOMAIN, keys)
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert signed.endswith(b"\r\n" + wire)


def test_whitespace_changes_in_transit_keep_both_signatures_valid(keys, dnsfunc) -> None:
    signed = sign(MESSAGE, DOMAIN, keys)
    refolded = signed.replace(b"Subject: Is dinner ready?", b"Subject:  Is dinner\r\n\tready?")
    padded = refolded.replace(b"Joe.\r\n", b"Joe.   \r\n\r\n\r\n")
    assert padded != signed
    assert results(padded, dnsfunc) == [True, True]


def test_a_changed_body_fails_both_signatures(keys, dnsfunc) -> None:
    signed = sign(MESSAGE, DOMAIN, keys)
    tampered = signed.replace(b"We lost the game.", b"We won the game.")
    assert tampered != signed
    outcomes = results(tampered, dnsfunc)
    assert [str(o).startswith("ValidationError: body hash mismatch") for o in outcomes] == [True, True]


def test_a_changed_from_fails_both_signatures(keys, dnsfunc) -> None:
    signed = sign(MESSAGE, DOMAIN, keys)
    tampered = signed.replace(b"From: Joe SixPack <joe@", b"From: Joe SixPack <ceo@")
    assert tampered != signed
    assert results(tampered, dnsfunc) == [False, False]


class _NoExtraFrom(list):
    """dkimpy's verifier adds a From of its own to h= (its bug #644046 workaround); a plain
    RFC 6376 verifier does not, and only the signer's over-signing protects it."""

    def append(self, item: bytes) -> None:
        pass


class PlainVerifier(dkim.DKIM):
    def verify_headerprep(self, idx: int = 0):
        prep = super().verify_headerprep(idx)
        if not prep:
            return prep
        sig, include, sigheaders = prep
        return sig, _NoExtraFrom(include), sigheaders


def test_a_from_added_above_the_signed_one_fails_because_from_is_over_signed(keys, dnsfunc) -> None:
    forged_from = b"From: The Bank <security@bank.example>\r\n"
    signed = sign(MESSAGE, DOMAIN, keys)
    at = signed.index(b"From: Joe")
    forged = signed[:at] + forged_from + signed[at:]
    assert results(forged, dnsfunc) == [False, False]
    plain = PlainVerifier(forged)
    assert [plain.verify(idx=i, dnsfunc=dnsfunc) for i in (0, 1)] == [False, False]

    # Why: the same forgery on a signature whose h= names From only once passes a plain verifier.
    wire = to_crlf(MESSAGE)
    once = dkim.DKIM(wire).sign(
        b"rsa20260314", DOMAIN.encode(), RSA_PEM, canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject"],
    )
    at = wire.index(b"From: Joe")
    assert PlainVerifier(once + wire[:at] + forged_from + wire[at:]).verify(dnsfunc=dnsfunc)


def test_list_unsubscribe_fields_and_repeated_fields_are_each_signed(keys, dnsfunc) -> None:
    message = (
        b"From: news@football.example.com\nTo: a@example.net\nTo: b@example.net\nSubject: x\n"
        b"List-Unsubscribe: <https://football.example.com/u/1>\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\nX-Mailer: ledgermail\n\nbody\n"
    )
    signed = sign(message, DOMAIN, keys)
    assert include_headers(to_crlf(message)) == [
        b"from", b"to", b"to", b"subject", b"list-unsubscribe", b"list-unsubscribe-post", b"from",
    ]
    assert results(signed, dnsfunc) == [True, True]
    # RFC 8058 §3.1: removing List-Unsubscribe-Post must break the signatures.
    stripped = signed.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"")
    assert results(stripped, dnsfunc) == [False, False]


def test_an_explicit_header_list_replaces_the_default_but_from_is_always_signed(keys, dnsfunc) -> None:
    signed = sign(MESSAGE, DOMAIN, keys, headers=[b"Subject"])
    for sig in signatures(signed):
        assert re.sub(rb"\s+", b"", sig[b"h"]) == b"from:subject:from"
    assert results(signed, dnsfunc) == [True, True]
    # To is not covered now, so changing it keeps the signatures valid.
    assert results(signed.replace(b"Suzie Q", b"Someone Else"), dnsfunc) == [True, True]


@pytest.mark.parametrize("name", [b"Received", b"Return-Path", b"Bcc", b"DKIM-Signature"])
def test_header_fields_that_must_not_be_signed_are_refused(keys, name: bytes) -> None:
    with pytest.raises(DkimSigningError, match="must not be signed"):
        sign(MESSAGE, DOMAIN, keys, headers=[b"Subject", name])


@pytest.mark.parametrize(
    "message",
    [
        b"To: a@example.net\nSubject: no sender\n\nbody\n",
        b"From: a@football.example.com\nFrom: b@football.example.com\n\nbody\n",
    ],
)
def test_a_message_without_exactly_one_from_is_refused(keys, message: bytes) -> None:
    with pytest.raises(DkimSigningError, match="From fields, not exactly one"):
        sign(message, DOMAIN, keys)


def test_a_message_with_a_broken_header_is_refused(keys) -> None:
    with pytest.raises(DkimSigningError, match="cannot be parsed"):
        sign(b"From: a@football.example.com\nthis is not a header\n\nbody\n", DOMAIN, keys)


def test_freshly_generated_keys_sign_and_verify_against_their_own_records() -> None:
    fresh = generate_keys()
    signed = sign(MESSAGE, "example.org", fresh)
    dns = zone_dns(dns_records("example.org", fresh, mx_host="mx.example.org", mta_sts_id=None))
    assert results(signed, dns) == [True, True]


# --- keys -------------------------------------------------------------------------------


def test_the_generated_rsa_key_is_2048_bits_pkcs8_and_matches_its_published_value() -> None:
    fresh = generate_keys()
    assert fresh.rsa.private_key.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    key = serialization.load_pem_private_key(fresh.rsa.private_key, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b64decode(fresh.rsa.public_key) == der


def test_the_generated_ed25519_key_is_the_base64_of_a_32_octet_seed_matching_its_public_value() -> None:
    fresh = generate_keys()
    seed = base64.b64decode(fresh.ed25519.private_key, validate=True)
    assert len(seed) == 32
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(fresh.ed25519.public_key) == raw
    assert len(raw) == 32


def test_every_generation_makes_new_keys() -> None:
    first, second = generate_keys(), generate_keys()
    assert first.ed25519.private_key != second.ed25519.private_key
    assert first.rsa.private_key != second.rsa.private_key


def test_selectors_name_the_creation_date_and_step_a_letter_when_taken() -> None:
    day = datetime.date(2026, 3, 14)
    assert selectors_for(day) == ("ed20260314", "rsa20260314")
    assert selectors_for(day, taken={"ed20260314", "rsa20260314"}) == ("ed20260314b", "rsa20260314b")
    assert selectors_for(day, taken={"RSA20260314B", "rsa20260314"}) == ("ed20260314c", "rsa20260314c")
    assert generate_keys(today=day, taken={"ed20260314"}).selectors == ("ed20260314b", "rsa20260314b")


def test_generated_selectors_default_to_todays_utc_date() -> None:
    before = datetime.datetime.now(datetime.UTC).date()
    fresh = generate_keys()
    after = datetime.datetime.now(datetime.UTC).date()
    assert fresh.selectors in {selectors_for(before), selectors_for(after)}


def test_keys_rebuilt_from_their_private_bytes_are_the_same_keys() -> None:
    fresh = generate_keys()
    again = DomainKeys(
        ed25519=DkimKey.from_private_key("ed25519", fresh.ed25519.selector, fresh.ed25519.private_key),
        rsa=DkimKey.from_private_key("rsa", fresh.rsa.selector, fresh.rsa.private_key),
    )
    assert again == fresh


def test_the_rfc_8463_example_seed_gives_the_rfc_8463_example_public_key(keys) -> None:
    assert keys.ed25519.public_key == RFC8463_PUBLIC_B64


@pytest.mark.parametrize(
    ("algorithm", "private_key", "problem"),
    [
        ("rsa", RSA_512_PEM, "at least 1024"),
        ("rsa", b"not a key", "not an unencrypted PEM key"),
        ("ed25519", base64.b64encode(b"\x01" * 31), "31 octets, not 32"),
        ("ed25519", b"!!!", "not base64"),
        ("dsa", RSA_PEM, "unknown DKIM key algorithm"),
    ],
)
def test_unusable_private_keys_are_refused(algorithm: str, private_key: bytes, problem: str) -> None:
    with pytest.raises(DkimSigningError, match=problem):
        DkimKey.from_private_key(algorithm, "s1", private_key)  # type: ignore[arg-type]


def test_an_ed25519_key_made_by_pem_is_refused_where_rsa_is_expected() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(DkimSigningError, match="not an RSA key"):
        DkimKey.from_private_key("rsa", "s1", pem)


def test_bad_selectors_and_a_shared_selector_are_refused(keys) -> None:
    with pytest.raises(DkimSigningError, match="bad DKIM selector"):
        DkimKey("rsa", "has_underscore", RSA_PEM, RSA_SPKI_B64)
    with pytest.raises(DkimSigningError, match="different selectors"):
        DomainKeys(ed25519=keys.ed25519, rsa=DkimKey("rsa", keys.ed25519.selector, RSA_PEM, RSA_SPKI_B64))
    with pytest.raises(DkimSigningError, match="an Ed25519 key and an RSA key"):
        DomainKeys(ed25519=keys.rsa, rsa=keys.ed25519)


def test_private_keys_never_show_in_a_repr(keys) -> None:
    shown = repr(keys)
    assert RFC8463_SEED_B64.decode() not in shown
    assert "PRIVATE KEY" not in shown
    assert RFC8463_PUBLIC_B64 in shown


# --- DNS records ------------------------------------------------------------------------


def test_the_records_to_publish_are_exactly_these(keys) -> None:
    records = dns_records(
        "Football.Example.COM.", keys, mx_host="MX.football.example.com", mta_sts_id="20260314"
    )
    assert [(r.name, r.type, r.value) for r in records] == [
        ("football.example.com", "MX", "10 mx.football.example.com."),
        ("football.example.com", "TXT", "v=spf1 mx -all"),
        ("ed20260314._domainkey.football.example.com", "TXT", f"v=DKIM1; k=ed25519; p={RFC8463_PUBLIC_B64}"),
        ("rsa20260314._domainkey.football.example.com", "TXT", f"v=DKIM1; k=rsa; p={RSA_SPKI_B64}"),
        ("_dmarc.football.example.com", "TXT", "v=DMARC1; p=quarantine"),
        ("_mta-sts.football.example.com", "TXT", "v=STSv1; id=20260314"),
    ]
    assert "https://mta-sts.football.example.com/.well-known/mta-sts.txt" in records[-1].note


def test_the_zone_lines_are_exactly_these(keys) -> None:
    records = dns_records(DOMAIN, keys, mx_host=MX, mta_sts_id="20260314")
    rsa_value = f"v=DKIM1; k=rsa; p={RSA_SPKI_B64}"
    assert len(rsa_value) == 410
    assert [r.zone_line() for r in records] == [
        "football.example.com. IN MX 10 mx.football.example.com.",
        'football.example.com. IN TXT "v=spf1 mx -all"',
        f'ed20260314._domainkey.football.example.com. IN TXT "v=DKIM1; k=ed25519; p={RFC8463_PUBLIC_B64}"',
        f'rsa20260314._domainkey.football.example.com. IN TXT "{rsa_value[:255]}" "{rsa_value[255:]}"',
        '_dmarc.football.example.com. IN TXT "v=DMARC1; p=quarantine"',
        '_mta-sts.football.example.com. IN TXT "v=STSv1; id=20260314"',
    ]
    assert records[0].zone_line(ttl=3600) == "football.example.com. 3600 IN MX 10 mx.football.example.com."


def test_the_ed25519_record_is_the_one_rfc_8463_appendix_a_publishes() -> None:
    key = DkimKey.from_private_key("ed25519", "brisbane", RFC8463_SEED_B64)
    assert key.txt_value() == "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


@pytest.mark.parametrize(
    ("length", "strings"),
    [(0, [0]), (1, [1]), (255, [255]), (256, [255, 1]), (510, [255, 255]), (511, [255, 255, 1])],
)
def test_zone_lines_split_txt_values_into_strings_of_at_most_255_octets(
    length: int, strings: list[int]
) -> None:
    value = "".join(chr(ord("a") + i % 26) for i in range(length))
    line = DnsRecord("x.example.com", "TXT", value).zone_line()
    parts = re.findall(r'"([^"]*)"', line)
    assert [len(p) for p in parts] == strings
    assert "".join(parts) == value


def test_zone_lines_escape_quotes_and_backslashes_after_splitting() -> None:
    value = "a" * 254 + '"' + "\\b"
    line = DnsRecord("x.example.com", "TXT", value).zone_line()
    assert line == 'x.example.com. IN TXT "' + "a" * 254 + '\\"" "\\\\b"'


def test_non_ascii_txt_values_are_refused() -> None:
    with pytest.raises(DkimSigningError, match="ASCII"):
        DnsRecord("x.example.com", "TXT", "caf\u00e9").zone_line()


def test_the_dmarc_record_names_a_report_address_only_when_given(keys) -> None:
    records = dns_records(DOMAIN, keys, mx_host=MX, mta_sts_id=None, dmarc_rua="dmarc@football.example.com")
    dmarc = [r for r in records if r.name.startswith("_dmarc.")]
    assert [r.value for r in dmarc] == ["v=DMARC1; p=quarantine; rua=mailto:dmarc@football.example.com"]
    for bad in ["not-an-address", "a@b.example,mailto:c@d.example", "a@b.example; p=none", "a@b.example!10m"]:
        with pytest.raises(DkimSigningError, match="DMARC report address"):
            dns_records(DOMAIN, keys, mx_host=MX, mta_sts_id=None, dmarc_rua=bad)


def test_without_an_mta_sts_id_there_is_no_mta_sts_record(keys) -> None:
    records = dns_records(DOMAIN, keys, mx_host=MX, mta_sts_id=None)
    assert [r.name for r in records if "mta-sts" in r.name] == []
    assert len(records) == 5


@pytest.mark.parametrize("sts_id", ["", "a" * 33, "2026-03-14", "id with space"])
def test_a_bad_mta_sts_id_is_refused(keys, sts_id: str) -> None:
    with pytest.raises(DkimSigningError, match="MTA-STS id"):
        dns_records(DOMAIN, keys, mx_host=MX, mta_sts_id=sts_id)


@pytest.mark.parametrize(
    "domain", ["localhost", "-bad.example.com", "bad_.example.com", "caf\u00e9.example", ""]
)
def test_names_that_are_not_mail_domains_are_refused(keys, domain: str) -> None:
    with pytest.raises(DkimSigningError, match="not a mail domain name"):
        dns_records(domain, keys, mx_host=MX, mta_sts_id=None)
    with pytest.raises(DkimSigningError, match="not a mail domain name"):
        dns_records(DOMAIN, keys, mx_host=domain, mta_sts_id=None)
    with pytest.raises(DkimSigningError, match="not a mail domain name"):
        sign(MESSAGE, domain, keys)


def test_the_mta_sts_policy_file_starts_in_testing_mode_for_the_mx_host() -> None:
    assert mta_sts_policy("MX.football.example.com.") == (
        "version: STSv1\nmode: testing\nmx: mx.football.example.com\nmax_age: 86400\n"
    )
    assert mta_sts_policy(MX, mode="enforce", max_age=604800) == (
        "version: STSv1\nmode: enforce\nmx: mx.football.example.com\nmax_age: 604800\n"
    )
    with pytest.raises(DkimSigningError, match="enforce, testing or none"):
        mta_sts_policy(MX, mode="strict")
    with pytest.raises(DkimSigningError, match="max_age"):
        mta_sts_policy(MX, max_age=31557601)


def test_rsa_signatures_through_openssl_are_the_bytes_dkimpy_would_compute() -> None:
    import hashlib

    from dkim import crypto

    from adapters.smtp import dkim_signing

    keys = generate_keys()
    private = crypto.parse_pem_private_key(keys.rsa.private_key)
    for payload in (b"", b"abc", b"x" * 10_000):
        digest = dkim.HashThrough(hashlib.sha256())
        digest.update(payload)
        fast = dkim_signing._rsa_sign_with_openssl(digest, private)
        assert fast == dkim_signing._DKIMPY_RSA_SIGN(digest, private)
        assert len(fast) == 256
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkim_signing._rsa_sign_with_openssl
