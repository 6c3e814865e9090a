"""SpamAssassin's spamd as a score source: the SPAMC/1.5 protocol (``spamd/PROTOCOL`` in
the SpamAssassin sources), spoken over one TCP or unix socket per message.

Request: ``SYMBOLS SPAMC/1.5``, a ``Content-length`` header, an empty line, the message
as stored (with our Received: field, so spamd sees the relay it came from). Reply:
``SPAMD/1.1 0 EX_OK``, a ``Spam: True ; 1000.0 / 5.0`` header (verdict, score,
threshold), an empty line, and the rule names that hit, comma-separated. Only the score
is used: it is added to the built-in scorer's, whose thresholds decide (issue 8: "their
scores combined"). spamd's own threshold is ignored.

A message over ``antiabuse.spamd.max_bytes`` is not sent, as ``spamc`` does with its
``--max-size``: spam is small and content filters on big mail cost much and find little.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from adapters.scanners.daemons import (
    DaemonScore,
    DaemonUnavailable,
    Deadline,
    connect,
    read_until,
    send_all,
)
from domain.ports import ScanContext

if TYPE_CHECKING:
    from adapters.config import SpamDaemon

_STATUS = re.compile(rb"^SPAMD/\d+\.\d+ +(\d+) +(\S.*)$")
_NUMBER = rb"(-?\d+(?:\.\d+)?)"
#: ``Spam: True ; 1000.0 / 5.0``: the verdict, the score, spamd's threshold.
_SPAM = re.compile(rb"^Spam: *(True|False|Yes|No) *; *" + _NUMBER + rb" */ *" + _NUMBER + rb" *$",
                   re.IGNORECASE)
_SYMBOL = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")


def parse_reply(reply: bytes) -> DaemonScore:
    """A SPAMD reply -> its score and rule names; any other answer is unavailable."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = _STATUS.match(lines[0])
    if status is None:
        raise DaemonUnavailable("spamd", f"not a SPAMD reply: {lines[0][:100]!r}")
    if status.group(1) != b"0":
        raise DaemonUnavailable("spamd", f"error {status.group(1).decode()} {status.group(2)[:100]!r}")
    for line in lines[1:]:
        spam = _SPAM.match(line)
        if spam:
            symbols = tuple(s for s in body.decode("ascii", "replace").strip().split(",") if _SYMBOL.match(s))
            return DaemonScore("spamd", float(spam.group(2)), symbols)
    raise DaemonUnavailable("spamd", "the reply has no Spam: header")


class SpamdClient:
    def __init__(self, settings: SpamDaemon) -> None:
        self.settings = settings

    def score(self, raw: bytes, context: ScanContext) -> DaemonScore:
        if len(raw) > self.settings.max_bytes:
            return DaemonScore("spamd", 0.0, ("too_big",))
        try:
            return parse_reply(self._symbols(raw))
        except DaemonUnavailable:
            if self.settings.fail_open:
                return DaemonScore("spamd", 0.0, unscanned=True)
            raise

    def _symbols(self, raw: bytes) -> bytes:
        deadline = Deadline(self.settings.timeout)
        request = b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(raw)
        try:
            with connect(self.settings.address, self.settings.connect_timeout, deadline) as sock:
                send_all(sock, request + raw, deadline)
                reply = read_until(sock, deadline)  # spamd closes after its reply
        except (OSError, ValueError) as error:
            raise DaemonUnavailable("spamd", f"{type(error).__name__}: {error}") from None
        return reply
