"""The CAPABILITY list (RFC 9051 §7.2.2), in one place, so the greeting, CAPABILITY,
the post-login OK and docs/rfc.md (checked by a test) never disagree.

Each extension is listed only because it works: tests drive every one of them.
"""

from __future__ import annotations

#: Extensions offered in every state (RFC number in the comment).
EXTENSIONS = (
    "SASL-IR",          # RFC 4959
    "LITERAL+",         # RFC 7888 (LITERAL- semantics are accepted as well)
    "ID",               # RFC 2971
    "ENABLE",           # RFC 5161
    "IDLE",             # RFC 2177
    "NAMESPACE",        # RFC 2342
    "UIDPLUS",          # RFC 4315
    "MOVE",             # RFC 6851
    "UNSELECT",         # RFC 3691
    "CHILDREN",         # RFC 3348
    "LIST-EXTENDED",    # RFC 5258
    "LIST-STATUS",      # RFC 5819
    "SPECIAL-USE",      # RFC 6154
    "CREATE-SPECIAL-USE",  # RFC 6154
    "CONDSTORE",        # RFC 7162
    "QRESYNC",          # RFC 7162
    "ESEARCH",          # RFC 4731
    "SEARCHRES",        # RFC 5182
    "SORT",             # RFC 5256
    "SORT=DISPLAY",     # RFC 5957
    "THREAD=REFERENCES",  # RFC 5256
    "THREAD=ORDEREDSUBJECT",  # RFC 5256
    "ESORT",            # RFC 5267
    "WITHIN",           # RFC 5032
    "BINARY",           # RFC 3516
    "MULTIAPPEND",      # RFC 3502
    "STATUS=SIZE",      # RFC 8438
    "OBJECTID",         # RFC 8474
    "SAVEDATE",         # RFC 8514
    "PREVIEW",          # RFC 8970
    "QUOTA",            # RFC 9208
    "QUOTA=RES-STORAGE",  # RFC 9208
    "UTF8=ACCEPT",      # RFC 6855
    "COMPRESS=DEFLATE",  # RFC 4978
    "UNAUTHENTICATE",   # RFC 8437
)

#: RFC 9051 §6.3.1: what ENABLE can turn on.
ENABLEABLE = ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2")


def capabilities(*, authenticated: bool, secure: bool, can_starttls: bool,
                 append_limit: int, compressed: bool) -> list[str]:
    """The capability list for a connection in its current state."""
    caps = ["IMAP4rev1", "IMAP4rev2"]
    if not authenticated:
        if can_starttls:
            caps.append("STARTTLS")
        # RFC 9051 §6.2.3 / DESIGN §5: no password over an insecure connection
        # (loopback counts as secure, as in Dovecot).
        caps.append("AUTH=PLAIN" if secure else "LOGINDISABLED")
    caps += [c for c in EXTENSIONS if not (compressed and c.startswith("COMPRESS="))]
    caps.append(f"APPENDLIMIT={append_limit}")  # RFC 7889
    return caps
