"""rspamd as a score source: its normal worker's HTTP API, ``POST /checkv2``
(rspamd.com/doc/developers/protocol.html), one request per message.

The SMTP transaction goes in request headers, as rspamd's protocol names them: ``IP``
(client address), ``Helo``, ``From`` (MAIL FROM), one ``Rcpt`` per recipient, and
``Hostname`` unset (we did not look the client's name up). The reply is JSON; its
``score`` is added to the built-in scorer's, whose thresholds decide (issue 8: "their
scores combined"). rspamd's own ``action`` is kept for the log only.

A message over ``antiabuse.rspamd.max_bytes`` is not sent (rspamd's own
``max_message`` default is 50 MB; big mail is seldom spam and costly to scan).
"""

from __future__ import annotations

import http.client
import json
import re
from typing import TYPE_CHECKING

from adapters.scanners.addresses import parse_address
from adapters.scanners.daemons import (
    MAX_REPLY_BYTES,
    DaemonScore,
    DaemonUnavailable,
    Deadline,
)
from domain.ports import ScanContext

if TYPE_CHECKING:
    from adapters.config import SpamDaemon

CHECK_PATH = "/checkv2"
_SYMBOL = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
#: Header values from the SMTP client go to rspamd only as plain tokens (no CR/LF).
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,512}\Z")


def parse_reply(status: int, body: bytes) -> DaemonScore:
    if status != 200:
        raise DaemonUnavailable("rspamd", f"HTTP {status}")
    try:
        reply = json.loads(body)
        score = float(reply["score"])
    except (ValueError, KeyError, TypeError) as error:
        raise DaemonUnavailable("rspamd", f"not a check reply: {error}") from None
    symbols = reply.get("symbols") if isinstance(reply.get("symbols"), dict) else {}
    return DaemonScore("rspamd", score, tuple(sorted(s for s in symbols if _SYMBOL.match(s))))


class RspamdClient:
    def __init__(self, settings: SpamDaemon) -> None:
        self.settings = settings
        target = parse_address(settings.address, unix=False)
        assert not isinstance(target, str)
        self.host, self.port = target

    def score(self, raw: bytes, context: ScanContext) -> DaemonScore:
        if len(raw) > self.settings.max_bytes:
            return DaemonScore("rspamd", 0.0, ("too_big",))
        try:
            return parse_reply(*self._check(raw, context))
        except DaemonUnavailable:
            if self.settings.fail_open:
                return DaemonScore("rspamd", 0.0, unscanned=True)
            raise

    def _check(self, raw: bytes, context: ScanContext) -> tuple[int, bytes]:
        deadline = Deadline(self.settings.timeout)
        headers = [("Content-Length", str(len(raw)))]
        for name, value in (("IP", context.client_ip), ("Helo", context.helo),
                            ("From", context.mail_from)):
            if value and _HEADER_VALUE.match(value):
                headers.append((name, value))
        headers += [("Rcpt", r) for r in context.recipients if _HEADER_VALUE.match(r)]
        connection = http.client.HTTPConnection(self.host, self.port,
                                                timeout=min(self.settings.connect_timeout, deadline.left()))
        try:
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(deadline.left())
            connection.putrequest("POST", CHECK_PATH, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(raw)
            connection.sock.settimeout(deadline.left())
            response = connection.getresponse()
            body = response.read(MAX_REPLY_BYTES + 1)
            if len(body) > MAX_REPLY_BYTES:
                raise DaemonUnavailable("rspamd", "reply too long")
            return response.status, body
        except (OSError, http.client.HTTPException) as error:
            raise DaemonUnavailable("rspamd", f"{type(error).__name__}: {error}") from None
        finally:
            connection.close()

