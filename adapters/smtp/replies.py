"""Every reply the SMTP listeners send, named, with its RFC 3463 enhanced status code.

RFC 2034 §3: with ENHANCEDSTATUSCODES every reply but the greeting, the EHLO/HELO
replies and 354 carries ``class.subject.detail``. Replies aiosmtpd composes itself get a
code added by ``with_enhanced_code`` on the way out.
"""

from __future__ import annotations

import re

OK = "250 2.0.0 OK"
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
RECIPIENT_QUEUED = "250 2.1.5 Recipient OK (will be relayed)"
BYE = "221 2.0.0 Bye"
AUTH_OK = "235 2.7.0 Authentication successful"
HELP = "214 2.0.0 See RFC 5321"

# 4xx: the client should try again later.
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address, try again later"
SERVER_BUSY = "421 4.3.2 Too many connections, try again later"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"
TOO_MANY_COMMANDS = "421 4.7.0 Too many commands, closing connection"
SESSION_TOO_LONG = "421 4.4.2 Session time limit exceeded, closing connection"
DATA_TOO_SLOW = "421 4.4.2 Data transfer too slow, closing connection"
IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
LOCAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"
SCAN_TEMPFAIL = "451 4.7.1 Message could not be checked, try again later"
#: RFC 5321 §4.2.5 451 (the client keeps the message and retries) with RFC 3463 §3.8
#: X.7.1, "delivery not authorized": the account sent its ``outbound.max_messages_per_hour``.
RATE_LIMITED = "451 4.7.1 Sending rate limit exceeded, try again later"
#: RFC 6647 §2.1, §4: a new (network, sender, recipient) triplet on the MX listener is
#: refused for now at RCPT; RFC 3463 §3.8 X.7.1, "delivery not authorized" (as postgrey).
GREYLISTED = "451 4.7.1 Greylisted, please try again later"
#: RFC 7208 §8.6 (and RFC 7489 §6.6.3): a sender-authentication lookup failed for now.
AUTH_DNS_TEMPFAIL = "451 4.4.3 Sender authentication lookup failed, try again later"
NO_STORAGE = "452 4.3.1 Insufficient system storage"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
#: RFC 3463 X.2.2; temporary, so the sender's queue retries once the owner makes room.
MAILBOX_FULL = "452 4.2.2 Mailbox full, try again later"
AUTH_LOCKED = "454 4.7.0 Too many failed authentications, try again later"
AUTH_TEMPFAIL = "454 4.7.0 Temporary authentication failure"

# 5xx: permanent.
SYNTAX_ERROR = "500 5.5.2 Syntax error"
LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 §4.5.3.1.6)"
COMMAND_UNKNOWN = "500 5.5.1 Command not recognized"
HELO_SYNTAX = "501 5.5.4 Syntax: HELO hostname"
EHLO_SYNTAX = "501 5.5.4 Syntax: EHLO hostname"
DATA_SYNTAX = "501 5.5.4 Syntax: DATA"
AUTH_SYNTAX = "501 5.5.4 Syntax: AUTH mechanism [initial-response]"
MAIL_SYNTAX = "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
BAD_PARAMETER = "501 5.5.4 Invalid parameter value"
AUTH_BAD_BASE64 = "501 5.5.2 Cannot decode response"
AUTH_ABORTED = "501 5.7.0 Authentication aborted"
VRFY_DISABLED = "502 5.5.1 VRFY command is disabled"
EXPN_DISABLED = "502 5.5.1 EXPN command is disabled"
NEED_MAIL = "503 5.5.1 Need MAIL command first"
NEED_RCPT = "503 5.5.1 Need RCPT command first"
NESTED_MAIL = "503 5.5.1 Nested MAIL command"
AUTH_IN_TRANSACTION = "503 5.5.1 AUTH not permitted during a mail transaction"
ALREADY_AUTHENTICATED = "503 5.5.1 Already authenticated"
NEED_EHLO = "503 5.5.1 Send EHLO first"
AUTH_NOT_HERE = "503 5.5.1 AUTH not available on this port"
AUTH_UNKNOWN_MECHANISM = "504 5.5.4 Unrecognized authentication mechanism"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
UNKNOWN_USER = "550 5.1.1 Recipient address rejected: user unknown"
RELAY_DENIED = "550 5.7.1 Relaying denied"
ROUTING_DENIED = "550 5.7.1 Relaying denied: sender-specified routing is not accepted"
CONTENT_REJECTED = "550 5.7.1 Message content rejected"
SPAM_REJECTED = "550 5.7.1 Message rejected as spam"
#: RFC 7489 §10.3: the From: domain asked for mail failing DMARC to be rejected.
DMARC_REJECTED = "550 5.7.1 Message rejected by the DMARC policy of the From: domain"
BARE_LINE_END = "550 5.6.11 Message refused: bare CR or LF before a dot line (RFC 5321 §2.3.8)"
NUL_IN_MESSAGE = "550 5.6.0 Message refused: NUL characters are not allowed"
BAD_PURPOSE = "554 5.6.0 X-Ledgermail-Purpose must be one purpose token (letters, digits, . _ -)"
TOO_BIG_DECLARED = "552 5.3.4 Message size exceeds fixed maximum message size"
TOO_BIG = "552 5.3.4 Message too big for system"
SENDER_NOT_OWNED = "553 5.7.1 Sender address not owned by the authenticated user"
FROM_NOT_OWNED = "553 5.7.1 From: header address not owned by the authenticated user"
NULL_SENDER_REFUSED = "553 5.7.1 The null sender is not accepted on submission"
UTF8_ADDRESS_WITHOUT_SMTPUTF8 = "553 5.6.7 Non-ASCII address without SMTPUTF8"
ADDRESS_LITERAL_REFUSED = "553 5.1.2 Address literals are not accepted"
TRANSACTION_FAILED = "554 5.0.0 Transaction failed"
#: RFC 3463 §3.8 X.7.0: refused for security reasons; clamd found a virus (issue 8).
VIRUS_REJECTED = "554 5.7.0 Message rejected: a virus was found"
#: The scan of an archive exceeded clamd's limits (a zip bomb): treated as a virus.
SCAN_LIMITS_REJECTED = "554 5.7.0 Message rejected: it exceeds the virus scanner's limits"
TLS_ALREADY_ACTIVE = "554 5.5.1 TLS already active"  # Postfix's wording
PARAMETERS_UNKNOWN = "555 5.5.4 Parameter not recognized or not implemented"

_HAS_ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
#: RFC 3463 §3 codes for replies aiosmtpd words itself, chosen by basic code.
_BY_CODE = {
    "220": "2.0.0", "221": "2.0.0", "235": "2.7.0", "250": "2.0.0", "252": "2.0.0",
    "421": "4.4.2", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4",
    "553": "5.1.3", "554": "5.0.0", "555": "5.5.4",
}


def with_enhanced_code(reply: str) -> str:
    """Insert the enhanced status code into a single-line reply that lacks one."""
    if len(reply) < 4 or reply[3] != " " or _HAS_ENHANCED.match(reply):
        return reply
    code = reply[:3]
    enhanced = _BY_CODE.get(code)
    if enhanced is None:
        return reply
    text = reply[4:]
    # aiosmtpd prefixes "Error: "; ours never do.
    text = text.removeprefix("Error: ")
    return f"{code} {enhanced} {text}"


def queued(queue_id: str) -> str:
    """The 250 after DATA: sent only once the message is committed."""
    return f"250 2.0.0 Message accepted as {queue_id}"


def is_error(reply: str) -> bool:
    return reply[:1] in ("4", "5")
