"""Value rules of the write model (domain/model/values.py): what is accepted, in which
canonical form, and what is refused."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.model.errors import InvalidAddress, InvalidDomainName, InvalidMailboxName
from domain.model.values import (
    MAX_ADDRESS,
    MAX_DOMAIN,
    MAX_LOCAL_PART,
    MAX_MAILBOX_DEPTH,
    MAX_MAILBOX_NAME,
    domain_of,
    normalize_address,
    normalize_domain,
    normalize_flags,
    normalize_mailbox_name,
)

# -- domains ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.test", "example.test"),
        ("Example.TEST", "example.test"),
        ("  mail.example.test  ", "mail.example.test"),
        ("example.test.", "example.test"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("1mail.example", "1mail.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_domain_names_are_lower_cased_without_trailing_dot(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "localhost",
        "example..test",
        ".example.test",
        "example.test..",
        "-example.test",
        "example-.test",
        "exa_mple.test",
        "exa mple.test",
        "example\n.test",
        "example.test\n.",
        "example.test/",
        "bücher.example",
        "[127.0.0.1]",
        "127.0.0.1",
        "a" * 64 + ".example",
        ("a" * 60 + ".") * 5 + "example",
    ],
)
def test_invalid_domain_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidDomainName):
        normalize_domain(raw)


def test_domain_names_up_to_the_length_limit_are_accepted_and_longer_refused() -> None:
    labels = ["a" * 63, "b" * 63, "c" * 63, "d" * 61]
    longest = ".".join(labels)
    assert len(longest) == MAX_DOMAIN
    assert normalize_domain(longest) == longest
    with pytest.raises(InvalidDomainName):
        normalize_domain(longest[:-1] + "dd")


# -- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.test", "alice@example.test"),
        ("Alice@Example.TEST", "alice@example.test"),
        ("ALICE@EXAMPLE.TEST.", "alice@example.test"),
        ("first.last@example.test", "first.last@example.test"),
        ("user+tag@example.test", "user+tag@example.test"),
        ("o'brien@example.test", "o'brien@example.test"),
        ("a!#$%&'*+/=?^_`{|}~-@example.test", "a!#$%&'*+/=?^_`{|}~-@example.test"),
        ("x" * MAX_LOCAL_PART + "@example.test", "x" * MAX_LOCAL_PART + "@example.test"),
    ],
)
def test_addresses_are_normalised_to_lower_case(raw: str, expected: str) -> None:
    assert normalize_address(raw) == expected
    assert domain_of(expected) == expected.rpartition("@")[2]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "expected local-part@domain"),
        ("alice", "expected local-part@domain"),
        ("@example.test", "expected local-part@domain"),
        ("alice@", "domain is not a valid host name"),
        ("alice@localhost", "domain is not a valid host name"),
        ("alice@example..test", "domain is not a valid host name"),
        ("alice@example.test..", "domain is not a valid host name"),
        ("alice@[127.0.0.1]", "domain is not a valid host name"),
        ("alice@127.0.0.1", "domain is not a valid host name"),
        ("alice@bücher.example", "domain is not a valid host name"),
        ("alice@exa_mple.test", "domain is not a valid host name"),
        ("a..b@example.test", "outside RFC 5322 atext"),
        (".alice@example.test", "outside RFC 5322 atext"),
        ("alice.@example.test", "outside RFC 5322 atext"),
        ('"alice"@example.test', "outside RFC 5322 atext"),
        ("a@b@example.test", "outside RFC 5322 atext"),
        ("al(ice)@example.test", "outside RFC 5322 atext"),
        ("alice,bob@example.test", "outside RFC 5322 atext"),
        ("ålice@example.test", "outside RFC 5322 atext"),
        ("x" * (MAX_LOCAL_PART + 1) + "@example.test", "local part longer than"),
        ("alice @example.test", "spaces and control characters"),
        (" alice@example.test", "spaces and control characters"),
        ("alice@example.test ", "spaces and control characters"),
        ("alice\t@example.test", "spaces and control characters"),
        ("alice\r\n@example.test", "spaces and control characters"),
        ("alice\x00@example.test", "spaces and control characters"),
        ("alice\x7f@example.test", "spaces and control characters"),
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(InvalidAddress) as refused:
        normalize_address(raw)
    assert why in str(refused.value)
    assert repr(raw) in str(refused.value)


@pytest.mark.parametrize(
    "raw",
    [
        "\u212aelvin@example.test",  # KELVIN SIGN lower-cases to ASCII "k"
        "alice@\u212aelvin.example",
        "\u0130nbox@example.test",  # LATIN CAPITAL LETTER I WITH DOT ABOVE
        "alice@example.\u212a\u212a",
    ],
)
def test_non_ascii_letters_that_lower_case_to_ascii_are_refused(raw: str) -> None:
    """Otherwise a different string would be accepted as somebody else's address."""
    with pytest.raises(InvalidAddress):
        normalize_address(raw)


def test_non_ascii_letters_that_lower_case_to_ascii_are_refused_in_domains() -> None:
    with pytest.raises(InvalidDomainName):
        normalize_domain("\u212aelvin.example")


def test_addresses_up_to_the_length_limit_are_accepted_and_longer_refused() -> None:
    domain = ".".join(["d" * 63, "e" * 63, "f" * 61])
    longest = "l" * MAX_LOCAL_PART + "@" + domain
    assert len(longest) == MAX_ADDRESS
    assert normalize_address(longest) == longest
    with pytest.raises(InvalidAddress, match=f"longer than {MAX_ADDRESS}"):
        normalize_address("l" + longest)


# -- mailbox names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("INBOX", "INBOX"),
        ("inbox", "INBOX"),
        ("InBoX", "INBOX"),
        ("inbox/Receipts", "INBOX/Receipts"),
        ("Work/inbox", "Work/inbox"),
        ("Archive/2024/Q1", "Archive/2024/Q1"),
        ("Entwürfe", "Entwürfe"),
        ("日本語", "日本語"),
        ("with space", "with space"),
        ("a.b", "a.b"),
        ("x" * MAX_MAILBOX_NAME, "x" * MAX_MAILBOX_NAME),
        ("/".join(["n"] * MAX_MAILBOX_DEPTH), "/".join(["n"] * MAX_MAILBOX_DEPTH)),
    ],
)
def test_mailbox_names_are_accepted_and_inbox_is_case_insensitive(raw: str, expected: str) -> None:
    assert normalize_mailbox_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "must be 1 to"),
        ("x" * (MAX_MAILBOX_NAME + 1), "must be 1 to"),
        ("é" * (MAX_MAILBOX_NAME // 2 + 1), "must be 1 to"),
        ("a\tb", "control characters"),
        ("a\r\nb", "control characters"),
        ("a\x00", "control characters"),
        ("a\u0085b", "control characters"),
        ("a\u2028b", "control characters"),
        ("Entwu\u0308rfe", "normalization form C"),
        ("~x", "reserved for namespaces"),
        ("#news", "reserved for namespaces"),
        ("a\x7f", "control characters"),
        ("Work*", "LIST wildcards"),
        ("%", "LIST wildcards"),
        ("/Work", "empty hierarchy level"),
        ("Work/", "empty hierarchy level"),
        ("Work//Old", "empty hierarchy level"),
        (".", "'.' and '..'"),
        ("..", "'.' and '..'"),
        ("Work/../INBOX", "'.' and '..'"),
        ("/".join(["n"] * (MAX_MAILBOX_DEPTH + 1)), "deeper than"),
    ],
)
def test_invalid_mailbox_names_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(InvalidMailboxName) as refused:
        normalize_mailbox_name(raw)
    assert why in str(refused.value)


# -- flags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], []),
        (["\\Seen"], ["\\Seen"]),
        (["\\seen", "\\SEEN", "\\Seen"], ["\\Seen"]),
        (["\\deleted", "\\answered"], ["\\Answered", "\\Deleted"]),
        (["\\draft", "\\flagged"], ["\\Draft", "\\Flagged"]),
        (["$Junk", "\\Seen", "$Junk"], ["$Junk", "\\Seen"]),
        (["$Forwarded", "$MDNSent", "NonJunk"], ["$Forwarded", "$MDNSent", "NonJunk"]),
        (("Work", "Personal"), ["Personal", "Work"]),
        ({"k" * 64}, ["k" * 64]),
    ],
)
def test_flags_are_canonical_sorted_and_deduplicated(raw: list[str], expected: list[str]) -> None:
    assert normalize_flags(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (["\\Recent"], "unknown system flag"),
        (["\\Important"], "unknown system flag"),
        (["\\"], "unknown system flag"),
        ([""], "invalid keyword"),
        (["two words"], "invalid keyword"),
        (["(paren"], "invalid keyword"),
        (["paren)"], "invalid keyword"),
        (["brace{"], "invalid keyword"),
        (['quo"te'], "invalid keyword"),
        (["wild*"], "invalid keyword"),
        (["wild%"], "invalid keyword"),
        (["bracket]"], "invalid keyword"),
        (["ctl\x01"], "invalid keyword"),
        (["newline\n"], "invalid keyword"),
        (["\\Seen\n"], "unknown system flag"),
        (["k" * 65], "invalid keyword"),
        (["ümlaut"], "invalid keyword"),
        (["\\Seen", "ok", "bad word"], "invalid keyword"),
    ],
)
def test_invalid_flags_are_refused(raw: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_flags(raw)


# -- properties ------------------------------------------------------------------------

_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
_atoms = st.text(alphabet=_ATEXT, min_size=1, max_size=12)
_labels = st.from_regex(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?\Z")
_valid_addresses = st.builds(
    lambda local, domain, tld: f"{'.'.join(local)}@{'.'.join(domain)}.{tld}",
    st.lists(_atoms, min_size=1, max_size=4),
    st.lists(_labels, min_size=1, max_size=3),
    st.from_regex(r"\A[A-Za-z]{2,6}\Z"),
)
_FORBIDDEN = [chr(c) for c in range(0x21)] + ["\x7f"]


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_addresses)
def test_normalize_address_accepts_dot_atoms_and_is_idempotent(address: str) -> None:
    normalized = normalize_address(address)
    assert normalized == address.lower()
    assert normalize_address(normalized) == normalized
    assert normalize_address(normalized.upper()) == normalized


@settings(max_examples=250)
@given(st.text(max_size=80))
def test_normalize_address_output_is_a_fixed_point_of_ascii_without_spaces(raw: str) -> None:
    try:
        normalized = normalize_address(raw)
    except InvalidAddress:
        return
    assert normalized.isascii()
    assert normalized == normalized.lower()
    assert not any(ch in normalized for ch in _FORBIDDEN)
    assert normalize_address(normalized) == normalized


@settings(max_examples=150)
@given(_valid_addresses, st.sampled_from(_FORBIDDEN), st.integers(min_value=0, max_value=200))
def test_normalize_address_never_accepts_control_characters_or_spaces(
    address: str, bad: str, where: int
) -> None:
    where %= len(address) + 1
    with pytest.raises(InvalidAddress, match="spaces and control characters"):
        normalize_address(address[:where] + bad + address[where:])


@settings(max_examples=150)
@given(st.text(max_size=60))
def test_normalize_mailbox_name_is_idempotent_on_accepted_names(raw: str) -> None:
    try:
        name = normalize_mailbox_name(raw)
    except InvalidMailboxName:
        return
    assert normalize_mailbox_name(name) == name
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)


@settings(max_examples=250)
@given(st.text(max_size=70))
def test_normalize_flags_never_accepts_whitespace_or_control_characters(flag: str) -> None:
    try:
        accepted = normalize_flags([flag])
    except ValueError:
        return
    assert accepted == [flag] or accepted[0].lower() == flag.lower()
    assert accepted[0].isascii()
    assert not any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in accepted[0])


@settings(max_examples=150)
@given(st.text(max_size=60))
def test_normalize_domain_output_is_a_fixed_point_of_ascii_labels(raw: str) -> None:
    try:
        domain = normalize_domain(raw)
    except InvalidDomainName:
        return
    assert domain.isascii()
    assert not any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in domain)
    assert normalize_domain(domain) == domain


@settings(max_examples=150)
@given(st.lists(st.sampled_from(["\\seen", "\\Deleted", "\\FLAGGED", "$Junk", "work", "Work"])))
def test_normalize_flags_is_idempotent_and_sorted(flags: list[str]) -> None:
    once = normalize_flags(flags)
    assert normalize_flags(once) == once
    assert once == sorted(set(once))
