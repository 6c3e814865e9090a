"""MTA-STS (RFC 8461): the TXT record, the policy text, MX matching, the HTTPS fetch
rules and the cache, with DNS, HTTPS and the clock faked at their ports."""

from __future__ import annotations

import pytest

from adapters.smtp.mta_sts import (
    FETCH_RETRY_AFTER,
    MAX_MAX_AGE,
    MAX_POLICY_BYTES,
    FetchError,
    MtaStsError,
    Policy,
    PolicyCache,
    PolicyError,
    fetch,
    parse_policy,
    parse_sts_record,
    policy_url,
    record_name,
)
from adapters.smtp.routing import route
from tests.outbound_support import FakeResolver

# RFC 8461 §3.2's example policy.
RFC_POLICY = (
    "version: STSv1\n"
    "mode: enforce\n"
    "mx: mail.example.com\n"
    "mx: *.example.net\n"
    "mx: backupmx.example.com\n"
    "max_age: 604800\n"
)
# RFC 8461 §3.1's example record: _mta-sts.example.com. IN TXT "v=STSv1; id=20160831085700Z;"
RFC_RECORD = "v=STSv1; id=20160831085700Z;"


# --- the TXT record (RFC 8461 §3.1) ---------------------------------------------------


def test_the_rfc_txt_record_gives_its_policy_id() -> None:
    assert parse_sts_record([RFC_RECORD]) == "20160831085700Z"


def test_txt_records_of_other_kinds_are_discarded() -> None:
    assert parse_sts_record(["v=spf1 -all", RFC_RECORD, "google-site-verification=abc"]) == "20160831085700Z"


@pytest.mark.parametrize("record", [
    "v=STSv1;id=abc",
    "v=STSv1 ; id=abc ;",
    "v=STSv1;\tid=abc;\t",
    "v=STSv1; id=abc; ext_name.1=value-with:colons",
    "v=STSv1; x=1; id=abc",
])
def test_spacing_and_extension_fields_are_accepted(record: str) -> None:
    assert parse_sts_record([record]) == "abc"


@pytest.mark.parametrize("records", [
    [],
    ["v=spf1 -all"],
    [RFC_RECORD, "v=STSv1; id=other;"],  # two STSv1 records: none is usable
    ["v=STSv1;"],  # no id
    ["v=STSv1; id=;"],
    ["v=STSv1; id=" + "a" * 33],  # id is 1*32 ALPHA / DIGIT
    ["v=STSv1; id=2016-08-31"],
    ["v=STSv1; id=a; id=b"],
    ["v=STSv1; id=abc; junk"],  # an extension needs name=value
    ["v=STSv1; id=abc; ext=has space"],
    ["v=STSv1; ID=abc"],  # %s"id=": case-sensitive
    ["V=STSv1; id=abc"],
    ["v=STSv1 id=abc"],
    ["v=STSv2; id=abc"],
])
def test_a_missing_duplicated_or_invalid_record_means_no_policy(records: list[str]) -> None:
    assert parse_sts_record(records) is None


# --- the policy (RFC 8461 §3.2) -------------------------------------------------------


def test_the_rfc_policy_parses() -> None:
    policy = parse_policy(RFC_POLICY)
    assert policy == Policy(mode="enforce", max_age=604800,
                            mx=("mail.example.com", "*.example.net", "backupmx.example.com"))
    assert policy.version == "STSv1" and policy.requires_tls


def test_crlf_and_lf_line_ends_read_the_same() -> None:
    assert parse_policy(RFC_POLICY.replace("\n", "\r\n")) == parse_policy(RFC_POLICY)
    assert parse_policy(RFC_POLICY.rstrip("\n")) == parse_policy(RFC_POLICY)


def test_field_order_spacing_case_of_mx_and_blank_lines_do_not_matter() -> None:
    text = "max_age:86400 \r\nmx:   MAIL.Example.COM\t\n\nmode:testing\nversion: STSv1\n\n"
    assert parse_policy(text) == Policy(mode="testing", max_age=86400, mx=("mail.example.com",))


def test_unknown_keys_are_ignored() -> None:
    text = RFC_POLICY + "x-comment: relaxed – for now, é\nfuture_field.v2: 1\n"
    assert parse_policy(text) == parse_policy(RFC_POLICY)


def test_a_none_mode_policy_needs_no_mx_and_requires_nothing() -> None:
    policy = parse_policy("version: STSv1\nmode: none\nmax_age: 0\n")
    assert policy == Policy(mode="none", max_age=0)
    assert not policy.requires_tls and not policy.allows_mx("mail.example.com")


def test_only_enforce_mode_requires_tls() -> None:
    assert parse_policy(RFC_POLICY).requires_tls
    assert not parse_policy(RFC_POLICY.replace("enforce", "testing")).requires_tls


def test_max_age_may_be_a_year_but_not_more() -> None:
    assert parse_policy(RFC_POLICY.replace("604800", str(MAX_MAX_AGE))).max_age == 31557600
    with pytest.raises(PolicyError):
        parse_policy(RFC_POLICY.replace("604800", str(MAX_MAX_AGE + 1)))


@pytest.mark.parametrize("text", [
    "",
    RFC_POLICY.replace("version: STSv1\n", ""),
    RFC_POLICY.replace("STSv1", "STSv2"),
    RFC_POLICY.replace("version", "Version"),
    RFC_POLICY.replace("mode: enforce\n", ""),
    RFC_POLICY.replace("enforce", "Enforce"),
    RFC_POLICY.replace("enforce", "reject"),
    RFC_POLICY + "mode: testing\n",  # required once
    RFC_POLICY + "version: STSv1\n",
    RFC_POLICY.replace("max_age: 604800\n", ""),
    RFC_POLICY.replace("604800", "-1"),
    RFC_POLICY.replace("604800", "1w"),
    RFC_POLICY.replace("604800", "60480000000"),  # 1*10DIGIT
    RFC_POLICY.replace("604800", "６０４８００"),
    RFC_POLICY + "max_age: 1\n",
    "version: STSv1\nmode: enforce\nmax_age: 600\n",  # enforce without mx
    "version: STSv1\nmode: testing\nmax_age: 600\n",
    RFC_POLICY + "mx:\n",
    RFC_POLICY + "mx: *.*.example.com\n",
    RFC_POLICY + "mx: *example.com\n",
    RFC_POLICY + "mx: mail.example.com.\n",
    RFC_POLICY + "mx: mail example.com\n",
    RFC_POLICY + "mx: -mail.example.com\n",
    RFC_POLICY + "mx: *.\n",
    RFC_POLICY + "this line has no colon\n",
    RFC_POLICY + " mode: enforce\n",
    RFC_POLICY + "bad key: 1\n",
    RFC_POLICY + "x-ctl: a\x00b\n",
])
def test_an_invalid_policy_is_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


# --- MX matching (RFC 8461 §4.1) ------------------------------------------------------


@pytest.mark.parametrize(("host", "allowed"), [
    ("mail.example.com", True),
    ("MAIL.EXAMPLE.COM.", True),
    ("backupmx.example.com", True),
    ("mx1.example.net", True),  # *.example.net: exactly one leftmost label
    ("example.net", False),
    ("a.b.example.net", False),
    ("mx1.example.net.evil.test", False),
    ("example.com", False),
    ("other.example.com", False),
    (".example.net", False),
])
def test_mx_hosts_match_the_policy_patterns_as_rfc_8461_says(host: str, allowed: bool) -> None:
    assert parse_policy(RFC_POLICY).allows_mx(host) is allowed


def test_an_enforcing_policy_leaves_only_the_matching_mx_hosts_of_a_route() -> None:
    resolver = FakeResolver(mx={"example.com": [(10, "mail.example.com"), (20, "evil.example.org"),
                                                (30, "mx9.example.net")]})
    policy = parse_policy(RFC_POLICY)
    allowed = [c.host for c in route("example.com", resolver, None).candidates if policy.allows_mx(c.host)]
    assert allowed == ["mail.example.com", "mx9.example.net"]


# --- where things live ----------------------------------------------------------------


def test_the_policy_lives_at_a_fixed_https_url_and_the_record_under_mta_sts() -> None:
    assert policy_url("example.com") == "https://mta-sts.example.com/.well-known/mta-sts.txt"
    assert policy_url("Example.COM.") == "https://mta-sts.example.com/.well-known/mta-sts.txt"
    assert record_name("example.com") == "_mta-sts.example.com"
    assert policy_url("bücher.example") == "https://mta-sts.xn--bcher-kva.example/.well-known/mta-sts.txt"


@pytest.mark.parametrize("domain", ["example.com/evil?", "evil.test#", "user@example.com", "", "[192.0.2.1]",
                                    "exa mple.com"])
def test_a_name_that_is_not_a_domain_never_becomes_a_url(domain: str) -> None:
    with pytest.raises(ValueError):
        policy_url(domain)


# --- the HTTPS fetch (RFC 8461 §3.3) --------------------------------------------------


def serving(status: int = 200, content_type: str = "text/plain", body: bytes = RFC_POLICY.encode()):
    asked: list[str] = []

    def get(url: str) -> tuple[int, str, bytes]:
        asked.append(url)
        return status, content_type, body

    get.asked = asked  # type: ignore[attr-defined]
    return get


def test_the_policy_is_fetched_from_its_https_url() -> None:
    get = serving()
    assert fetch("example.com", get) == parse_policy(RFC_POLICY)
    assert get.asked == ["https://mta-sts.example.com/.well-known/mta-sts.txt"]


@pytest.mark.parametrize("content_type", ["text/plain", "TEXT/PLAIN", "text/plain; charset=utf-8",
                                          "text/plain;charset=UTF-8"])
def test_text_plain_with_or_without_parameters_is_accepted(content_type: str) -> None:
    assert fetch("example.com", serving(content_type=content_type)).mode == "enforce"


@pytest.mark.parametrize("status", [201, 204, 301, 302, 304, 307, 308, 404, 500])
def test_only_status_200_is_a_policy_and_redirects_are_failures(status: int) -> None:
    with pytest.raises(FetchError):
        fetch("example.com", serving(status=status))


@pytest.mark.parametrize("content_type", ["", "text/html", "application/octet-stream", "text/plain-ish",
                                          "application/json; x=text/plain"])
def test_a_policy_not_served_as_text_plain_is_refused(content_type: str) -> None:
    with pytest.raises(FetchError):
        fetch("example.com", serving(content_type=content_type))


def test_a_policy_body_may_be_64_kib_but_not_one_byte_more() -> None:
    padding = "x-pad: " + "p" * 100 + "\n"
    body = (RFC_POLICY + padding * 700).encode()[:MAX_POLICY_BYTES]
    body = body[:body.rindex(b"\n") + 1]
    body += b"x: " + b"q" * (MAX_POLICY_BYTES - len(body) - 4) + b"\n"
    assert len(body) == MAX_POLICY_BYTES
    assert fetch("example.com", serving(body=body)).mode == "enforce"
    with pytest.raises(FetchError):
        fetch("example.com", serving(body=body + b"\n"))


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(FetchError):
        fetch("example.com", serving(body=RFC_POLICY.encode() + b"x-note: \xff\n"))


def test_an_http_client_error_becomes_a_fetch_failure() -> None:
    def get(url: str) -> tuple[int, str, bytes]:
        raise TimeoutError("read timed out")

    with pytest.raises(FetchError) as failure:
        fetch("example.com", get)
    assert isinstance(failure.value.__cause__, TimeoutError)


def test_a_fetched_policy_that_is_invalid_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        fetch("example.com", serving(body=b"version: STSv1\nmode: enforce\n"))
    assert issubclass(PolicyError, MtaStsError) and issubclass(FetchError, MtaStsError)


# --- the cache (RFC 8461 §3.3, §5.1) --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """The HTTPS side: one policy per domain, switchable, countable, breakable."""

    def __init__(self, text: str = RFC_POLICY) -> None:
        self.text = text
        self.up = True
        self.fetches = 0

    def __call__(self, url: str) -> tuple[int, str, bytes]:
        self.fetches += 1
        if not self.up:
            raise ConnectionRefusedError(url)
        return 200, "text/plain", self.text.encode()


def setup(record: str | None = RFC_RECORD):
    resolver = FakeResolver(txt={"_mta-sts.example.com": [record] if record else []},
                            mx={"example.com": [(10, "mail.example.com")]})
    server, clock = Server(), Clock()
    return resolver, server, clock, PolicyCache(resolver, server, clock=clock)


def test_a_domain_without_the_txt_record_has_no_policy_and_nothing_is_fetched() -> None:
    resolver, server, _, cache = setup(record=None)
    assert cache.policy("example.com") is None
    resolver.txt_records.clear()  # now NXDOMAIN
    assert cache.policy("example.com") is None
    assert server.fetches == 0


def test_the_policy_is_fetched_once_and_kept_while_the_id_is_unchanged() -> None:
    _, server, clock, cache = setup()
    assert cache.policy("example.com") == parse_policy(RFC_POLICY)
    clock.now += 604799
    assert cache.policy("Example.COM.") == parse_policy(RFC_POLICY)
    assert server.fetches == 1
    entry = cache.cached("example.com")
    assert entry is not None and entry.policy_id == "20160831085700Z" and entry.fetched_at == 1000.0


def test_a_new_id_in_dns_brings_the_new_policy_in() -> None:
    resolver, server, _, cache = setup()
    cache.policy("example.com")
    server.text = RFC_POLICY.replace("enforce", "testing")
    resolver.txt_records["_mta-sts.example.com"] = ["v=STSv1; id=20240101000000Z;"]
    assert cache.policy("example.com").mode == "testing"
    assert server.fetches == 2


def test_a_policy_expires_max_age_seconds_after_its_fetch() -> None:
    resolver, server, clock, cache = setup()
    cache.policy("example.com")
    resolver.txt_records.clear()  # the record is gone: only the cache speaks
    clock.now += 604799
    assert cache.policy("example.com") is not None
    clock.now += 1
    assert cache.cached("example.com") is None
    assert cache.policy("example.com") is None


def test_an_expired_policy_is_fetched_again_even_with_the_same_id() -> None:
    _, server, clock, cache = setup()
    cache.policy("example.com")
    clock.now += 604800
    assert cache.policy("example.com") is not None
    assert server.fetches == 2


def test_a_failed_fetch_keeps_the_unexpired_cached_policy() -> None:
    # RFC 8461 §5.1: an attacker who breaks the new fetch cannot downgrade a known
    # enforcing domain before its policy expires.
    resolver, server, clock, cache = setup()
    cache.policy("example.com")
    resolver.txt_records["_mta-sts.example.com"] = ["v=STSv1; id=new;"]
    server.up = False
    assert cache.policy("example.com") == parse_policy(RFC_POLICY)
    assert cache.policy("example.com") == parse_policy(RFC_POLICY)  # within the retry pause
    assert server.fetches == 2
    server.up, server.text = True, "garbage"
    clock.now += FETCH_RETRY_AFTER
    assert cache.policy("example.com") == parse_policy(RFC_POLICY)  # an invalid policy fails too
    clock.now = 1000.0 + 604800
    assert cache.policy("example.com") is None


def test_failing_dns_keeps_the_unexpired_cached_policy() -> None:
    resolver, _, clock, cache = setup()
    cache.policy("example.com")
    resolver.temporary.add("_mta-sts.example.com")
    assert cache.policy("example.com").requires_tls
    resolver.temporary.clear()
    resolver.txt_records["_mta-sts.example.com"] = [RFC_RECORD, "v=STSv1; id=second;"]  # now invalid
    assert cache.policy("example.com").requires_tls
    clock.now += 604800
    assert cache.policy("example.com") is None


def test_a_failed_fetch_without_a_cached_policy_means_no_policy() -> None:
    _, server, _, cache = setup()
    server.up = False
    assert cache.policy("example.com") is None


def test_a_failed_fetch_is_not_retried_for_every_message() -> None:
    _, server, clock, cache = setup()
    server.up = False
    for _ in range(5):
        assert cache.policy("example.com") is None
    assert server.fetches == 1
    clock.now += FETCH_RETRY_AFTER
    server.up = True
    assert cache.policy("example.com") is not None
    assert server.fetches == 2


def test_a_new_id_is_fetched_at_once_even_after_a_failure() -> None:
    resolver, server, _, cache = setup()
    server.up = False
    cache.policy("example.com")
    server.up = True
    resolver.txt_records["_mta-sts.example.com"] = ["v=STSv1; id=fixed;"]
    assert cache.policy("example.com") is not None


def test_the_cache_holds_a_bounded_number_of_domains() -> None:
    domains = [f"d{i}.example" for i in range(5)]
    resolver = FakeResolver(txt={f"_mta-sts.{d}": [RFC_RECORD] for d in domains})
    cache = PolicyCache(resolver, Server(), clock=Clock(), max_domains=3)
    for domain in domains:
        cache.policy(domain)
    assert [d for d in domains if cache.cached(d)] == domains[2:]
