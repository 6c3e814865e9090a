"""The documentation keeps up with the code: every RFC the code cites has a status, and
every EHLO keyword, IMAP capability and POP3 CAPA tag the running listeners advertise
belongs to an RFC documented as implemented (Yes or Partial)."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from adapters.config import Settings
from tests.imap_support import PASSWORD, RawImap, add_user, running_imap
from tests.pop3_support import RawPop3, running_pop3
from tests.smtp_support import client_context, running_smtp

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("domain", "projections", "adapters", "api")
STATUSES = {"Yes", "Partial", "No"}


def rfc_table() -> dict[str, str]:
    rows: dict[str, str] = {}
    lines = (ROOT / "docs" / "rfc.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| RFC"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    status_at = columns.index("Status")
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        match = re.fullmatch(r"RFC (\d{3,5})", cells[0])
        if len(cells) == len(columns) and match:
            rows[match.group(1)] = cells[status_at]
    return rows


def rfcs_cited_in_code() -> dict[str, str]:
    cited: dict[str, str] = {}
    for directory in CODE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            for number in re.findall(r"RFC (\d{3,5})", path.read_text()):
                cited.setdefault(number, str(path.relative_to(ROOT)))
    return cited


def test_every_rfc_row_has_a_known_status() -> None:
    table = rfc_table()
    assert len(table) >= 30
    assert {number: s for number, s in table.items() if s not in STATUSES} == {}


def test_every_rfc_cited_in_the_code_is_listed_in_docs_rfc_md() -> None:
    table = rfc_table()
    cited = rfcs_cited_in_code()
    assert len(cited) >= 5
    assert {number: where for number, where in cited.items() if number not in table} == {}


def test_every_setting_is_in_docs_configuration_md() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    keys = []
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys += [f"{name}.{field}" for field in kind.model_fields]
        else:
            keys.append(name)
    assert "imap.idle_timeout" in keys and "listen.imaps" in keys
    assert [key for key in keys if f"`{key}`" not in text] == []


#: EHLO keyword -> the RFC that defines it.
EHLO_KEYWORDS = {"PIPELINING": "2920", "SIZE": "1870", "8BITMIME": "6152", "SMTPUTF8": "6531",
                 "ENHANCEDSTATUSCODES": "2034", "DSN": "3461", "STARTTLS": "3207", "AUTH": "4954",
                 "REQUIRETLS": "8689"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_keyword_the_smtp_listeners_advertise_is_documented_as_implemented(store: Any) -> None:
    advertised: set[str] = set()
    with running_smtp(store) as server:
        with smtplib.SMTP("127.0.0.1", server.mx) as client:
            client.ehlo("docs.test")
            advertised |= {keyword.upper() for keyword in client.esmtp_features}
        with smtplib.SMTP("127.0.0.1", server.submission) as client:
            client.starttls(context=client_context())
            client.ehlo("docs.test")
            advertised |= {keyword.upper() for keyword in client.esmtp_features}
    assert {"PIPELINING", "STARTTLS", "AUTH", "DSN"} <= advertised
    unknown = advertised - set(EHLO_KEYWORDS)
    assert unknown == set(), f"add these EHLO keywords to EHLO_KEYWORDS and docs/rfc.md: {unknown}"
    table = rfc_table()
    assert {k: table.get(EHLO_KEYWORDS[k]) for k in advertised
            if table.get(EHLO_KEYWORDS[k]) not in ("Yes", "Partial")} == {}


#: IMAP capability -> the RFC that defines it. Every token a listener advertises must be
#: here; a new one fails the test below until it is added here and to docs/rfc.md.
IMAP_CAPABILITIES = {
    "IMAP4REV1": "3501", "IMAP4REV2": "9051", "STARTTLS": "9051", "LOGINDISABLED": "9051",
    "AUTH=PLAIN": "4616", "SASL-IR": "4959", "LITERAL+": "7888", "LITERAL-": "7888",
    "ID": "2971", "ENABLE": "5161", "IDLE": "2177", "NAMESPACE": "2342", "UIDPLUS": "4315",
    "MOVE": "6851", "UNSELECT": "3691", "CHILDREN": "3348", "LIST-EXTENDED": "5258",
    "LIST-STATUS": "5819", "SPECIAL-USE": "6154", "CREATE-SPECIAL-USE": "6154",
    "CONDSTORE": "7162", "QRESYNC": "7162", "ESEARCH": "4731", "SEARCHRES": "5182",
    "SORT": "5256", "THREAD=REFERENCES": "5256", "THREAD=ORDEREDSUBJECT": "5256",
    "SORT=DISPLAY": "5957", "ESORT": "5267", "WITHIN": "5032", "BINARY": "3516",
    "MULTIAPPEND": "3502", "STATUS=SIZE": "8438", "SAVEDATE": "8514", "OBJECTID": "8474",
    "PREVIEW": "8970", "QUOTA": "9208", "QUOTA=RES-STORAGE": "9208", "UTF8=ACCEPT": "6855",
    "COMPRESS=DEFLATE": "4978", "UNAUTHENTICATE": "8437",
}
#: Capabilities with a value: RFC 7889 APPENDLIMIT=<octets>.
IMAP_CAPABILITY_PATTERNS = ((re.compile(r"APPENDLIMIT=\d+"), "7889"),)


def imap_capability_rfc(token: str) -> str | None:
    token = token.upper()
    if token in IMAP_CAPABILITIES:
        return IMAP_CAPABILITIES[token]
    return next((rfc for pattern, rfc in IMAP_CAPABILITY_PATTERNS if pattern.fullmatch(token)), None)


def capability_tokens(response: bytes) -> set[str]:
    """The tokens of every ``* CAPABILITY ...`` line and ``[CAPABILITY ...]`` code."""
    found: set[str] = set()
    for line in response.decode("ascii").splitlines():
        match = re.search(r"\[CAPABILITY ([^\]]*)\]", line) or re.match(r"\* CAPABILITY (.*)$", line)
        if match:
            found |= set(match.group(1).split())
    return found


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_capability_the_imap_listeners_advertise_is_documented_as_implemented(store: Any) -> None:
    add_user(store, "docs@example.test")
    before: set[str] = set()
    after: set[str] = set()
    with running_imap(store) as server:
        client = RawImap(server.imap)
        try:
            before |= capability_tokens(client.greeting)
            before |= capability_tokens(client.command("c1", "CAPABILITY"))
            after |= capability_tokens(client.login("docs@example.test", PASSWORD))
            after |= capability_tokens(client.command("c2", "CAPABILITY"))
        finally:
            client.close()
        implicit = RawImap(server.imaps, tls=True)
        try:
            before |= capability_tokens(implicit.greeting)
        finally:
            implicit.close()
    assert {"IMAP4rev1", "IMAP4rev2", "STARTTLS", "AUTH=PLAIN"} <= before
    assert {"IMAP4rev2", "IDLE", "UIDPLUS", "MOVE"} <= after and "STARTTLS" not in after
    advertised = before | after
    unknown = {token for token in advertised if imap_capability_rfc(token) is None}
    assert unknown == set(), f"add these capabilities to IMAP_CAPABILITIES and docs/rfc.md: {unknown}"
    table = rfc_table()
    rfc_of = {token: imap_capability_rfc(token) or "" for token in advertised}
    undocumented = {token: (rfc, table.get(rfc)) for token, rfc in rfc_of.items()
                    if table.get(rfc) not in ("Yes", "Partial")}
    assert undocumented == {}, "advertised, but docs/rfc.md has no Yes or Partial row for its RFC"
    # An RFC the page calls No is advertised by none of its capabilities.
    refused = {number for number, status in table.items() if status == "No"}
    assert {token: rfc for token, rfc in rfc_of.items() if rfc in refused} == {}


def test_every_rfc_has_one_row() -> None:
    numbers = re.findall(r"^\| RFC (\d{3,5}) \|", (ROOT / "docs" / "rfc.md").read_text(), re.M)
    assert len(numbers) >= 30
    assert sorted({n for n in numbers if numbers.count(n) > 1}) == []


#: POP3 CAPA tag -> the RFC that defines it (RFC 2449 §6 for most). Every tag a listener
#: lists must be here; a new one fails the test below until it is added here and to
#: docs/rfc.md.
POP3_CAPABILITIES = {
    "TOP": "1939", "UIDL": "1939", "USER": "1939", "SASL": "5034", "RESP-CODES": "2449",
    "PIPELINING": "2449", "IMPLEMENTATION": "2449", "STLS": "2595", "AUTH-RESP-CODE": "3206",
    "UTF8": "6856",
}
#: SASL mechanisms named after the SASL tag -> their RFC.
SASL_MECHANISMS = {"PLAIN": "4616"}


def capa_lines(response: bytes) -> list[list[str]]:
    """The capability lines of a CAPA answer (after the +OK, before the "."), as tokens."""
    lines = response.decode("utf-8").split("\r\n")
    assert lines[0].startswith("+OK") and lines[-2:] == [".", ""], response
    return [line.split() for line in lines[1:-2]]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_capability_the_pop3_listeners_advertise_is_documented_as_implemented(store: Any) -> None:
    add_user(store, "docs@example.test")
    before: list[list[str]] = []
    after: list[list[str]] = []
    implicit: list[list[str]] = []
    with running_pop3(store) as server:
        client = RawPop3(server.pop3)
        try:
            before = capa_lines(client.command("CAPA", multiline=True))
            client.login("docs@example.test", PASSWORD)
            after = capa_lines(client.command("CAPA", multiline=True))
            assert client.command("QUIT").startswith(b"+OK")
        finally:
            client.close()
        secure = RawPop3(server.pop3s, tls=True)
        try:
            implicit = capa_lines(secure.command("CAPA", multiline=True))
        finally:
            secure.close()
    tags = {kind: {line[0].upper() for line in lines}
            for kind, lines in (("before", before), ("after", after), ("implicit", implicit))}
    # From loopback the login commands are offered before TLS; STLS only where TLS is off.
    assert {"TOP", "UIDL", "USER", "SASL", "STLS", "RESP-CODES", "PIPELINING"} <= tags["before"]
    assert {"TOP", "UIDL", "RESP-CODES", "PIPELINING"} <= tags["after"] and "STLS" not in tags["after"]
    assert {"USER", "SASL"} <= tags["implicit"] and "STLS" not in tags["implicit"]
    advertised = tags["before"] | tags["after"] | tags["implicit"]
    unknown = advertised - set(POP3_CAPABILITIES)
    assert unknown == set(), f"add these CAPA tags to POP3_CAPABILITIES and docs/rfc.md: {unknown}"
    mechanisms = {name.upper() for lines in (before, after, implicit) for line in lines
                  if line[0].upper() == "SASL" for name in line[1:]}
    assert "PLAIN" in mechanisms, before
    unknown_mechanisms = mechanisms - set(SASL_MECHANISMS)
    assert unknown_mechanisms == set(), f"add these to SASL_MECHANISMS and docs/rfc.md: {unknown_mechanisms}"
    table = rfc_table()
    rfc_of = {tag: POP3_CAPABILITIES[tag] for tag in advertised}
    rfc_of |= {f"SASL {name}": SASL_MECHANISMS[name] for name in mechanisms}
    undocumented = {tag: (rfc, table.get(rfc)) for tag, rfc in rfc_of.items()
                    if table.get(rfc) not in ("Yes", "Partial")}
    assert undocumented == {}, "advertised, but docs/rfc.md has no Yes or Partial row for its RFC"
    refused = {number for number, status in table.items() if status == "No"}
    assert {tag: rfc for tag, rfc in rfc_of.items() if rfc in refused} == {}
