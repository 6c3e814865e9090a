"""LIST patterns (RFC 9051 §6.3.9): ``*`` matches anything, ``%`` anything but the
hierarchy delimiter. Matched by dynamic programming in O(len(pattern) x len(name)), never
by a regular expression built from the client's pattern: "*%*%*%*x" must not backtrack
exponentially (checklist §2.11).
"""

from __future__ import annotations

DELIMITER = "/"
MAX_PATTERN = 1024


def list_matches(reference: str, pattern: str, name: str) -> bool:
    """Whether mailbox ``name`` is listed for LIST ``reference`` ``pattern``. The reference
    is prefixed to the pattern (RFC 9051 §6.3.9 leaves the interpretation to the server;
    as Dovecot, a pattern starting with the delimiter ignores the reference). INBOX is
    case-insensitive."""
    full = pattern if (not reference or pattern.startswith(DELIMITER)) else reference + pattern
    if len(full) > MAX_PATTERN:
        return False
    if name.upper() == "INBOX" or name.upper().startswith("INBOX" + DELIMITER):
        name = "INBOX" + name[5:]
        if full[:5].upper() == "INBOX":
            full = "INBOX" + full[5:]
    return _match(full, name)


def _match(pattern: str, name: str) -> bool:
    # reachable[j]: the pattern so far can match name[:j].
    reachable = [True] + [False] * len(name)
    for symbol in pattern:
        following = [False] * (len(name) + 1)
        if symbol == "*":
            seen = False
            for j in range(len(name) + 1):
                seen = seen or reachable[j]
                following[j] = seen
        elif symbol == "%":
            # Zero or more characters, none of them the delimiter: carry a match forward
            # until a delimiter is crossed.
            following[0] = reachable[0]
            for j in range(1, len(name) + 1):
                following[j] = reachable[j] or (following[j - 1] and name[j - 1] != DELIMITER)
        else:
            for j in range(len(name)):
                if reachable[j] and name[j] == symbol:
                    following[j + 1] = True
        reachable = following
        if not any(reachable):
            return False
    return reachable[len(name)]
