"""The "Spam and Junk" page's listing (issue 8): the newest messages of the person's
\\Junk mailbox and INBOX, read from the mailbox view, ready for the template.

The page exists so a person without a mail program that files mail (webmail-less
setups, phones that hide Junk) can still teach their own spam filter. The buttons do
not train anything themselves: they move the message through ``copy_messages``, the
use case IMAP MOVE calls, whose hook trains the filter (``spam_learning``) — one path,
so the portal and IMAP can never disagree about what a move means.

Only the envelope summary the view already caches is shown (date, sender, subject);
no body is opened, so listing costs no blob reads and needs no ``MessagesAccessed``
record — the route records the page itself in the access ledger instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from uuid import UUID

from projections.mailbox_view.view import MailboxRow, MailboxViewInterface

#: Messages listed per mailbox, newest first: enough to find the one that was misfiled,
#: few enough that the page stays light however large the mailbox is.
LISTED = 50
#: Longest sender or subject shown: a hostile header must not make a huge page.
MAX_SHOWN = 200
#: The special-use attribute that marks the person's Junk mailbox (RFC 6154 §2).
JUNK_USE = "\\Junk"
#: A form's UID: an RFC 9051 nz-number (1 to 2**32 - 1), ASCII digits only.
_UID = re.compile(r"[0-9]{1,10}\Z")


@dataclass(frozen=True)
class ListedMessage:
    uid: int
    date: str
    sender: str
    subject: str


@dataclass(frozen=True)
class ListedMailbox:
    mailbox_id: UUID
    name: str
    #: Messages in the mailbox, of which ``messages`` are the newest.
    total: int
    messages: list[ListedMessage]


def person_mailboxes(view: MailboxViewInterface,
                     account_id: UUID) -> tuple[MailboxRow | None, MailboxRow | None]:
    """The account's INBOX and its \\Junk mailbox (the first by name, as delivery picks
    it), either None when the view has none. The forms' mailbox ids are checked against
    these two only: a posted id is never trusted to be the person's."""
    rows = sorted(view.mailboxes(account_id), key=lambda row: row.name)
    inbox = next((row for row in rows if row.name == "INBOX"), None)
    junk = next((row for row in rows if row.special_use == JUNK_USE), None)
    return inbox, junk


def newest(view: MailboxViewInterface, row: MailboxRow, limit: int = LISTED) -> ListedMailbox:
    """The newest ``limit`` messages of ``row`` (highest UIDs first). The UIDs come from
    the cheap size listing, so only the listed rows' summaries are read."""
    uids = [uid for uid, _size in view.message_sizes(row.mailbox_id)]
    wanted = uids[-limit:] if limit > 0 else []
    rows = sorted(view.messages(row.mailbox_id, wanted), key=lambda message: message.uid, reverse=True)
    listed = [ListedMessage(uid=message.uid,
                            date=readable(message.summary.get("date")) or message.internal_date,
                            sender=readable(message.summary.get("from")),
                            subject=readable(message.summary.get("subject")))
              for message in rows]
    return ListedMailbox(mailbox_id=row.mailbox_id, name=row.name, total=len(uids), messages=listed)


def readable(value: object) -> str:
    """A header value as a person reads it: RFC 2047 encoded words decoded (a broken one
    is shown as sent rather than failing the page), whitespace folded, bounded. The
    template escapes the result, so a header cannot inject markup."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        text = str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        text = value
    text = " ".join(text.split())
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1] + "…"


def parse_uid(value: str) -> int | None:
    """A posted UID, or None when it is not one (a form is never trusted)."""
    if not _UID.match(value):
        return None
    number = int(value)
    return number if 0 < number < 2**32 else None


def parse_mailbox_id(value: str) -> UUID | None:
    """A posted mailbox id, or None when it is not a UUID."""
    if len(value) > 64:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None
