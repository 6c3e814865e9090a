"""Virus scanning with ClamAV's clamd over its INSTREAM command (clamd(8)).

The protocol, from the clamd manual page: ``zINSTREAM\\0`` (the ``z`` prefix makes the
reply NUL-terminated), then the message in chunks, each a 4-byte unsigned length in
network byte order followed by that many bytes, then a zero-length chunk. The reply is
``stream: OK``, ``stream: <signature> FOUND``, ``INSTREAM size limit exceeded. ERROR``
(more than clamd's ``StreamMaxLength``; clamd then closes the connection) or
``<text> ERROR``.

The decision (issue 8, security checklist item 31):

- clean: accepted, with ``X-Virus-Status: Clean``;
- a signature found: refused with ``554 5.7.0`` (nothing stored), or with
  ``clamav.infected = "quarantine"`` delivered to the recipient's Junk mailbox marked
  ``X-Virus-Status: Infected (<signature>)``;
- scan limits exceeded count as infected, never as clean: clamd's
  ``Heuristics.Limits.Exceeded.*`` (with ``AlertExceedsMax yes``: archive bombs), its
  ``INSTREAM size limit exceeded``, and a message over ``clamav.max_bytes``, which is
  not sent at all;
- clamd down, timing out or answering nonsense: ``451 4.7.1`` so the sender retries,
  never accepted unscanned, unless ``clamav.fail_open``, which delivers it marked
  ``X-Virus-Status: Unscanned``.

MX and submission mail are scanned (our users must not spread malware either);
``ledgermail deliver`` is the operator's own input and is not.
"""

from __future__ import annotations

import logging
import re
import struct
from typing import TYPE_CHECKING, NamedTuple

from adapters.scanners.daemons import DaemonUnavailable, Deadline, connect, read_until, send_all
from domain.ports import ScanContext, ScanVerdict

if TYPE_CHECKING:
    from adapters.config import ClamAv

log = logging.getLogger(__name__)

#: Bytes per INSTREAM chunk (clamd reads chunks of any size up to StreamMaxLength).
CHUNK_BYTES = 64 * 1024
#: What clamd calls a scan that hit MaxScanSize, MaxFileSize, MaxRecursion, MaxFiles...
LIMITS_PREFIX = "Heuristics.Limits.Exceeded"
#: The name a message over our own ``clamav.max_bytes`` or clamd's StreamMaxLength gets.
OVERSIZE_NAME = "Heuristics.Limits.Exceeded.StreamMaxLength"
#: Channels whose mail is scanned.
SCANNED_CHANNELS = ("mx", "submission")
#: A signature name goes into a header only if it is a plain token (header injection).
_SIGNATURE = re.compile(r"[A-Za-z0-9._\-:/+]{1,120}\Z")
_FOUND = re.compile(r"^stream: (.+) FOUND\Z", re.DOTALL)


class ClamdResult(NamedTuple):
    #: ``clean``, ``infected`` or ``limits`` (a scan limit was exceeded).
    status: str
    signature: str = ""


def parse_reply(reply: bytes) -> ClamdResult:
    """One INSTREAM reply (its NUL stripped) -> the result; anything else is
    ``DaemonUnavailable``, because an unexplained answer is not a clean bill."""
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    if text == "stream: OK":
        return ClamdResult("clean")
    found = _FOUND.match(text)
    if found:
        name = found.group(1).strip()
        name = name if _SIGNATURE.match(name) else "Unknown.Signature"
        return ClamdResult("limits" if name.startswith(LIMITS_PREFIX) else "infected", name)
    if text.startswith("INSTREAM size limit exceeded"):
        return ClamdResult("limits", OVERSIZE_NAME)
    raise DaemonUnavailable("clamd", f"unexpected reply {text[:200]!r}")


class ClamdClient:
    """One INSTREAM scan per connection (clamd's IDSESSION would save a connect, at the
    price of state across messages)."""

    def __init__(self, address: str, *, connect_timeout: float, timeout: float) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.timeout = timeout

    def instream(self, data: bytes) -> ClamdResult:
        deadline = Deadline(self.timeout)
        try:
            with connect(self.address, self.connect_timeout, deadline) as sock:
                try:
                    send_all(sock, b"zINSTREAM\0", deadline)
                    view = memoryview(data)
                    for start in range(0, len(data), CHUNK_BYTES):
                        chunk = view[start:start + CHUNK_BYTES]
                        send_all(sock, struct.pack(">I", len(chunk)) + bytes(chunk), deadline)
                    send_all(sock, struct.pack(">I", 0), deadline)
                except (BrokenPipeError, ConnectionResetError):
                    # Past StreamMaxLength clamd answers and closes while we still write:
                    # its answer is what counts.
                    pass
                reply = read_until(sock, deadline, done=b"\0")
        except (OSError, ValueError) as error:  # TimeoutError is an OSError
            raise DaemonUnavailable("clamd", f"{type(error).__name__}: {error}") from None
        if not reply:
            raise DaemonUnavailable("clamd", "closed the connection without a reply")
        return parse_reply(reply)


class VirusScanner:
    """The ``Scanner`` for clamd; the intake runs it before the spam scorer
    (``adapters/scanners/chain.py``)."""

    def __init__(self, client: ClamdClient, settings: ClamAv) -> None:
        self.client = client
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: ClamAv) -> VirusScanner:
        return cls(ClamdClient(settings.address, connect_timeout=settings.connect_timeout,
                               timeout=settings.timeout), settings)

    def scan(self, raw: bytes, context: ScanContext) -> ScanVerdict:
        if context.channel not in SCANNED_CHANNELS:
            return ScanVerdict("accept")
        if len(raw) > self.settings.max_bytes:
            result = ClamdResult("limits", OVERSIZE_NAME)
        else:
            try:
                result = self.client.instream(raw)
            except DaemonUnavailable as error:
                return self._unscanned(str(error))
        if result.status == "clean":
            return ScanVerdict("accept", headers=("X-Virus-Status: Clean",), summary={"virus": "clean"})
        summary = {"virus": result.status, "signature": result.signature}
        reason = "virus" if result.status == "infected" else "scan_limits"
        if self.settings.infected == "quarantine":
            log.info("%s message quarantined: %s", context.channel, summary)
            return ScanVerdict("junk", reason, headers=(f"X-Virus-Status: Infected ({result.signature})",),
                               summary=summary)
        return ScanVerdict("reject", reason, summary=summary)

    def _unscanned(self, why: str) -> ScanVerdict:
        log.warning("virus scan failed (%s)%s", why, "; fail_open lets the message through"
                    if self.settings.fail_open else "; the sender is asked to retry")
        if self.settings.fail_open:
            return ScanVerdict("accept", headers=("X-Virus-Status: Unscanned (scanner unavailable)",),
                               summary={"virus": "unscanned"})
        return ScanVerdict("tempfail", "scanner", summary={"virus": "unavailable"})
