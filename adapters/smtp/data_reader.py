"""The DATA phase (RFC 5321 §4.1.1.4) as a sans-I/O reader: feed it chunks, it finds the
end, bounds memory and decides whether the message is acceptable.

Chunks rather than lines: the work per message is a few passes of C-level byte
operations instead of Python work per line, which matters on the server's one event
loop. The rules are the same as line by line: only CRLF ends a line (§2.3.8), so only
CRLF "." CRLF ends the data; lines are at most 1000 octets with the CRLF (§4.5.3.1.6);
a dot line framed by a bare CR or LF (SMTP smuggling), and NUL, refuse the message;
the dot-stuffing is removed (§4.5.2). Refusals are decided after the end, so the session
stays in step with the client.
"""

from __future__ import annotations

import re

END = b"\r\n.\r\n"
#: RFC 5321 §4.5.3.1.6: 1000 octets including CRLF.
MAX_LINE = 998
#: A dot with a bare CR or LF on either side, i.e. a "dot line" that another MTA could
#: take for the end of DATA. No conforming sender emits it (a real dot line is sent as
#: ".."), and CRLF "." CRLF cannot occur inside the data (it is the end).
_SMUGGLED_END = re.compile(rb"(?:\A|\r|\n)\.(?:\r|\n)")


class DataReader:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        # The CRLF that ended the DATA command line: so an empty message (".") is found
        # like any other end, however the client splits its packets.
        self._buffer = bytearray(b"\r\n")
        self._scanned = 0
        self.size = 0
        self.too_big = False
        self.done = False
        #: Bytes after the end: the client's next commands (PIPELINING).
        self.leftover = b""

    def feed(self, chunk: bytes) -> bool:
        """Take more bytes; True once the end of data was seen."""
        buffer = self._buffer
        buffer += chunk
        at = buffer.find(END, max(self._scanned - 4, 0))
        if at != -1:
            self.leftover = bytes(buffer[at + 5:])
            self.size += len(chunk) - len(self.leftover) - 3
            del buffer[at + 2:]
            del buffer[:2]
            self.done = True
            return True
        self.size += len(chunk)
        self._scanned = len(buffer)
        if self.size > self.limit:
            # Too big: keep only what could be the start of the end marker.
            self.too_big = True
            del buffer[:-4]
            self._scanned = len(buffer)
        return False

    def result(self) -> tuple[str | None, bytes]:
        """(None, the unstuffed message) or (the reason to refuse, b"")."""
        if self.too_big or len(self._buffer) > self.limit:
            return "too big", b""
        data = bytes(self._buffer)
        self._buffer = bytearray()
        if len(data) > MAX_LINE and max(map(len, data.split(b"\r\n"))) > MAX_LINE:
            return "line too long", b""
        # The pattern needs a dot after a CR or LF (or at the start): rare, so look for
        # that first and run the expression only then.
        if (data[:1] == b"." or b"\n." in data or b"\r." in data) and _SMUGGLED_END.search(data):
            return "bare line end", b""
        if b"\x00" in data:
            return "nul", b""
        # RFC 5321 §4.5.2: a line starting with "." loses that first ".".
        data = data.replace(b"\r\n.", b"\r\n")
        return None, data[1:] if data.startswith(b".") else data
