"""The composition root: Settings -> stores, application, projections, servers.

Nothing else in ledgermail constructs infrastructure. Every command and ``serve`` call
``build()``; tests do too, with their own settings.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from uuid import UUID

from eventsourcing.persistence import Notification, PersistenceError

from adapters.config import Settings
from adapters.crypto import registry
from adapters.crypto.event_sealing import SubjectCipher, SubjectMapper
from adapters.crypto.keystore import SubjectKeyStore
from adapters.crypto.master_key import load_or_create_master_key
from adapters.crypto.passwords import Argon2PasswordHasher
from adapters.crypto.pseudonyms import HmacPseudonymizer
from adapters.projection_host import ProjectionHost, ProjectionSpec
from adapters.storage.leader_lock import FileLeaderLock, PostgresLeaderLock
from adapters.storage.sqlite_store import SYNCHRONOUS_LEVELS, LedgerSQLiteFactory, LedgerSQLiteRecorder
from domain.application.base import Ports, SystemClock
from domain.application.service import LedgerMail
from projections.audit_trail.projection import AuditTrailProjection
from projections.audit_trail.view import AuditTrailInterface
from projections.mailbox_view.projection import MailboxViewProjection
from projections.mailbox_view.view import MailboxViewInterface

# The protocol servers, the intake pipeline, the scanners, the outbound worker and the
# PostgreSQL driver are imported where they are built: a CLI command (``ledgermail
# erase``) starts without loading what it never uses (issue 9).
if TYPE_CHECKING:
    from adapters.bans import BanRegistry
    from adapters.crypto.unsubscribe_tokens import UnsubscribeTokens
    from adapters.imap.server import ImapService
    from adapters.intake import Intake
    from adapters.login_throttle import LoginThrottle
    from adapters.pop3.server import Pop3Service
    from adapters.retention_scheduler import RetentionScheduler
    from adapters.smtp.dkim_keys import DkimKeyring
    from adapters.smtp.greylist import Greylist
    from adapters.smtp.mta_sts import HttpGet
    from adapters.smtp.queue_worker import QueueWorker
    from adapters.smtp.routing import Resolver
    from adapters.smtp.server import SmtpService
    from domain.ports import Scanner

log = logging.getLogger(__name__)

APP_NAME = LedgerMail.name
EVENTS_DB = "events.sqlite"
KEYS_DB = "keys.sqlite"
BLOBS_DB = "blobs.sqlite"
VIEW_DBS = {
    MailboxViewProjection.name: "mailbox_view.sqlite",
    AuditTrailProjection.name: "audit_trail.sqlite",
}


#: Where export archives built for the API wait to be fetched: one folder per account,
#: so the erasure workflow deletes a person's with the rest of them (``ExportFiles``).
EXPORTS_DIR = "exports"


class ExportFiles:
    """The ``PersonalFiles`` port over ``<data>/exports/<account id>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder_of(self, account_id: UUID) -> Path:
        folder = self.root / str(account_id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return folder

    def purge(self, account_id: UUID) -> int:
        folder = self.root / str(account_id)
        if not folder.is_dir():
            return 0
        removed = 0
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
            removed += 1
        folder.rmdir()
        return removed

    def purge_all(self) -> None:
        """Archives an earlier process built: its jobs are gone, and they hold personal data."""
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if folder.is_dir():
                    for path in folder.iterdir():
                        path.unlink(missing_ok=True)
                    folder.rmdir()
                else:
                    folder.unlink(missing_ok=True)


def export_files(container: Container) -> ExportFiles:
    files = container.app.ports.personal_files
    assert isinstance(files, ExportFiles)
    return files


class StartupError(Exception):
    """The store is unsafe to serve from; the message says why."""


def _topic(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass
class PostgresTarget:
    dsn: str
    host: str
    port: str
    user: str
    password: str
    dbname: str


def parse_postgres_url(url: str) -> PostgresTarget:
    parsed = urlparse(url)
    return PostgresTarget(
        dsn=url,
        host=parsed.hostname or "127.0.0.1",
        port=str(parsed.port or 5432),
        user=unquote(parsed.username or "postgres"),
        password=unquote(parsed.password or ""),
        dbname=(parsed.path or "/postgres").lstrip("/") or "postgres",
    )


def schemas_for(settings: Settings) -> dict[str, str]:
    base = settings.store.schema_name
    return {
        "events": base,
        "keys": f"{base}_keys",
        MailboxViewProjection.name: f"{base}_mailbox_view",
        AuditTrailProjection.name: f"{base}_audit",
    }


def eventsourcing_env(settings: Settings, master_key: bytes) -> dict[str, str]:
    """The environment the eventsourcing library builds the store from."""
    env = {
        "MAPPER_TOPIC": _topic(SubjectMapper),
        "CIPHER_TOPIC": _topic(SubjectCipher),
        "KEYSTORE_MASTER_KEY": base64.b64encode(master_key).decode(),
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }
    if settings.is_postgres:
        from adapters.storage.postgres_store import LedgerPostgresRecorder

        target = parse_postgres_url(settings.store_url)
        schemas = schemas_for(settings)
        env.update({
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": target.dbname,
            "POSTGRES_HOST": target.host,
            "POSTGRES_PORT": target.port,
            "POSTGRES_USER": target.user,
            "POSTGRES_PASSWORD": target.password,
            "POSTGRES_SCHEMA": schemas["events"],
            "POSTGRES_POOL_SIZE": str(settings.store.pool_size),
            "POSTGRES_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": _topic(LedgerPostgresRecorder),
            "KEYSTORE_URL": target.dsn,
            "KEYSTORE_SCHEMA": schemas["keys"],
        })
        for name in (MailboxViewProjection.name, AuditTrailProjection.name):
            env[f"{name.upper()}_POSTGRES_SCHEMA"] = schemas[name]
            # Views are written by one runner thread and read by a few sessions.
            env[f"{name.upper()}_POSTGRES_POOL_SIZE"] = "1"
            env[f"{name.upper()}_POSTGRES_MAX_OVERFLOW"] = "4"
    else:
        data = settings.sqlite_dir.resolve()
        env.update({
            "PERSISTENCE_MODULE": _topic(LedgerSQLiteFactory),
            "SQLITE_DBNAME": str(data / EVENTS_DB),
            "SQLITE_LOCK_TIMEOUT": "30",
            "SQLITE_SYNCHRONOUS": "FULL",
            "APPLICATION_RECORDER_TOPIC": _topic(LedgerSQLiteRecorder),
            "KEYSTORE_URL": f"sqlite:///{data / KEYS_DB}",
        })
        for name, filename in VIEW_DBS.items():
            env[f"{name.upper()}_SQLITE_DBNAME"] = str(data / filename)
            # Views are rebuilt from the log, so they need no fsync per row; their
            # tracking rows commit atomically with the rows they describe.
            env[f"{name.upper()}_SQLITE_SYNCHRONOUS"] = "NORMAL"
    return env


def runner_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The projection runners' copy of the application only reads (a small pool) and
    creates no tables: ``build`` did that, under a lock, before they start. (Concurrent
    CREATE OR REPLACE FUNCTION in PostgreSQL fails with "tuple concurrently updated".)"""
    runner = {**env, "CREATE_TABLE": "n"}
    if settings.is_postgres:
        runner.update({"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "2"})
    return runner


def _view_classes(settings: Settings) -> tuple[type, type]:
    if settings.is_postgres:
        from adapters.storage.views_postgres import PostgresAuditTrail, PostgresMailboxView

        return PostgresMailboxView, PostgresAuditTrail
    from adapters.storage.views_sqlite import SQLiteAuditTrail, SQLiteMailboxView

    return SQLiteMailboxView, SQLiteAuditTrail


class ProjectionReadModels:
    """The ``ReadModels`` port over the projection host."""

    def __init__(self, host: ProjectionHost) -> None:
        self._host = host

    @property
    def mailbox_view(self) -> MailboxViewInterface:
        return self._host.views[MailboxViewProjection.name]

    def wait_for(self, position: int, timeout: float) -> dict[str, int]:
        return self._host.wait_for(position, timeout)

    def storage_of(self, account_id: UUID) -> tuple[int, int] | None:
        return self.mailbox_view.storage_of(account_id)

    def message_dates(self, mailbox_id: UUID) -> list[tuple[int, str]]:
        return self.mailbox_view.message_dates(mailbox_id)

    def rows_for_streams(self, stream_ids: list[str]) -> int:
        return self.mailbox_view.rows_for_streams(stream_ids)

    def referenced_blobs(self, blob_ids: list[str]) -> set[str]:
        return self.mailbox_view.referenced_blobs(blob_ids)

    def blobs_of_copies(self, copy_ids: list[str]) -> dict[str, str]:
        return self.mailbox_view.blobs_of_copies(copy_ids)

    def compact(self) -> None:
        for view in self._host.views.values():
            view.compact()


@dataclass
class Container:
    settings: Settings
    app: LedgerMail
    projections: ProjectionHost
    keystore: SubjectKeyStore
    blobs: Any
    env: dict[str, str]
    closers: list[Any] = field(default_factory=list)
    throttle: LoginThrottle | None = None
    bans: BanRegistry | None = None
    unsubscribe: UnsubscribeTokens | None = None
    keyring: DkimKeyring | None = None
    #: The queue worker ``serve`` runs, woken when a submission queues mail.
    worker: QueueWorker | None = None

    @property
    def mailbox_view(self) -> MailboxViewInterface:
        return self.projections.views[MailboxViewProjection.name]

    @property
    def audit_trail(self) -> AuditTrailInterface:
        return self.projections.views[AuditTrailProjection.name]

    def catch_up(self, timeout: float = 60.0) -> dict[str, int]:
        """Wait until every view has applied everything in the log so far."""
        return self.projections.wait_for(self.app.log_position(), timeout)

    def close(self) -> None:
        if not self.projections.stop():
            return  # runner threads still use the stores: do not close them underneath
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception as error:  # noqa: BLE001
                log.debug("close: %s", error)
        self.app.close()
        registry.close_all()


@contextmanager
def schema_setup_lock(settings: Settings) -> Iterator[None]:
    """Check PostgreSQL, create the schemas, and hold a lock while tables are created,
    so processes starting together do not race on DDL. SQLite needs nothing."""
    if not settings.is_postgres:
        yield
        return
    import psycopg

    target = parse_postgres_url(settings.store_url)
    try:
        conn = psycopg.connect(target.dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        raise StartupError(f"cannot reach PostgreSQL at {target.host}:{target.port}: "
                           f"{str(error).strip().splitlines()[0]}") from None
    with conn:
        level = conn.execute("SHOW synchronous_commit").fetchone()[0]
        if level == "off":
            raise StartupError("PostgreSQL has synchronous_commit=off: an acknowledged "
                               "message could be lost; set it to on")
        key = zlib.crc32(f"ledgermail-ddl:{settings.store.schema_name}".encode())
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            for schema in schemas_for(settings).values():
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def build(settings: Settings, *, run_projections: bool = True) -> Container:
    """Open (creating on first use) the store the settings name."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.is_postgres:
        settings.sqlite_dir.mkdir(parents=True, exist_ok=True)
    master_key = load_or_create_master_key(settings.master_key_path, settings.master_key or None)
    env = eventsourcing_env(settings, master_key)
    with schema_setup_lock(settings):
        keystore = registry.keystore_from_env({"KEYSTORE_URL": env["KEYSTORE_URL"],
                                               "KEYSTORE_SCHEMA": env.get("KEYSTORE_SCHEMA", ""),
                                               "KEYSTORE_MASTER_KEY": env["KEYSTORE_MASTER_KEY"]})
        blobs, lock = _blob_store_and_lock(settings)
        mailbox_view_class, audit_class = _view_classes(settings)
        host = ProjectionHost(
            LedgerMail, APP_NAME, runner_env(settings, env),
            [ProjectionSpec(MailboxViewProjection, mailbox_view_class),
             ProjectionSpec(AuditTrailProjection, audit_class)],
            lock,
            view_env={**env, "CREATE_TABLE": "y"},
            listen_dsn=parse_postgres_url(settings.store_url).dsn if settings.is_postgres else None,
        )
        ports = Ports(
            blobs=blobs,
            keys=keystore,
            pseudonyms=HmacPseudonymizer(master_key),
            passwords=Argon2PasswordHasher(settings.crypto.password_memory_kib,
                                           settings.crypto.password_time_cost),
            read_models=ProjectionReadModels(host),
            clock=SystemClock(),
            backup_retention_days=settings.compliance.backup_retention_days,
            default_quota_bytes=settings.default_quota_bytes,
            personal_files=ExportFiles(settings.data_dir / EXPORTS_DIR),
        )
        app = LedgerMail(env=env, ports=ports)
    app.max_message_bytes = settings.max_message_bytes
    closers = [blobs.close] if hasattr(blobs, "close") else []
    container = Container(settings, app, host, keystore, blobs, env, closers)
    try:
        check_durability(app)
        reapply_erasures(container)
    except BaseException:
        container.close()
        raise
    if run_projections:
        host.start()
    return container


def intake(container: Container, resolver: Resolver | None = None) -> Intake:
    """The one intake pipeline (MX, submission, ``ledgermail deliver``). Tests pass a
    fake resolver for the sender-authentication and DNSBL lookups."""
    from adapters.intake import Intake

    def queued(position: int) -> None:
        if container.worker is not None:
            container.worker.wake(position)

    return Intake(container.app, container.settings.hostname, scanner(container, resolver),
                  on_queued=queued)


def scanner(container: Container, resolver: Resolver | None = None) -> Scanner:
    """The scanner chain of the settings: clamd first when ``clamav.enabled`` (a virus
    ends the chain), then the built-in scorer (sender authentication, DNS lists,
    heuristics, plus the scores of spamd and rspamd when configured) when
    ``antiabuse.enabled``."""
    from adapters.scanners.chain import ScannerChain
    from adapters.scanners.clamd import VirusScanner
    from adapters.scanners.noop import AcceptAll

    settings = container.settings
    abuse = settings.antiabuse
    spam: Scanner = AcceptAll()
    if abuse.enabled:
        from adapters.scanners.daemons import ScoreSource
        from adapters.scanners.rspamd import RspamdClient
        from adapters.scanners.scorer import SpamScorer
        from adapters.scanners.spamd import SpamdClient
        from adapters.smtp.routing import DnsPythonResolver

        sources: list[ScoreSource] = []
        if abuse.spamd.enabled:
            sources.append(SpamdClient(abuse.spamd))
        if abuse.rspamd.enabled:
            sources.append(RspamdClient(abuse.rspamd))
        spam = SpamScorer(resolver or DnsPythonResolver(), settings.hostname, abuse, sources=sources,
                          learned=container.app.spam_probabilities)
    if not settings.clamav.enabled:
        return spam
    return ScannerChain(VirusScanner.from_settings(settings.clamav), spam)


def login_throttle(container: Container) -> LoginThrottle:
    """One per process, shared by every protocol: a guesser cannot reset its budget by
    switching from SMTP AUTH to IMAP LOGIN."""
    if container.throttle is None:
        from adapters.login_throttle import LoginThrottle

        container.throttle = LoginThrottle(container.settings.auth, bans=ban_registry(container))
    return container.throttle


def ban_registry(container: Container) -> BanRegistry:
    """The bans every process on the store shares (issue 8), refreshed in the background
    every ``auth.ban_refresh_seconds``; one per process, closed with the container."""
    if container.bans is None:
        from adapters.bans import BanRegistry

        container.bans = BanRegistry(container.app, container.settings.auth.ban_refresh_seconds)
        container.bans.start()
        container.closers.append(container.bans.close)
    return container.bans


def smtp_service(container: Container, tls_context: ssl.SSLContext,
                 resolver: Resolver | None = None,
                 greylist_clock: Callable[[], float] | None = None) -> SmtpService:
    """Tests pass a fake resolver, and a fake clock for greylisting."""
    from adapters.smtp.server import SmtpService

    return SmtpService(container.app, container.settings, intake(container, resolver), tls_context,
                       login_throttle(container), greylist(container.settings, greylist_clock))


def greylist(settings: Settings, clock: Callable[[], float] | None = None) -> Greylist | None:
    """The greylist of ``antiabuse.greylist`` (one per SMTP service, in memory), or None
    when it is off, so the RCPT path does not even ask."""
    from adapters.smtp.greylist import Greylist

    if not settings.antiabuse.greylist.enabled:
        return None
    if clock is None:
        return Greylist(settings.antiabuse.greylist)
    return Greylist(settings.antiabuse.greylist, clock)


#: How long a protocol session waits for the views to show its own change before
#: answering anyway (the change is committed; only the echo of it would be late).
READ_YOUR_WRITES_SECONDS = 10.0


def _read_your_writes(container: Container) -> Callable[[int], None]:
    projections = container.projections

    def wait_for(position: int) -> None:
        try:
            projections.wait_for(position, READ_YOUR_WRITES_SECONDS)
        except TimeoutError:
            log.warning("views are more than %.0f s behind position %d", READ_YOUR_WRITES_SECONDS, position)

    return wait_for


def imap_service(container: Container, tls_context: ssl.SSLContext) -> ImapService:
    from adapters.imap.server import ImapService

    return ImapService(container.app, container.mailbox_view, _read_your_writes(container),
                       container.settings, tls_context, login_throttle(container))


def pop3_service(container: Container, tls_context: ssl.SSLContext) -> Pop3Service:
    from adapters.pop3.server import Pop3Service

    return Pop3Service(container.app, container.mailbox_view, _read_your_writes(container),
                       container.settings, tls_context, login_throttle(container))


def _blob_store_and_lock(settings: Settings) -> tuple[Any, Any]:
    if settings.is_postgres:
        from adapters.storage.blobs_postgres import PostgresBlobStore

        return (PostgresBlobStore(settings.store_url, schemas_for(settings)["events"]),
                PostgresLeaderLock(settings.store_url, settings.store.schema_name))
    from adapters.storage.blobs_sqlite import SQLiteBlobStore

    root = settings.sqlite_dir.resolve()
    return SQLiteBlobStore(root / BLOBS_DB), FileLeaderLock(root / "projections.lock")


_current: Container | None = None


def set_current(container: Container | None) -> None:
    """The container ``serve`` runs; the HTTP app (built by uvicorn) picks it up."""
    global _current
    _current = container


def current() -> Container:
    if _current is None:
        raise RuntimeError("no ledgermail store is open in this process (run ledgermail serve)")
    return _current


def check_durability(app: LedgerMail) -> None:
    """Refuse a store that could lose acknowledged mail (DESIGN §2)."""
    datastore = getattr(app.recorder, "datastore", None)
    if hasattr(datastore, "synchronous_level"):
        level = datastore.synchronous_level()
        if level < SYNCHRONOUS_LEVELS["FULL"]:
            raise StartupError(f"SQLite synchronous={level} is below FULL: refusing to start")


def reapply_erasures(container: Container) -> list[str]:
    """Shred again any key an erasure destroyed that a restored key store brought back
    (DESIGN §3): the log, not the key store, is the authority on what was erased."""
    revived: list[str] = []
    for erasure_id, key_ids in container.app.shredded_keys_by_erasure():
        revived += container.keystore.reapply_shreds(erasure_id, key_ids)
    if revived:
        log.warning("re-shredded %d key(s) that a restored key store had brought back", len(revived))
    return revived


def notifications(container: Container, stop: int | None = None,
                  batch: int = 2000) -> Iterator[Notification]:
    """Every stored event in log order (up to ``stop``), read in pages. A log that
    cannot be read (a row changed outside ledgermail) is a ``StartupError``."""
    start = 1
    while True:
        try:
            page = container.app.recorder.select_notifications(start=start, limit=batch, stop=stop)
        except PersistenceError as error:
            raise StartupError(f"the event log cannot be read after position {start - 1}: "
                               f"{error} (changed outside ledgermail?)") from None
        if not page:
            return
        yield from page
        start = page[-1].id + 1


def verify_event_log(container: Container) -> int:
    """Authenticate every stored event; raise on the first that fails. Returns the count."""
    mapper = container.app.mapper
    assert isinstance(mapper, SubjectMapper)
    count = 0
    for notification in notifications(container):
        mapper.verify(notification)
        count += 1
    return count


def dkim_keyring(container: Container) -> DkimKeyring:
    """Each local domain's DKIM keys, sealed in the key store (one keyring per process)."""
    if container.keyring is None:
        from adapters.smtp.dkim_keys import DkimKeyring

        container.keyring = DkimKeyring(container.keystore)
    return container.keyring


def domain_dns(container: Container, domain: str) -> str:
    """What ``ledgermail domain dns`` prints: each record in zone-file form with a note,
    then the MTA-STS policy file to serve."""
    from adapters.smtp.dkim_signing import dns_records, mta_sts_policy, normalise_domain

    name = normalise_domain(domain)
    container.app.check_local_domain(name)
    keys = dkim_keyring(container).keys_for(name)
    assert keys is not None
    hostname = container.settings.hostname.rstrip(".").lower()
    lines = [f"; DNS records for {name} (ledgermail). Publish each; TXT values unquoted are what "
             "a provider's form takes.", ""]
    if "." not in hostname:
        # The MX must name this server's public host; "localhost" names none.
        lines.insert(1, f"; the setting hostname is {hostname!r}, not a public name: the records below "
                        f"use mail.{name}; set hostname to this server's name and run this again")
        hostname = f"mail.{name}"
    # RFC 8461 §3.1: the id changes with the policy; the keys' date names this one.
    sts_id = keys.ed25519.selector.removeprefix("ed")
    for record in dns_records(name, keys, mx_host=hostname, mta_sts_id=sts_id):
        if record.note:
            lines.append(f"; {record.note}")
        lines.append(record.zone_line(3600))
    lines += ["", f"; The MTA-STS policy, served at https://mta-sts.{name}/.well-known/mta-sts.txt:"]
    lines += [f";   {line}" for line in mta_sts_policy(hostname).splitlines()]
    return "\n".join(lines) + "\n"


def queue_worker(container: Container, resolver: Resolver | None = None,
                 https_get: HttpGet | None = None, **overrides: Any) -> QueueWorker:
    """The outbound queue worker ``serve`` runs. Tests pass a fake resolver and HTTPS
    client (the edge of the world) and option overrides such as ``mx_port``."""
    from adapters.smtp.https_get import https_get as default_https_get
    from adapters.smtp.mta_sts import PolicyCache
    from adapters.smtp.queue_worker import QueueWorker, WorkerOptions
    from adapters.smtp.routing import DnsPythonResolver
    from domain.application.outbound import RetryPolicy

    settings = container.settings
    out = settings.outbound
    options = WorkerOptions(
        hostname=settings.hostname, smarthost=out.smarthost, routes=dict(out.routes),
        policy=RetryPolicy(min_backoff=out.min_backoff, max_backoff=out.max_backoff,
                           max_age=out.max_age, delay_warning=out.delay_warning),
        lease_seconds=out.lease_seconds, poll_interval=out.poll_interval, batch_size=out.batch_size,
        max_concurrency=out.max_concurrency, per_domain_concurrency=out.per_domain_concurrency,
        timeout=out.timeout, mta_sts=out.mta_sts, dkim=out.dkim)
    options = replace(options, **overrides)
    resolver = resolver or DnsPythonResolver()
    sts = PolicyCache(resolver, https_get or default_https_get) if out.mta_sts else None
    tokens = unsubscribe_tokens(container)
    base = (out.unsubscribe_url or f"http://{settings.listen.http or '127.0.0.1:8025'}/unsubscribe/")
    app = container.app

    def unsubscribe_url(address: str, purpose: str) -> str:
        return base.rstrip("/") + "/" + tokens.issue(app.consent_record_id(address), purpose)

    return QueueWorker(app, container.mailbox_view, options, resolver, sts,
                       dkim_keyring(container) if out.dkim else None, unsubscribe_url,
                       _read_your_writes(container))


def retention_scheduler(container: Container, interval: float | None = None) -> RetentionScheduler:
    """The retention scheduler ``serve`` runs: on the node that leads the projections,
    every ``retention.interval`` seconds (or ``interval``)."""
    from adapters.retention_scheduler import RetentionScheduler

    every = interval if interval is not None else container.settings.retention.interval
    projections = container.projections
    return RetentionScheduler(container.app, every, lambda: projections.is_leading)


def unsubscribe_tokens(container: Container) -> UnsubscribeTokens:
    """The one-click unsubscribe tokens (RFC 8058), keyed from the store's master key."""
    if container.unsubscribe is None:
        from adapters.crypto.unsubscribe_tokens import UnsubscribeTokens

        settings = container.settings
        master_key = load_or_create_master_key(settings.master_key_path, settings.master_key or None)
        container.unsubscribe = UnsubscribeTokens(master_key)
    return container.unsubscribe


def unsubscribe_link(container: Container, address: str, purpose: str) -> str:
    """The one-click link (RFC 8058) that withdraws ``address``'s consent to ``purpose``:
    ``outbound.unsubscribe_url`` (default: the http listener's /unsubscribe/) + token."""
    settings = container.settings
    base = (settings.outbound.unsubscribe_url
            or f"http://{settings.listen.http or '127.0.0.1:8025'}/unsubscribe/")
    record_id = container.app.consent_record_id(address)
    return base.rstrip("/") + "/" + unsubscribe_tokens(container).issue(record_id, purpose)


def verify_audit_trail(container: Container) -> Any:
    """``ledgermail audit --verify`` for callers outside adapters (the API): the
    ``AuditVerdict`` of the hash chain and its agreement with the event log."""
    from adapters.audit_check import verify_audit  # it imports this module

    return verify_audit(container)


def write_subject_export(container: Container, address: str, out: Any) -> dict[str, int]:
    """``ledgermail export ADDRESS --out FILE`` for callers outside adapters (the API):
    the use case ``export_subject`` records the read, then the zip is written to ``out``
    (a ``Path``) atomically; returns the counts."""
    from adapters.export_archive import write_archive

    export = container.app.export_subject(address)
    container.catch_up()
    history = container.audit_trail.rows(export.subject_pseudonym)
    return write_archive(out, export, history)
