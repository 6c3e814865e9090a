"""Outbound routing: which hosts mail for a domain goes to, in what order (RFC 5321 §5.1,
RFC 7505), the smarthost, per-domain concurrency, and the dnspython resolver against a
DNS server on 127.0.0.1."""

from __future__ import annotations

import random
import threading
import time

import pytest

from adapters.smtp.routing import (
    MAX_MX_HOSTS,
    Candidate,
    DnsPythonResolver,
    DomainLimiter,
    MailLoop,
    NoSuchDomain,
    NullMx,
    RouteDeferred,
    TemporaryDnsFailure,
    UnknownDomain,
    Unroutable,
    parse_smarthost,
    route,
)
from tests.outbound_support import FakeResolver, loopback_dns


def hosts(result) -> list[tuple[str, int, int]]:
    return [(c.host, c.port, c.preference) for c in result.candidates]


# --- MX order (RFC 5321 §5.1) ---------------------------------------------------------


def test_mx_hosts_come_in_preference_order_lowest_first() -> None:
    resolver = FakeResolver(mx={"example.com": [(20, "b.example.com"), (10, "a.example.com"),
                                                (30, "c.example.com")]})
    result = route("example.com", resolver, None)
    assert result.kind == "mx"
    assert hosts(result) == [("a.example.com", 25, 10), ("b.example.com", 25, 20), ("c.example.com", 25, 30)]


def test_equal_preferences_are_shuffled_and_the_same_seed_gives_the_same_order() -> None:
    # RFC 5321 §5.1: equal preferences MUST be randomized to spread the load.
    resolver = FakeResolver(mx={"example.com": [(10, f"mx{i}.example.com") for i in range(4)]
                                + [(5, "first.example.com"), (50, "last.example.com")]})
    orders = set()
    for seed in range(60):
        order = [c.host for c in route("example.com", resolver, None, rng=random.Random(seed)).candidates]
        assert order[0] == "first.example.com" and order[-1] == "last.example.com"
        assert sorted(order[1:5]) == [f"mx{i}.example.com" for i in range(4)]
        orders.add(tuple(order))
    assert len(orders) > 10  # of the 24 possible orders of the four equal hosts
    again = [route("example.com", resolver, None, rng=random.Random(7)).candidates for _ in range(3)]
    assert again[0] == again[1] == again[2]


def test_a_host_listed_twice_is_tried_once_at_its_best_preference() -> None:
    resolver = FakeResolver(mx={"example.com": [(30, "mx.example.com"), (10, "MX.example.com."),
                                                (20, "backup.example.com")]})
    assert hosts(route("example.com", resolver, None)) == [("mx.example.com", 25, 10),
                                                          ("backup.example.com", 25, 20)]


def test_names_are_looked_up_in_lower_case_without_the_trailing_dot() -> None:
    resolver = FakeResolver(mx={"example.com": [(10, "Mail.Example.COM.")]})
    result = route("Example.COM.", resolver, None)
    assert resolver.queries == [("mx", "example.com")]
    assert hosts(result) == [("mail.example.com", 25, 10)]


def test_an_internationalized_domain_is_looked_up_as_its_a_label() -> None:
    resolver = FakeResolver(mx={"xn--bcher-kva.example": [(10, "mx.xn--bcher-kva.example")]})
    result = route("bücher.example", resolver, None)
    assert resolver.queries == [("mx", "xn--bcher-kva.example")]
    assert result.domain == "bücher.example"
    assert hosts(result) == [("mx.xn--bcher-kva.example", 25, 10)]


def test_the_mx_port_can_point_at_a_loopback_peer() -> None:
    resolver = FakeResolver(mx={"example.com": [(10, "mx.example.com")]},
                            addresses={"mx.example.com": ["127.0.0.1"]})
    assert hosts(route("example.com", resolver, None, port=2525)) == [("mx.example.com", 2525, 10)]


def test_a_huge_mx_set_is_cut_to_the_best_hosts() -> None:
    resolver = FakeResolver(mx={"example.com": [(i, f"mx{i}.example.com") for i in range(100, 0, -1)]})
    result = route("example.com", resolver, None)
    assert [c.preference for c in result.candidates] == list(range(1, MAX_MX_HOSTS + 1))


def test_when_we_are_one_of_the_mx_hosts_only_better_ones_are_tried() -> None:
    # RFC 5321 §5.1: discard our own MX record and every one of equal or higher preference.
    resolver = FakeResolver(mx={"example.com": [(10, "primary.example.com"), (20, "us.example.net"),
                                                (20, "peer.example.com"), (30, "tertiary.example.com")]})
    result = route("example.com", resolver, None, own_hosts=frozenset({"US.example.net"}))
    assert hosts(result) == [("primary.example.com", 25, 10)]


def test_mail_for_a_domain_whose_best_mx_is_us_is_a_loop() -> None:
    resolver = FakeResolver(mx={"example.com": [(10, "us.example.net"), (20, "backup.example.com")]})
    with pytest.raises(MailLoop) as failure:
        route("example.com", resolver, None, own_hosts=frozenset({"us.example.net"}))
    assert failure.value.status == "5.4.6" and failure.value.permanent


# --- implicit MX (RFC 5321 §5.1) ------------------------------------------------------


def test_a_domain_without_mx_records_is_its_own_mx_at_preference_0() -> None:
    resolver = FakeResolver(addresses={"example.org": ["192.0.2.10", "2001:db8::10"]})
    result = route("example.org", resolver, None)
    assert result.kind == "implicit"
    assert hosts(result) == [("example.org", 25, 0)]
    assert resolver.queries == [("mx", "example.org"), ("addresses", "example.org")]


def test_a_domain_with_neither_mx_nor_address_records_is_unroutable() -> None:
    resolver = FakeResolver(txt={"example.org": ["v=spf1 -all"]})  # exists, but no MX, A or AAAA
    with pytest.raises(Unroutable) as failure:
        route("example.org", resolver, None)
    assert failure.value.reply.startswith("550 5.4.4 ") and failure.value.permanent


def test_an_implicit_mx_that_is_ourselves_is_a_loop() -> None:
    resolver = FakeResolver(addresses={"us.example.net": ["192.0.2.1"]})
    with pytest.raises(MailLoop):
        route("us.example.net", resolver, None, own_hosts=frozenset({"us.example.net"}))


# --- null MX (RFC 7505) ---------------------------------------------------------------


def test_a_null_mx_bounces_at_once_with_556_5_1_10() -> None:
    # RFC 7505 §3's record: "example.com. 86400 IN MX 0 ." (and an A record beside it,
    # which must not be used as an implicit MX).
    resolver = FakeResolver(mx={"example.com": [(0, ".")]}, addresses={"example.com": ["192.0.2.1"]})
    with pytest.raises(NullMx) as failure:
        route("example.com", resolver, None)
    assert failure.value.code == 556 and failure.value.status == "5.1.10" and failure.value.permanent
    assert failure.value.reply.startswith("556 5.1.10 ")
    assert resolver.queries == [("mx", "example.com")]


def test_a_null_mx_with_a_nonzero_preference_still_means_no_mail() -> None:
    resolver = FakeResolver(mx={"example.com": [(10, ".")]})
    with pytest.raises(NullMx):
        route("example.com", resolver, None)


def test_a_null_mx_published_beside_real_mx_hosts_is_skipped() -> None:
    # RFC 7505 §3 forbids the mix; the root has no address, so only real hosts are tried.
    resolver = FakeResolver(mx={"example.com": [(0, "."), (10, "mx.example.com")]})
    assert hosts(route("example.com", resolver, None)) == [("mx.example.com", 25, 10)]


# --- DNS failures ---------------------------------------------------------------------


def test_a_domain_that_does_not_exist_fails_permanently_with_5_1_2() -> None:
    with pytest.raises(UnknownDomain) as failure:
        route("nowhere.example", FakeResolver(), None)
    assert failure.value.reply.startswith("550 5.1.2 ") and failure.value.permanent


@pytest.mark.parametrize("domain", ["exa mple.com", "a..b", "-a.example", "a_b.example", "x" * 64 + ".com",
                                    ".", ""])
def test_a_name_that_cannot_be_a_domain_fails_permanently_without_a_lookup(domain: str) -> None:
    resolver = FakeResolver()
    with pytest.raises(UnknownDomain):
        route(domain, resolver, None)
    assert resolver.queries == []


def test_a_temporary_mx_lookup_failure_defers_with_4_4_3() -> None:
    with pytest.raises(RouteDeferred) as failure:
        route("example.com", FakeResolver(temporary={"example.com"}), None)
    assert failure.value.reply.startswith("451 4.4.3 ") and not failure.value.permanent


def test_a_temporary_failure_of_the_implicit_mx_address_lookup_defers() -> None:
    class AddressesFail(FakeResolver):
        def addresses(self, host: str) -> list[str]:
            raise TemporaryDnsFailure(host)

    with pytest.raises(RouteDeferred):
        route("example.org", AddressesFail(txt={"example.org": []}), None)


# --- address literals (RFC 5321 §4.1.3) -----------------------------------------------


@pytest.mark.parametrize(("domain", "address"), [
    ("[192.0.2.1]", "192.0.2.1"),
    ("[IPv6:2001:db8::1]", "2001:db8::1"),
    ("[ipv6:2001:DB8:0:0:0:0:0:1]", "2001:db8::1"),
])
def test_an_address_literal_is_delivered_to_that_address_without_dns(domain: str, address: str) -> None:
    resolver = FakeResolver()
    result = route(domain, resolver, None)
    assert result.kind == "literal"
    assert hosts(result) == [(address, 25, 0)]
    assert result.candidates[0].is_address
    assert resolver.queries == []


@pytest.mark.parametrize("domain", ["[300.1.1.1]", "[2001:db8::1]", "[IPv6:192.0.2.1]", "[x-tag:stuff]",
                                    "[192.0.2.1", "[]"])
def test_a_malformed_or_unsupported_address_literal_fails_permanently(domain: str) -> None:
    with pytest.raises(UnknownDomain) as failure:
        route(domain, FakeResolver(), None)
    assert failure.value.status == "5.1.2"


# --- smarthost ------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["example.com", "nullmx.example", "nowhere.example", "[192.0.2.1]"])
def test_a_smarthost_takes_all_mail_and_nothing_is_looked_up(domain: str) -> None:
    resolver = FakeResolver(mx={"example.com": [(10, "mx.example.com")], "nullmx.example": [(0, ".")]},
                            temporary={"nowhere.example"})
    result = route(domain, resolver, "relay.example.net:587")
    assert result.kind == "smarthost"
    assert hosts(result) == [("relay.example.net", 587, 0)]
    assert resolver.queries == []


@pytest.mark.parametrize(("value", "expected"), [
    ("relay.example.net:587", ("relay.example.net", 587)),
    ("Relay.Example.NET.:25", ("relay.example.net", 25)),
    ("relay.example.net", ("relay.example.net", 25)),
    ("192.0.2.7:2525", ("192.0.2.7", 2525)),
    ("[::1]:25", ("::1", 25)),
    ("[2001:db8::7]", ("2001:db8::7", 25)),
    ("[relay.example.net]:465", ("relay.example.net", 465)),
])
def test_smarthost_values_name_a_host_and_a_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_smarthost(value) == expected


@pytest.mark.parametrize("value", ["", ":25", "relay:0", "relay:65536", "relay:smtp", "relay:２５",
                                   "::1:25", "[::1]25", "[::1", "bad host:25", "relay.example.net:25:25"])
def test_smarthost_values_that_are_not_host_and_port_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="smarthost"):
        parse_smarthost(value)


def test_the_concurrency_key_is_the_relay_for_a_smarthost_and_the_domain_otherwise() -> None:
    resolver = FakeResolver(mx={"example.com": [(10, "mx.example.com")]})
    assert route("example.com", resolver, None).limit_key == "example.com"
    assert route("example.com", resolver, "[::1]:2525").limit_key == "smarthost:[::1]:2525"
    assert route("example.org", resolver, "[::1]:2525").limit_key == "smarthost:[::1]:2525"


def test_a_candidate_knows_whether_it_still_needs_an_address_lookup() -> None:
    assert Candidate("192.0.2.1", 25, 0).is_address
    assert Candidate("::1", 25, 0).is_address
    assert not Candidate("mx.example.com", 25, 0).is_address


# --- per-domain concurrency -----------------------------------------------------------


def test_a_domain_gets_at_most_its_limit_of_deliveries_at_once() -> None:
    limiter = DomainLimiter(2)
    assert limiter.acquire("example.com") and limiter.acquire("Example.COM")
    assert not limiter.acquire("example.com")
    assert limiter.acquire("example.org")  # other domains are unaffected
    limiter.release("example.com")
    assert limiter.active("example.com") == 1
    assert limiter.acquire("example.com")


def test_a_per_domain_limit_overrides_the_default() -> None:
    limiter = DomainLimiter(5, {"Slow.Example": 1})
    assert limiter.limit_for("slow.example") == 1
    assert limiter.acquire("slow.example") and not limiter.acquire("slow.example")
    assert all(limiter.acquire("fast.example") for _ in range(5)) and not limiter.acquire("fast.example")


def test_releasing_more_than_was_acquired_is_a_bug_that_is_caught() -> None:
    limiter = DomainLimiter(1)
    limiter.acquire("example.com")
    limiter.release("example.com")
    with pytest.raises(RuntimeError):
        limiter.release("example.com")
    with pytest.raises(ValueError):
        DomainLimiter(0)


def test_threads_racing_for_slots_never_exceed_the_limit() -> None:
    limiter = DomainLimiter(3)
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal peak
        for _ in range(200):
            if limiter.acquire("example.com"):
                with lock:
                    peak = max(peak, limiter.active("example.com"))
                limiter.release("example.com")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= peak <= 3
    assert limiter.active("example.com") == 0


# --- DnsPythonResolver against a DNS server on 127.0.0.1 ------------------------------

ZONE = {
    ("example.com", "MX"): ["10 mx1.example.com.", "20 MX2.Example.com."],
    ("example.com", "TXT"): ['"v=spf1 " "-all"', '"hello"'],
    ("mx1.example.com", "A"): ["192.0.2.1", "192.0.2.2"],
    ("mx1.example.com", "AAAA"): ["2001:db8::1"],
    ("nullmx.example", "MX"): ["0 ."],
    ("v4only.example", "A"): ["192.0.2.4"],
    ("_mta-sts.example.com", "TXT"): ['"v=STSv1; id=20160831085700Z;"'],
}


@pytest.fixture(scope="module")
def dns_server():
    with loopback_dns(ZONE, servfail={"broken.example"}, silent={"slow.example"}) as server:
        yield server


def test_dnspython_reads_mx_records_as_preference_and_lower_case_host(dns_server) -> None:
    resolver = DnsPythonResolver(dns_server.resolver(), timeout=2)
    assert sorted(resolver.mx("example.com")) == [(10, "mx1.example.com"), (20, "mx2.example.com")]
    assert resolver.mx("nullmx.example") == [(0, ".")]


def test_dnspython_returns_ipv4_then_ipv6_addresses(dns_server) -> None:
    resolver = DnsPythonResolver(dns_server.resolver(), timeout=2)
    found = resolver.addresses("mx1.example.com")
    assert sorted(found[:2]) == ["192.0.2.1", "192.0.2.2"] and found[2:] == ["2001:db8::1"]
    assert resolver.addresses("v4only.example") == ["192.0.2.4"]
    v4_only = DnsPythonResolver(dns_server.resolver(), timeout=2, ipv6=False)
    assert sorted(v4_only.addresses("mx1.example.com")) == ["192.0.2.1", "192.0.2.2"]


def test_dnspython_joins_the_strings_of_each_txt_record(dns_server) -> None:
    resolver = DnsPythonResolver(dns_server.resolver(), timeout=2)
    assert sorted(resolver.txt("example.com")) == ["hello", "v=spf1 -all"]


def test_dnspython_maps_nxdomain_nodata_servfail_and_silence(dns_server) -> None:
    resolver = DnsPythonResolver(dns_server.resolver(), timeout=0.5)
    with pytest.raises(NoSuchDomain):
        resolver.mx("nowhere.example")
    with pytest.raises(NoSuchDomain):
        resolver.addresses("nowhere.example")
    assert resolver.mx("v4only.example") == []  # the name exists without MX: NODATA
    with pytest.raises(TemporaryDnsFailure):
        resolver.mx("broken.example")
    with pytest.raises(TemporaryDnsFailure):
        resolver.addresses("broken.example")
    started = time.monotonic()
    with pytest.raises(TemporaryDnsFailure):
        resolver.mx("slow.example")
    assert time.monotonic() - started < 3


def test_dnspython_refuses_a_name_that_cannot_exist_without_asking(dns_server) -> None:
    resolver = DnsPythonResolver(dns_server.resolver(), timeout=2)
    with pytest.raises(NoSuchDomain):
        resolver.mx("x" * 64 + ".example")


def test_routing_through_dnspython_gives_the_rfc_answers(dns_server) -> None:
    resolver = DnsPythonResolver(dns_server.resolver(), timeout=0.5)
    assert hosts(route("example.com", resolver, None)) == [("mx1.example.com", 25, 10),
                                                          ("mx2.example.com", 25, 20)]
    assert hosts(route("v4only.example", resolver, None)) == [("v4only.example", 25, 0)]
    with pytest.raises(NullMx):
        route("nullmx.example", resolver, None)
    with pytest.raises(UnknownDomain):
        route("nowhere.example", resolver, None)
    with pytest.raises(RouteDeferred):
        route("broken.example", resolver, None)
