"""The outbound queue worker: runs inside ``ledgermail serve`` and delivers queued mail.

Each round asks the view which messages are due, leases a batch of them in one
transaction (``lease_outbound``), delivers each over SMTP, and records the answers of
every finished delivery in one transaction (``record_attempts``), which also decides
retries, bounces and expiry. Nothing is kept only in memory: a restart, or a SIGKILL
mid-delivery, leaves leased messages that any node retries once their lease runs out,
so each message is delivered at least once.

Per delivery: the consent gate (DESIGN §4) drops recipients without valid consent for
the message's purpose; the route comes from ``outbound.routes``, the smarthost or DNS
(``routing.route``); MTA-STS (RFC 8461 §5) and REQUIRETLS (RFC 8689) decide whether TLS
is required and verified; the message is signed with both DKIM keys of its From domain
when that domain is ours (RFC 6376, RFC 8463); connections to a destination are reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Any

from adapters.smtp.delivery_client import (
    ConnectFailure,
    DeliveryConnection,
    OutboundEnvelope,
    OutboundRecipient,
    TlsPolicy,
    open_connection,
)
from adapters.smtp.dkim_keys import DkimKeyring
from adapters.smtp.dkim_signing import DkimSigningError, sign
from adapters.smtp.dsn import RecipientStatus, build_dsn, needs_dsn, should_notify
from adapters.smtp.mta_sts import PolicyCache
from adapters.smtp.routing import (
    Candidate,
    DnsError,
    DomainLimiter,
    Resolver,
    Route,
    RouteFailure,
    parse_smarthost,
    route,
)
from domain.application.base import iso_time, parse_iso_time
from domain.application.context import acting
from domain.application.outbound import AttemptRecord, OutboundJob, RetryPolicy
from domain.application.service import LedgerMail
from domain.model.outbound import OutboundMessage
from projections.mailbox_view.view import MailboxViewInterface

log = logging.getLogger(__name__)

#: Idle connections kept for reuse this long (Postfix smtp_connection_cache_time_limit).
CONNECTION_IDLE_SECONDS = 2.0
#: How the worker appears in the audit trail.
ACTOR = "system:outbound"


@dataclass(frozen=True)
class WorkerOptions:
    hostname: str
    smarthost: str = ""
    routes: dict[str, str] | None = None
    policy: RetryPolicy = RetryPolicy()
    lease_seconds: float = 600.0
    poll_interval: float = 1.0
    batch_size: int = 100
    max_concurrency: int = 50
    per_domain_concurrency: int = 10
    timeout: float = 300.0
    mta_sts: bool = True
    dkim: bool = True
    mx_port: int = 25
    #: The trust store for verified TLS (MTA-STS enforce, REQUIRETLS); None: the system's.
    verify_context: ssl.SSLContext | None = None


class QueueWorker:
    def __init__(self, app: LedgerMail, view: MailboxViewInterface, options: WorkerOptions,
                 resolver: Resolver, sts: PolicyCache | None, keyring: DkimKeyring | None,
                 unsubscribe_url: Callable[[str, str], str] | None,
                 caught_up: Callable[[int], None] | None = None) -> None:
        self.app = app
        self.view = view
        self.options = options
        self.resolver = resolver
        self.sts = sts
        self.keyring = keyring
        self.unsubscribe_url = unsubscribe_url
        #: Blocks until the views show a log position (the queue index is a view).
        self.caught_up = caught_up
        self._wanted_position = 0
        #: This process, for leases: a restarted server is a new node and waits for
        #: its predecessor's leases to run out, so no attempt runs twice at once.
        self.node = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._in_flight: set[uuid.UUID] = set()
        self._finished: list[AttemptRecord] = []
        self._limiter = DomainLimiter(options.per_domain_concurrency)
        self._slot_freed = asyncio.Event()
        self._slots = asyncio.Semaphore(options.max_concurrency)
        self._idle: dict[tuple[Any, ...], list[tuple[float, DeliveryConnection]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._recording: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then finish the deliveries under way."""
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            # Cleared before looking, so a wake-up that comes while we look (new mail,
            # a finished delivery freeing a slot) is not lost.
            self._wake.clear()
            try:
                started = await self.run_once(wait=False)
            except Exception as error:  # noqa: BLE001 - the store is down: try again later
                log.warning("outbound queue round failed: %s: %s", type(error).__name__, error)
                started = 0
            if started:
                continue
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
            await asyncio.wait(waits, timeout=self.options.poll_interval, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        await self.drain()

    def wake(self, position: int = 0) -> None:
        """Look for due mail now: a submission just queued some, at log ``position``.
        Called from any thread (the SMTP listener's intake runs in worker threads)."""
        self._wanted_position = max(self._wanted_position, position)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run_once(self, *, wait: bool = True) -> int:
        """Lease what is due and start delivering it; with ``wait``, also wait until
        those deliveries are recorded. Returns how many deliveries started."""
        free = self.options.max_concurrency - len(self._in_flight)
        if free <= 0:
            await self._one_finished()
            return 0
        wanted, self._wanted_position = self._wanted_position, 0
        if wanted and self.caught_up is not None:
            await asyncio.to_thread(self.caught_up, wanted)
        now = iso_time(self.app.ports.clock.now())
        listed = await asyncio.to_thread(self.view.due_outbound, now,
                                         self.options.batch_size + len(self._in_flight))
        due = [message_id for message_id in listed if message_id not in self._in_flight]
        due = due[:min(free, self.options.batch_size)]
        if not due:
            if wait:
                await self.drain()
            return 0
        with acting(ACTOR, protocol="smtp-out", purpose="delivery"):
            jobs = await asyncio.to_thread(self.app.lease_outbound, due, self.node,
                                           self.options.lease_seconds)
        for job in jobs:
            self._in_flight.add(job.message_id)
            task = asyncio.create_task(self._deliver_and_record(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if wait:
            await self.drain()
        return len(jobs)

    async def drain(self) -> None:
        """Wait for every started delivery to be recorded; close idle connections."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._recording is not None:
            await self._recording
        await self._close_idle(all_of_them=True)

    async def _one_finished(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    # -- one message -----------------------------------------------------------------------

    async def _deliver_and_record(self, job: OutboundJob) -> None:
        try:
            async with self._slots:
                # Done well before the lease runs out, or not at all: after it, another
                # node may take the message and two attempts would overlap.
                record = await asyncio.wait_for(self._attempt(job), self.options.lease_seconds * 0.8)
        except TimeoutError:
            record = AttemptRecord(job.message_id, job.account_id, [
                _result(r["address"], 451, "4.4.2", "Delivery took longer than the lease allows", "")
                for r in job.recipients])
        except Exception as error:  # noqa: BLE001 - a bug must not kill the worker
            log.exception("outbound delivery of %s failed unexpectedly", job.message_id)
            record = AttemptRecord(job.message_id, job.account_id, [
                _result(r["address"], 451, "4.3.0", f"Local error: {type(error).__name__}", "")
                for r in job.recipients])
        self._finished.append(record)
        await self._record_finished()

    async def _record_finished(self) -> None:
        """One writer at a time; whatever finished meanwhile goes in its next commit."""
        if self._recording is not None and not self._recording.done():
            return
        self._recording = asyncio.create_task(self._record_loop())
        await asyncio.shield(self._recording)

    async def _record_loop(self) -> None:
        while self._finished:
            batch, self._finished = self._finished, []
            try:
                with acting(ACTOR, protocol="smtp-out", purpose="delivery"):
                    await asyncio.to_thread(self.app.record_attempts, batch, self.options.policy,
                                            self.report)
            except Exception as error:  # noqa: BLE001 - the lease runs out; the attempt repeats
                log.error("could not record %d delivery attempt(s): %s: %s", len(batch),
                          type(error).__name__, error)
            for record in batch:
                self._in_flight.discard(record.message_id)
            self._wake.set()  # slots are free again: more may be due

    async def _attempt(self, job: OutboundJob) -> AttemptRecord:
        recipients = list(job.recipients)
        suppressed: list[str] = []
        if job.purpose is not None:
            # DESIGN §4: checked again now, as consent may have been withdrawn since.
            allowed = await asyncio.to_thread(self._with_consent, [r["address"] for r in recipients],
                                              job.purpose)
            suppressed = [r["address"] for r in recipients if r["address"] not in allowed]
            recipients = [r for r in recipients if r["address"] in allowed]
        record = AttemptRecord(job.message_id, job.account_id, [], suppressed)
        # One domain per message since submissions are split per domain; a message
        # queued before that may hold several, and each goes to its own MX.
        domains: dict[str, list[dict[str, Any]]] = {}
        for recipient in recipients:
            domains.setdefault(recipient["address"].rpartition("@")[2].lower(), []).append(recipient)
        for domain, group in domains.items():
            record.results += await self._attempt_domain(job, domain, group)
        return record

    async def _attempt_domain(self, job: OutboundJob, domain: str,
                              recipients: list[dict[str, Any]]) -> list[dict[str, Any]]:
        def failed(code: int, status: str, text: str) -> list[dict[str, Any]]:
            return [_result(r["address"], code, status, text, "") for r in recipients]

        try:
            found = await asyncio.to_thread(self._route, domain)
        except RouteFailure as failure:
            return failed(failure.code, failure.status, failure.detail)
        candidates, tls = await self._tls_policy(found, job, domain)
        if not candidates:
            return failed(451, "4.7.5", "No MX host matches the domain's MTA-STS policy")
        if found.kind in ("mx", "implicit"):
            candidates = await asyncio.to_thread(self._resolved, candidates)
        if not candidates:
            return failed(451, "4.4.3", f"No address found for the mail hosts of {domain}")
        if job.purpose is None:
            return await self._send(found, candidates, tls, job, recipients)
        # RFC 8058: each recipient gets their own unsubscribe link, so their own copy.
        results = []
        for recipient in recipients:
            results += await self._send(found, candidates, tls, job, [recipient])
        return results

    def _with_consent(self, addresses: list[str], purpose: str) -> set[str]:
        return {address for address in addresses if self.app.has_consent(address, purpose)}

    def _route(self, domain: str) -> Route:
        """RFC 5321 §5.1, with the operator's per-domain routes and smarthost first."""
        hop = (self.options.routes or {}).get(domain.lower())
        if hop is not None:
            host, port = parse_smarthost(hop)
            return Route(domain, "transport", (Candidate(host, port, 0),))
        return route(domain, self.resolver, self.options.smarthost or None, port=self.options.mx_port,
                     own_hosts=frozenset({self.options.hostname}))

    def _resolved(self, candidates: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
        """Each MX host's addresses, in the host's turn (RFC 5321 §5.1: try every
        address of a host before the next host); a host that does not resolve is
        skipped. (A smarthost or per-domain route is the operator's name and is
        connected to by name, /etc/hosts included.)"""
        out: list[Candidate] = []
        for candidate in candidates:
            if candidate.is_address:
                out.append(candidate)
                continue
            try:
                addresses = self.resolver.addresses(candidate.host)
            except DnsError:
                continue
            out += [candidate._replace(address=address) for address in addresses]
        return tuple(out)

    async def _tls_policy(self, found: Route, job: OutboundJob,
                          domain: str) -> tuple[tuple[Any, ...], TlsPolicy]:
        candidates = found.candidates
        verified = TlsPolicy(required=True, verify=True, context=self.options.verify_context)
        if job.requiretls:
            # RFC 8689 §4.2.1: TLS with a verified certificate on every hop.
            return candidates, verified
        if found.kind != "mx" or not self.options.mta_sts or self.sts is None or job.tls_optional:
            return candidates, TlsPolicy()
        policy = await asyncio.to_thread(self.sts.policy, domain)
        if policy is None or not policy.requires_tls:
            return candidates, TlsPolicy()
        # RFC 8461 §4.1 and §5: in enforce mode only listed MX hosts, only over TLS with
        # a valid certificate; "testing" and "none" change nothing here.
        return tuple(c for c in candidates if policy.allows_mx(c.host)), verified

    async def _send(self, found: Route, candidates: tuple[Any, ...], tls: TlsPolicy, job: OutboundJob,
                    recipients: list[dict[str, Any]]) -> list[dict[str, Any]]:
        envelope = OutboundEnvelope(
            mail_from=job.mail_from,
            recipients=tuple(OutboundRecipient(r["address"], tuple(r.get("notify") or ()), r.get("orcpt"))
                             for r in recipients),
            ret=job.ret, envid=_xtext_decoded(job.envid), smtp_utf8=job.smtp_utf8,
            requiretls=job.requiretls)
        body = job.body
        if job.purpose is not None and self.unsubscribe_url is not None:
            body = _with_unsubscribe(body, self.unsubscribe_url(recipients[0]["address"], job.purpose))
        body = await asyncio.to_thread(self._signed, body)
        key = (found.limit_key, candidates, tls.required, tls.verify, job.requiretls)
        while not self._limiter.acquire(found.limit_key):
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), 0.5)
        try:
            connection = self._reusable(key)
            if connection is None:
                try:
                    connection = await open_connection(
                        candidates, helo=self.options.hostname, tls=tls, requiretls=job.requiretls,
                        timeout=self.options.timeout)
                except ConnectFailure as failure:
                    return [_result(r["address"], failure.code, failure.status, failure.text, "")
                            for r in recipients]
            results = await connection.send(envelope, body)
            if connection.usable:
                self._park(key, connection)
            else:
                await connection.close()
        finally:
            self._limiter.release(found.limit_key)
            self._slot_freed.set()
        await self._close_idle()
        return [_result(r.address, r.code, r.status, r.text, r.host) for r in results]

    def _reusable(self, key: tuple[Any, ...]) -> DeliveryConnection | None:
        idle = self._idle.get(key)
        while idle:
            since, connection = idle.pop()
            if connection.usable and time.monotonic() - since < CONNECTION_IDLE_SECONDS:
                return connection
            self._closing(connection)
        return None

    def _park(self, key: tuple[Any, ...], connection: DeliveryConnection) -> None:
        """Keep a connection for reuse, but never more idle ones than deliveries may
        run at once (Postfix caps its connection cache too): with many destinations an
        unbounded pool holds a connection per destination and exhausts the peer."""
        self._idle.setdefault(key, []).append((time.monotonic(), connection))
        parked = sum(len(entries) for entries in self._idle.values())
        while parked > self.options.max_concurrency:
            oldest = min(self._idle, key=lambda k: self._idle[k][0][0])
            _since, stale = self._idle[oldest].pop(0)
            if not self._idle[oldest]:
                del self._idle[oldest]
            self._closing(stale)
            parked -= 1

    def _closing(self, connection: DeliveryConnection) -> None:
        task = asyncio.create_task(connection.close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_idle(self, *, all_of_them: bool = False) -> None:
        for connection in self._take_idle(all_of_them):
            await connection.close()

    def _take_idle(self, all_of_them: bool) -> list[DeliveryConnection]:
        """Remove the connections idle too long from the pool, in one step with no
        await in it, so no other task can take one of them meanwhile."""
        now = time.monotonic()
        expired = []
        for key in list(self._idle):
            keep = []
            for since, connection in self._idle[key]:
                if all_of_them or now - since >= CONNECTION_IDLE_SECONDS or not connection.usable:
                    expired.append(connection)
                else:
                    keep.append((since, connection))
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return expired

    def _signed(self, body: bytes) -> bytes:
        """Both DKIM signatures of the From domain, when it is one of ours (RFC 6376
        §5, RFC 8463); other mail, and mail that cannot be signed, goes as it is."""
        if not self.options.dkim or self.keyring is None:
            return body
        domain = _from_domain(body)
        if domain is None or not self.app.is_local_domain(domain):
            return body
        try:
            keys = self.keyring.keys_for(domain)
            return sign(body, domain, keys) if keys is not None else body
        except DkimSigningError as error:
            log.warning("not DKIM-signed: %s", error)
            return body

    # -- reports ---------------------------------------------------------------------------

    def report(self, message: OutboundMessage, rows: list[dict[str, Any]], original: bytes) -> bytes | None:
        """The RFC 3464 report on ``rows`` for the sender, or None when no recipient
        asked for one (RFC 3461 §4.1) or the sender is null (RFC 5321 §4.5.5)."""
        if not needs_dsn(message.mail_from):
            return None
        kinds = {"failed": "failure", "delayed": "delay", "delivered": "success"}
        wanted = [row for row in rows if should_notify(row.get("notify"), kinds[row["action"]])]
        if not wanted:
            return None
        now = self.app.ports.clock.now()
        kind = next(kinds[a] for a in ("failed", "delayed", "delivered")
                     if any(row["action"] == a for row in wanted))
        expiry = parse_iso_time(message.queued_at).timestamp() + self.options.policy.max_age
        statuses = [RecipientStatus(
            recipient=row["address"], action=row["action"], status=_status_for(row),
            original_recipient=row.get("orcpt"), remote_mta=row.get("host") or None,
            diagnostic=f"{row['code']} {row['text']}".strip() if row.get("text") else None,
            last_attempt=now,
            will_retry_until=datetime.fromtimestamp(expiry, UTC) if row["action"] == "delayed" else None,
        ) for row in wanted]
        return build_dsn(reporting_mta=self.options.hostname, original=original, sender=message.mail_from,
                         recipients=statuses, envid=message.envid, ret=message.ret,
                         arrival=parse_iso_time(message.queued_at), now=now, kind=kind)


def _status_for(row: dict[str, Any]) -> str:
    """An RFC 3463 status that fits the row's action (RFC 3464 §2.3.4)."""
    status = str(row.get("status") or "")
    allowed = {"failed": "45", "delayed": "4", "delivered": "2"}[row["action"]]
    if status[:1] in allowed:
        return status
    return {"failed": "5.0.0", "delayed": "4.0.0", "delivered": "2.0.0"}[row["action"]]


def _xtext_decoded(value: str | None) -> str | None:
    """ENVID is kept as received, in xtext (RFC 3461 §4); the client encodes it again."""
    if value is None:
        return None
    return _XTEXT_HEX.sub(lambda match: chr(int(match.group(1), 16)), value)


_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")


def _result(address: str, code: int, status: str, text: str, host: str) -> dict[str, Any]:
    return {"address": address, "code": code, "status": status, "text": text[:500], "host": host}


def _from_domain(body: bytes) -> str | None:
    head = body.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    fields = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n")
    values = fields.get_all("from") or []
    addresses = [address for _, address in getaddresses([str(v) for v in values]) if "@" in address]
    if len(addresses) != 1:
        return None
    return addresses[0].rpartition("@")[2].strip().lower() or None


def _with_unsubscribe(body: bytes, url: str) -> bytes:
    """RFC 8058 §3.1 (and RFC 2369 §3.2): a List-Unsubscribe URI and the one-click
    List-Unsubscribe-Post field, on top, where DKIM signs them (RFC 8058 §4)."""
    newline = b"\r\n" if b"\r\n" in body[:4096] else b"\n"
    fields = (f"List-Unsubscribe: <{url}>".encode("ascii") + newline
              + b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" + newline)
    return fields + body

