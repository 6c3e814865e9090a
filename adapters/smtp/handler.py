"""The decisions behind MAIL, RCPT, DATA and AUTH: relay policy, ownership of the sender,
authentication with throttling, and the store (through the intake pipeline).

Everything that touches the store runs in a worker thread (the use cases block), so one
slow commit never stalls other connections, and concurrent DATA transactions meet in
the same group commit. ``250`` is returned only after the use case returned, that is
after the commit: an acknowledged message is on disk.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path as FsPath
from typing import Any, TypeVar
from uuid import UUID

from adapters.intake import (
    Arrival,
    BadPurpose,
    ContentRejected,
    ContentTempfail,
    Intake,
    SenderNotOwned,
    owns,
)
from adapters.login_throttle import LoginThrottle
from adapters.smtp import replies
from adapters.smtp.greylist import Greylist
from adapters.smtp.paths import Path
from adapters.smtp.protocol import LedgerEnvelope, LedgerSMTP
from adapters.smtp.rate_limit import OutboundRateLimit
from domain.application.context import acting
from domain.application.service import LedgerMail
from domain.application.submission import RemoteRecipient
from domain.model.errors import (
    AuthenticationFailed,
    DomainError,
    MessageTooLarge,
    SubjectErased,
    UnknownAddress,
)
from domain.model.values import normalize_address, normalize_domain

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long an answer to "is this mailbox under its quota?" is reused.
ROOM_CACHE_SECONDS = 2.0
#: Messages of storage errors that mean "the disk is full" (SQLite, PostgreSQL).
#: Why a scanner refused a message -> the reply (550 5.7.1 for spam and DMARC, 554 5.7.0
#: for a virus or exceeded scan limits; RFC 3463 §3.8).
_REJECTIONS = {"spam": replies.SPAM_REJECTED, "dmarc": replies.DMARC_REJECTED,
               "virus": replies.VIRUS_REJECTED, "scan_limits": replies.SCAN_LIMITS_REJECTED}
_DISK_FULL_TEXT = ("database or disk is full", "no space left on device", "could not extend file")


class MailHandler:
    def __init__(self, app: LedgerMail, intake: Intake, throttle: LoginThrottle,
                 executor: ThreadPoolExecutor, data_dir: FsPath, min_free_bytes: int,
                 hide_client_ip_on_submission: bool,
                 rate_limit: OutboundRateLimit | None = None,
                 greylist: Greylist | None = None) -> None:
        self.app = app
        #: Greylisting of MX recipients (RFC 6647, issue 8); None when off, so no cost.
        self.greylist = greylist
        #: Recipients per account and hour on submission (issue 8); None: no limit.
        self.rate_limit = rate_limit
        self.intake = intake
        self.throttle = throttle
        self.executor = executor
        self.data_dir = data_dir
        self.min_free_bytes = min_free_bytes
        self.hide_client_ip_on_submission = hide_client_ip_on_submission
        #: account id -> (when asked, whether it had room)
        self._room: dict[UUID, tuple[float, bool]] = {}

    async def _run(self, server: LedgerSMTP, fn: Callable[..., T], *args: Any) -> T:
        """Run a use case in a worker thread, acting as this session's principal."""
        principal = (f"user:{server.state.account_id}" if server.state.account_id
                     else f"peer:{server.listener.kind}")
        session_id = server.state.session_id

        def call() -> T:
            with acting(principal, protocol=f"smtp-{server.listener.name}", session=session_id,
                        purpose="delivery"):
                return fn(*args)

        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, call)

    # -- MAIL ------------------------------------------------------------------------

    async def handle_MAIL(self, server: LedgerSMTP, session: Any, envelope: LedgerEnvelope,
                          path: Path) -> str:
        if self._disk_nearly_full():
            return replies.NO_STORAGE  # Postfix's queue_minfree: refuse before the data comes
        if server.is_submission:
            if not path.address:
                return replies.NULL_SENDER_REFUSED
            owned = await self._run(server, self.app.sender_addresses, server.state.account_id)
            if not owns({a.lower() for a in owned}, path.address):
                return replies.SENDER_NOT_OWNED
        return replies.SENDER_OK

    def _disk_nearly_full(self) -> bool:
        if not self.min_free_bytes:
            return False
        try:
            return shutil.disk_usage(self.data_dir).free < self.min_free_bytes
        except OSError:
            return False

    # -- RCPT ------------------------------------------------------------------------

    async def handle_RCPT(self, server: LedgerSMTP, session: Any, envelope: LedgerEnvelope,
                          path: Path, notify: list[str], orcpt: str | None) -> str:
        if path.sender_routed:
            return replies.ROUTING_DENIED
        remembered = self._remembered_recipient(path)
        local, address = remembered or await self._run(server, self._local_recipient, path)
        if local:
            if address is None:
                return replies.UNKNOWN_USER
            if self._greylisted(server, envelope, address):
                return replies.GREYLISTED
            if not await self._has_room(server, address):
                return replies.MAILBOX_FULL
            if address not in envelope.local_recipients:
                envelope.local_recipients.append(address)
            return replies.RECIPIENT_OK
        if not server.session.authenticated:
            return replies.RELAY_DENIED  # RFC 5321 §3.6.2: no relaying for strangers
        if path.is_address_literal:
            return replies.ADDRESS_LITERAL_REFUSED
        if path.domain.isascii():
            try:
                normalize_domain(path.domain)
            except DomainError:
                return replies.BAD_RECIPIENT_SYNTAX
        envelope.remote_recipients.append(RemoteRecipient(path.address, notify, orcpt))
        return replies.RECIPIENT_QUEUED

    def _greylisted(self, server: LedgerSMTP, envelope: LedgerEnvelope, address: str) -> bool:
        """RFC 6647 §4: only strangers on the MX listener are greylisted; submission and
        authenticated sessions never (their users would wait for their own mail). Asked
        after the unknown-user check, so a bad address still gets its 550 at once."""
        if self.greylist is None or server.is_submission or server.session.authenticated:
            return False
        if self.greylist.admit(server.peer_ip, envelope.mail_from or "", address):
            return False
        # No address and no IP in the log: both are personal data (docs/anti-abuse.md).
        log.info("%s greylisted a recipient", server.listener.name)
        return True

    async def _has_room(self, server: LedgerSMTP, address: str) -> bool:
        """Is the recipient's account under its quota? Asked of the views at most every
        ``ROOM_CACHE_SECONDS`` per account, so a busy MX pays one query per account, not
        one per message."""
        try:
            found, account_id = self.app.remembered_route(address)
            if not found or account_id is None:
                account_id = await self._run(server, self.app.delivery_account_id, address)
            now = time.monotonic()
            known = self._room.get(account_id)
            if known is not None and now - known[0] < ROOM_CACHE_SECONDS:
                return known[1]
            room = await self._run(server, self.app.has_room, account_id)
        except Exception as error:  # noqa: BLE001 - the quota is soft: a store hiccup takes the mail
            log.warning("quota of a recipient could not be read: %s", type(error).__name__)
            return True
        if len(self._room) > 100_000:
            self._room.clear()
        self._room[account_id] = (now, room)
        return room

    def _remembered_recipient(self, path: Path) -> tuple[bool, str | None] | None:
        """The answer of ``_local_recipient`` when the application remembers it (no store
        read, so no trip to a worker thread); None when it must be looked up."""
        if path.is_address_literal or not path.domain.isascii():
            return False, None
        local = self.app.remembered_local_domain(path.domain.lower())
        if local is None:
            return None
        if not local:
            return False, None
        try:
            address = normalize_address(path.address)
        except DomainError:
            return True, None
        found, account_id = self.app.remembered_route(address)
        if not found:
            return None
        return True, address if account_id is not None else None

    def _local_recipient(self, path: Path) -> tuple[bool, str | None]:
        """(is the domain ours, the address to deliver to or None for unknown): both
        lookups in one trip to a worker thread."""
        if path.is_address_literal or not path.domain.isascii() or not self.app.is_local_domain(path.domain):
            return False, None
        try:
            address = normalize_address(path.address)
            self.app.delivery_account_id(address)
        except DomainError:
            return True, None
        return True, address

    # -- DATA ------------------------------------------------------------------------

    async def handle_DATA(self, server: LedgerSMTP, session: Any, envelope: LedgerEnvelope) -> str:
        secure = server.state.secure
        authenticated = bool(server.session.authenticated)
        utf8 = envelope.smtp_utf8
        # RFC 3848 / RFC 6531 §3.7.3 "with" keywords: ESMTP, ESMTPS, ESMTPSA, UTF8SMTPSA, ...
        protocol = f"{'UTF8SMTP' if utf8 else 'ESMTP'}{'S' if secure else ''}{'A' if authenticated else ''}"
        if not server.session.extended_smtp:
            protocol = "SMTP"
        arrival = Arrival(
            channel=server.listener.kind,
            local_recipients=list(envelope.local_recipients),
            remote_recipients=list(envelope.remote_recipients),
            mail_from=envelope.mail_from or "",
            account_id=server.state.account_id,
            helo=server.session.host_name or "",
            client_ip=server.peer_ip,
            hide_client_ip=server.is_submission and self.hide_client_ip_on_submission,
            protocol=protocol,
            tls=server.state.tls_description,
            ret=envelope.ret,
            envid=envelope.envid,
            smtp_utf8=utf8,
            requiretls=envelope.requiretls,
        )
        raw = envelope.original_content or b""
        account_id = server.state.account_id if server.is_submission else None
        count = len(arrival.local_recipients) + len(arrival.remote_recipients)
        if account_id is not None and self.rate_limit is not None:
            if not self.rate_limit.reserve(account_id, count):
                # No addresses in the log: the account id is a pseudonymous UUID.
                log.warning("%s refused %d recipient(s): account %s is over outbound.max_messages_per_hour",
                            server.listener.name, count, account_id)
                return replies.RATE_LIMITED
            reply = await self._accept(server, arrival, raw)
            if not reply.startswith("250"):
                self.rate_limit.release(account_id, count)
            return reply
        return await self._accept(server, arrival, raw)

    async def _accept(self, server: LedgerSMTP, arrival: Arrival, raw: bytes) -> str:
        try:
            accepted = await self._run(server, self.intake.accept, arrival, raw)
        except SenderNotOwned:
            return replies.FROM_NOT_OWNED
        except MessageTooLarge:
            return replies.TOO_BIG
        except ContentRejected as refusal:
            return _REJECTIONS.get(refusal.kind, replies.CONTENT_REJECTED)
        except BadPurpose:
            return replies.BAD_PURPOSE
        except ContentTempfail as deferral:
            return replies.AUTH_DNS_TEMPFAIL if deferral.kind == "dns" else replies.SCAN_TEMPFAIL
        except (UnknownAddress, SubjectErased):
            # Removed or being erased between RCPT and DATA: try again; once the
            # address is gone the next RCPT says 550.
            return replies.LOCAL_ERROR
        except Exception as error:  # noqa: BLE001 - the sender must retry, never bounce
            return storage_failure_reply(error)
        log.info("%s accepted %s (%d bytes, %d local, %d remote)", server.listener.name,
                 accepted.queue_id, accepted.stored_size, len(arrival.local_recipients),
                 len(arrival.remote_recipients))
        return replies.queued(accepted.queue_id)

    # -- AUTH ------------------------------------------------------------------------

    async def authenticate(self, server: LedgerSMTP, session: Any, login: str, password: str) -> str:
        ip = server.peer_ip
        # begin/end, not check: guesses sent at once on many connections must not all
        # pass the lockout check while the first ones are still being verified.
        protocol = f"smtp-{server.listener.name}"
        verdict = self.throttle.begin(ip, login, protocol)
        if verdict.locked:
            await asyncio.sleep(verdict.delay)
            return replies.AUTH_LOCKED
        failed = False
        try:
            account_id = await self._run(server, self.app.authenticate, login, password)
        except (AuthenticationFailed, DomainError, SubjectErased, ValueError):
            failed = True
        except Exception as error:  # noqa: BLE001 - store down: not the user's fault
            log.warning("authentication could not be checked: %s", type(error).__name__)
            return replies.AUTH_TEMPFAIL
        finally:
            # Also on cancellation (the client left): a leaked attempt would lock the
            # address out for good.
            self.throttle.end(ip, login, failed=failed, protocol=protocol)
        if failed:
            await asyncio.sleep(self.throttle.check(ip, login).delay)
            return replies.AUTH_FAILED
        self.throttle.succeeded(ip, login)
        server.session.authenticated = True
        server.state.account_id = account_id
        server.state.login = login
        return replies.AUTH_OK

    async def handle_exception(self, error: Exception) -> str:
        return storage_failure_reply(error)


def storage_failure_reply(error: BaseException) -> str:
    """451 for any fault (the sender retries), 452 when the disk is full; never a 5xx,
    never the exception's text on the wire (it stays in our log)."""
    log.error("transaction failed: %s: %s", type(error).__name__, error,
              exc_info=not isinstance(error, OSError))
    chain: BaseException | None = error
    while chain is not None:
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return replies.NO_STORAGE
        if any(text in str(chain).lower() for text in _DISK_FULL_TEXT):
            return replies.NO_STORAGE
        chain = chain.__cause__ or chain.__context__
    return replies.LOCAL_ERROR
