"""The export archive (GDPR Art. 15 access, Art. 20 portability): one zip per person.

Mailboxes are written as mboxrd files (one per mailbox) that any mail client imports;
the account data and the processing history are JSON; README.txt says what is what.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

from domain.application.erasure import SubjectExport
from projections.audit_trail.view import AuditRow

README = """\
This archive holds the personal data a ledgermail server stores about one person
(GDPR Art. 15 right of access, Art. 20 right to data portability).

  account.json              the account: address, aliases, quota, mailboxes, legal hold
  mailboxes/*.mbox          every message in each mailbox, in mboxrd format (RFC 4155);
                            open them with Thunderbird, mutt or any mbox reader
  mailboxes/index.json      which file is which mailbox, and each message's UID,
                            flags and internal date
  processing_history.json   the record of processing: every act on this person's data
                            (receipt, read, change, export), when, by whom and through
                            which protocol, as kept in the server's audit trail.
                            The person is named by a pseudonym there, never by address.

Generated {generated} by ledgermail.
"""

_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


def mboxrd_entry(body: bytes, internal_date: str) -> bytes:
    """One message as an mboxrd entry: a From_ line, ">From " quoting, LF line ends."""
    text = body.replace(b"\r\n", b"\n")
    text = _FROM_LINE.sub(rb">\1", text)
    if not text.endswith(b"\n"):
        text += b"\n"
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", _parse_date(internal_date))
    return b"From MAILER-DAEMON " + stamp.encode() + b"\n" + text + b"\n"


def _parse_date(value: str) -> time.struct_time:
    try:
        return time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return time.gmtime(0)


def safe_file_name(mailbox_name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", mailbox_name.replace("/", ".")) or "mailbox"
    name, counter = base, 1
    while name in used:
        counter += 1
        name = f"{base}-{counter}"
    used.add(name)
    return name + ".mbox"


def write_archive(out: Path, export: SubjectExport, history: list[AuditRow]) -> dict[str, int]:
    """Write the zip atomically (temporary file, then rename); return counts."""
    temporary = out.with_name(out.name + ".partial")
    used: set[str] = set()
    index = []
    messages = 0
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        archive.writestr("README.txt", README.format(generated=generated))
        archive.writestr("account.json", json.dumps(export.account, indent=2, sort_keys=True))
        for mailbox in export.mailboxes:
            file_name = safe_file_name(mailbox.name, used)
            archive.writestr(f"mailboxes/{file_name}",
                             b"".join(mboxrd_entry(m.body, m.internal_date) for m in mailbox.messages))
            index.append({
                "mailbox": mailbox.name,
                "file": f"mailboxes/{file_name}",
                "special_use": mailbox.special_use,
                "uidvalidity": mailbox.uidvalidity,
                "messages": [{"uid": m.uid, "flags": m.flags, "internal_date": m.internal_date,
                              "size": len(m.body)} for m in mailbox.messages],
            })
            messages += len(mailbox.messages)
        archive.writestr("mailboxes/index.json", json.dumps(index, indent=2))
        archive.writestr("processing_history.json", json.dumps(
            {"subject_pseudonym": export.subject_pseudonym,
             "entries": [asdict(row.entry) for row in history]}, indent=2))
    temporary.replace(out)
    return {"mailboxes": len(export.mailboxes), "messages": messages, "history": len(history)}
