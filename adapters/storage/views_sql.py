"""SQL shared by the SQLite and PostgreSQL views: written once with ``%s`` placeholders
and a ``{p}`` table prefix, adapted per backend by a small dialect."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import PersistenceError, Tracking, WaitInterruptedError

from adapters.storage.chunking import chunks
from projections.audit_trail.view import (
    GENESIS_HASH,
    ActivityCount,
    AuditEntry,
    AuditQuery,
    AuditRow,
    chain_hash,
)
from projections.mailbox_view.view import AccountRow, MailboxRow, MessageRow, MessageState


class SqlViewBase:
    """Helpers over an eventsourcing tracking recorder's ``datastore``.

    Writes normally run in their own transaction with their tracking row. Inside
    ``batch()`` (used by the projection runner) they share one transaction and only the
    last tracking row is written: the batch is applied exactly once, or not at all.
    """

    datastore: Any
    placeholder = "%s"
    table_prefix = ""

    @property
    def _batch(self) -> threading.local:
        """This view's batch state, per thread (each runner thread has its own)."""
        state = self.__dict__.get("_batch_state")
        if state is None:
            state = self.__dict__.setdefault("_batch_state", threading.local())
        return state

    def sql(self, statement: str) -> str:
        statement = statement.replace("{p}", self.table_prefix)
        return statement.replace("%s", self.placeholder) if self.placeholder != "%s" else statement

    @contextmanager
    def write(self) -> Iterator[Any]:
        cursor = getattr(self._batch, "cursor", None)
        if cursor is not None:
            yield cursor
            return
        with self.datastore.transaction(commit=True) as cursor:
            yield cursor

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Apply several events in one transaction (the runner's unit of work)."""
        with self.datastore.transaction(commit=True) as cursor:
            self._batch.cursor, self._batch.tracking, self._batch.last_hash = cursor, None, None
            try:
                yield
                if self._batch.tracking is not None:
                    self._insert_tracking(cursor, self._batch.tracking)  # type: ignore[attr-defined]
            finally:
                self._batch.cursor = self._batch.tracking = self._batch.last_hash = None

    def _batch_cursor(self) -> Any:
        return getattr(self._batch, "cursor", None)

    def record_position(self, cursor: Any, tracking: Tracking) -> None:
        if self._batch_cursor() is cursor:
            self._batch.tracking = tracking  # written once, at the end of the batch
        else:
            self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]

    @contextmanager
    def read(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            yield cursor

    def run(self, cursor: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        cursor.execute(self.sql(statement), tuple(params))
        return cursor

    def ddl(self) -> list[str]:
        return []

    #: PostgreSQL takes a list as one array parameter (``= ANY(%s)``); psycopg spends
    #: long converting queries with hundreds of placeholders.
    array_parameters = False

    def member_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the SQL and its parameters, per dialect."""
        if self.array_parameters:
            return f"{column} = ANY(%s)", [list(values)]
        return f"{column} IN ({_placeholders(len(values))})", list(values)

    def create_view_tables(self) -> None:
        with self.write() as cursor:
            for statement in self.ddl():
                cursor.execute(self.sql(statement))
        for table, column, kind in self.added_columns:
            self._add_column(table, column, kind)

    #: Columns added after a table's first release: (table, column, type). Rows written
    #: before hold NULL there, and readers fall back.
    added_columns: tuple[tuple[str, str, str], ...] = ()

    def _add_column(self, table: str, column: str, kind: str) -> None:
        try:
            with self.read() as cursor:
                self.run(cursor, f"SELECT {column} FROM {{p}}{table} LIMIT 0")
            return
        except PersistenceError:
            pass  # a table from before the column: add it (in a transaction of its own)
        with self.write() as cursor:
            self.run(cursor, f"ALTER TABLE {{p}}{table} ADD COLUMN {column} {kind}")

    def wait(self, application_name: str, notification_id: int | None, timeout: float = 1.0,
             interrupt: threading.Event | None = None) -> None:
        """Poll from 1 ms, backing off to 20 ms (the library starts at 100 ms): a
        read-your-writes wait returns in milliseconds without flooding the database
        during a long catch-up."""
        deadline = time.monotonic() + timeout
        pause = 0.001
        while not self.has_tracking_id(application_name, notification_id):  # type: ignore[attr-defined]
            if interrupt is not None:
                if interrupt.wait(pause):
                    raise WaitInterruptedError
            else:
                time.sleep(pause)
            pause = min(pause * 1.5, 0.02)
            if time.monotonic() > deadline:
                raise TimeoutError(f"view not at position {notification_id} after {timeout}s")


def _placeholders(count: int) -> str:
    return ",".join(["%s"] * count)


class SqlMailboxView(SqlViewBase):
    def ddl(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS {p}mv_accounts(account_id TEXT PRIMARY KEY, "
            "address TEXT NOT NULL, quota_bytes BIGINT NOT NULL, created_at TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {p}mv_aliases(address TEXT PRIMARY KEY, "
            "account_id TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS mv_aliases_account ON {p}mv_aliases(account_id)",
            "CREATE TABLE IF NOT EXISTS {p}mv_mailboxes(mailbox_id TEXT PRIMARY KEY, "
            "account_id TEXT NOT NULL, name TEXT NOT NULL, special_use TEXT, "
            "uidvalidity BIGINT NOT NULL, uidnext BIGINT NOT NULL, highestmodseq BIGINT NOT NULL, "
            "subscribed INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS mv_mailboxes_account ON {p}mv_mailboxes(account_id)",
            "CREATE TABLE IF NOT EXISTS {p}mv_messages(copy_id TEXT PRIMARY KEY, "
            "mailbox_id TEXT NOT NULL, uid BIGINT NOT NULL, modseq BIGINT NOT NULL, "
            "flags TEXT NOT NULL, internal_date TEXT NOT NULL, size BIGINT NOT NULL, "
            "blob_id TEXT NOT NULL, summary TEXT NOT NULL, saved_at TEXT, UNIQUE(mailbox_id, uid))",
            "CREATE INDEX IF NOT EXISTS mv_messages_blob ON {p}mv_messages(blob_id)",
            "CREATE INDEX IF NOT EXISTS mv_messages_modseq ON {p}mv_messages(mailbox_id, modseq)",
            "CREATE TABLE IF NOT EXISTS {p}mv_vanished(mailbox_id TEXT NOT NULL, "
            "uid BIGINT NOT NULL, modseq BIGINT NOT NULL, PRIMARY KEY(mailbox_id, uid))",
            "CREATE TABLE IF NOT EXISTS {p}mv_outbound(message_id TEXT PRIMARY KEY, "
            "account_id TEXT NOT NULL, due_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS mv_outbound_due ON {p}mv_outbound(due_at)",
            "CREATE INDEX IF NOT EXISTS mv_outbound_account ON {p}mv_outbound(account_id)",
        ]

    # -- writes ---------------------------------------------------------------------------

    def _apply(self, tracking: Tracking, *statements: tuple[str, Sequence[Any]]) -> None:
        with self.write() as cursor:
            for statement, params in statements:
                self.run(cursor, statement, params)
            self.record_position(cursor, tracking)

    def track(self, tracking: Tracking) -> None:
        self._apply(tracking)

    def add_account(self, account_id: UUID, address: str, quota_bytes: int, created_at: str,
                    tracking: Tracking) -> None:
        self._apply(tracking, (
            "INSERT INTO {p}mv_accounts VALUES (%s,%s,%s,%s) ON CONFLICT (account_id) DO NOTHING",
            (str(account_id), address, quota_bytes, created_at)))

    def add_alias(self, account_id: UUID, address: str, tracking: Tracking) -> None:
        self._apply(tracking, ("INSERT INTO {p}mv_aliases VALUES (%s,%s) "
                               "ON CONFLICT (address) DO UPDATE SET account_id=excluded.account_id",
                               (address, str(account_id))))

    def remove_alias(self, account_id: UUID, address: str, tracking: Tracking) -> None:
        self._apply(tracking, ("DELETE FROM {p}mv_aliases WHERE address=%s AND account_id=%s",
                               (address, str(account_id))))

    def set_quota(self, account_id: UUID, quota_bytes: int, tracking: Tracking) -> None:
        self._apply(tracking, ("UPDATE {p}mv_accounts SET quota_bytes=%s WHERE account_id=%s",
                               (quota_bytes, str(account_id))))

    def add_mailbox(self, mailbox_id: UUID, account_id: UUID, name: str, special_use: str | None,
                    uidvalidity: int, tracking: Tracking) -> None:
        self._apply(tracking, (
            "INSERT INTO {p}mv_mailboxes VALUES (%s,%s,%s,%s,%s,1,1,1) "
            "ON CONFLICT (mailbox_id) DO NOTHING",
            (str(mailbox_id), str(account_id), name, special_use, uidvalidity)))

    def assign_uids(self, mailbox_id: UUID, count: int, modseq: int, tracking: Tracking) -> None:
        self._apply(tracking, ("UPDATE {p}mv_mailboxes SET uidnext=uidnext+%s, highestmodseq=%s "
                               "WHERE mailbox_id=%s", (count, modseq, str(mailbox_id))))

    def advance_modseq(self, mailbox_id: UUID, modseq: int, tracking: Tracking) -> None:
        self._apply(tracking, ("UPDATE {p}mv_mailboxes SET highestmodseq=%s WHERE mailbox_id=%s",
                               (modseq, str(mailbox_id))))

    def rename_mailbox(self, mailbox_id: UUID, name: str, tracking: Tracking) -> None:
        self._apply(tracking, ("UPDATE {p}mv_mailboxes SET name=%s WHERE mailbox_id=%s",
                               (name, str(mailbox_id))))

    def set_subscribed(self, mailbox_id: UUID, subscribed: bool, tracking: Tracking) -> None:
        self._apply(tracking, ("UPDATE {p}mv_mailboxes SET subscribed=%s WHERE mailbox_id=%s",
                               (int(subscribed), str(mailbox_id))))

    def delete_mailbox(self, mailbox_id: UUID, tracking: Tracking) -> None:
        self._apply(tracking, *self._purge_mailbox(str(mailbox_id)))

    @staticmethod
    def _purge_mailbox(mailbox_id: str) -> list[tuple[str, Sequence[Any]]]:
        return [
            ("DELETE FROM {p}mv_messages WHERE mailbox_id=%s", (mailbox_id,)),
            ("DELETE FROM {p}mv_vanished WHERE mailbox_id=%s", (mailbox_id,)),
            ("DELETE FROM {p}mv_mailboxes WHERE mailbox_id=%s", (mailbox_id,)),
        ]

    def add_message(self, row: MessageRow, blob_id: str, tracking: Tracking) -> None:
        # INSERT ... SELECT: nothing is written when the mailbox row is gone (erased).
        self._apply(tracking, (
            "INSERT INTO {p}mv_messages (copy_id, mailbox_id, uid, modseq, flags, internal_date, "
            "size, blob_id, summary, saved_at) SELECT %s,%s,%s,%s,%s,%s,%s,%s,%s,%s "
            "WHERE EXISTS (SELECT 1 FROM {p}mv_mailboxes WHERE mailbox_id=%s) "
            "ON CONFLICT DO NOTHING",
            (str(row.copy_id), str(row.mailbox_id), row.uid, row.modseq, " ".join(row.flags),
             row.internal_date, row.size, blob_id, json.dumps(row.summary), row.saved_at or None,
             str(row.mailbox_id))))

    def set_flags(self, copy_id: UUID, flags: list[str], modseq: int, tracking: Tracking) -> None:
        self._apply(tracking, ("UPDATE {p}mv_messages SET flags=%s, modseq=%s WHERE copy_id=%s",
                               (" ".join(flags), modseq, str(copy_id))))

    def expunge(self, copy_id: UUID, modseq: int, tracking: Tracking) -> None:
        # RFC 7162 §3.2.10 / RFC 7162 §3.2.5.2: remember the UID for VANISHED (QRESYNC).
        self._apply(tracking,
                    ("INSERT INTO {p}mv_vanished SELECT mailbox_id, uid, %s FROM {p}mv_messages "
                     "WHERE copy_id=%s ON CONFLICT DO NOTHING", (modseq, str(copy_id))),
                    ("DELETE FROM {p}mv_messages WHERE copy_id=%s", (str(copy_id),)))

    def purge_stream(self, stream_id: UUID, kind: str, tracking: Tracking) -> None:
        sid = str(stream_id)
        # The common case first: an erasure marks thousands of copies (issue 9).
        if kind == "MessageCopy":
            self._apply(tracking, ("DELETE FROM {p}mv_messages WHERE copy_id=%s", (sid,)))
            return
        owned = "SELECT mailbox_id FROM {p}mv_mailboxes WHERE account_id=%s"
        account = [
            (f"DELETE FROM {{p}}mv_messages WHERE mailbox_id IN ({owned})", (sid,)),
            (f"DELETE FROM {{p}}mv_vanished WHERE mailbox_id IN ({owned})", (sid,)),
            ("DELETE FROM {p}mv_mailboxes WHERE account_id=%s", (sid,)),
            ("DELETE FROM {p}mv_aliases WHERE account_id=%s", (sid,)),
            ("DELETE FROM {p}mv_accounts WHERE account_id=%s", (sid,)),
            ("DELETE FROM {p}mv_outbound WHERE account_id=%s", (sid,)),
        ]
        copy = [("DELETE FROM {p}mv_messages WHERE copy_id=%s", (sid,))]
        queued = [("DELETE FROM {p}mv_outbound WHERE message_id=%s", (sid,))]
        by_kind = {"Account": account, "Mailbox": self._purge_mailbox(sid), "MessageCopy": copy,
                   "OutboundMessage": queued}
        # An unknown kind purges every way the id could appear.
        statements = by_kind.get(kind, account + self._purge_mailbox(sid) + copy + queued)
        self._apply(tracking, *statements)

    def queue_message(self, message_id: UUID, account_id: UUID, due_at: str, tracking: Tracking) -> None:
        self._apply(tracking, ("INSERT INTO {p}mv_outbound VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                               (str(message_id), str(account_id), due_at)))

    def reschedule(self, message_id: UUID, due_at: str, tracking: Tracking) -> None:
        self._apply(tracking, ("UPDATE {p}mv_outbound SET due_at=%s WHERE message_id=%s",
                               (due_at, str(message_id))))

    def dequeue(self, message_id: UUID, tracking: Tracking) -> None:
        self._apply(tracking, ("DELETE FROM {p}mv_outbound WHERE message_id=%s", (str(message_id),)))

    # -- reads ----------------------------------------------------------------------------

    def due_outbound(self, now: str, limit: int) -> list[UUID]:
        with self.read() as cursor:
            rows = self.run(cursor, "SELECT message_id FROM {p}mv_outbound WHERE due_at<=%s "
                            "ORDER BY due_at LIMIT %s", (now, limit)).fetchall()
        return [UUID(r["message_id"]) for r in rows]

    def queue_size(self) -> int:
        with self.read() as cursor:
            return int(self.run(cursor, "SELECT count(*) AS n FROM {p}mv_outbound").fetchone()["n"])

    def accounts(self) -> list[AccountRow]:
        with self.read() as cursor:
            rows = self.run(cursor, "SELECT * FROM {p}mv_accounts ORDER BY address").fetchall()
            aliases = self.run(cursor, "SELECT * FROM {p}mv_aliases ORDER BY address").fetchall()
        by_account: dict[str, list[str]] = {}
        for alias in aliases:
            by_account.setdefault(alias["account_id"], []).append(alias["address"])
        return [AccountRow(UUID(r["account_id"]), r["address"], by_account.get(r["account_id"], []),
                           int(r["quota_bytes"]), r["created_at"]) for r in rows]

    def mailboxes(self, account_id: UUID) -> list[MailboxRow]:
        with self.read() as cursor:
            rows = self.run(cursor,
                            "SELECT b.*, (SELECT count(*) FROM {p}mv_messages m "
                            "WHERE m.mailbox_id=b.mailbox_id) AS messages FROM {p}mv_mailboxes b "
                            "WHERE account_id=%s ORDER BY name", (str(account_id),)).fetchall()
        return [MailboxRow(UUID(r["mailbox_id"]), UUID(r["account_id"]), r["name"], r["special_use"],
                           int(r["uidvalidity"]), int(r["uidnext"]), int(r["highestmodseq"]),
                           bool(r["subscribed"]), int(r["messages"])) for r in rows]

    def mailbox(self, mailbox_id: UUID) -> MailboxRow | None:
        with self.read() as cursor:
            r = self.run(cursor,
                         "SELECT b.*, (SELECT count(*) FROM {p}mv_messages m "
                         "WHERE m.mailbox_id=b.mailbox_id) AS messages FROM {p}mv_mailboxes b "
                         "WHERE mailbox_id=%s", (str(mailbox_id),)).fetchone()
        if r is None:
            return None
        return MailboxRow(UUID(r["mailbox_id"]), UUID(r["account_id"]), r["name"], r["special_use"],
                          int(r["uidvalidity"]), int(r["uidnext"]), int(r["highestmodseq"]),
                          bool(r["subscribed"]), int(r["messages"]))

    def message_sizes(self, mailbox_id: UUID) -> list[tuple[int, int]]:
        with self.read() as cursor:
            rows = self.run(cursor, "SELECT uid, size FROM {p}mv_messages WHERE mailbox_id=%s ORDER BY uid",
                            (str(mailbox_id),)).fetchall()
        return [(int(r["uid"]), int(r["size"])) for r in rows]

    def message_dates(self, mailbox_id: UUID) -> list[tuple[int, str]]:
        with self.read() as cursor:
            rows = self.run(cursor, "SELECT uid, internal_date FROM {p}mv_messages WHERE mailbox_id=%s "
                            "ORDER BY uid", (str(mailbox_id),)).fetchall()
        return [(int(r["uid"]), r["internal_date"]) for r in rows]

    def message_states(self, mailbox_id: UUID, after_uid: int, since_modseq: int) -> list[MessageState]:
        mid = str(mailbox_id)
        with self.read() as cursor:
            rows = self.run(cursor,
                            "SELECT uid, modseq, flags, 0 AS gone FROM {p}mv_messages "
                            "WHERE mailbox_id=%s AND (uid>%s OR modseq>%s) "
                            "UNION ALL SELECT uid, modseq, '' AS flags, 1 AS gone FROM {p}mv_vanished "
                            "WHERE mailbox_id=%s AND modseq>%s AND uid<=%s",
                            (mid, after_uid, since_modseq, mid, since_modseq, after_uid)).fetchall()
        out = [MessageState(int(r["uid"]), int(r["modseq"]),
                            None if int(r["gone"]) else (r["flags"].split() if r["flags"] else []))
               for r in rows]
        out.sort(key=lambda state: state.uid)
        return out

    def messages(self, mailbox_id: UUID, uids: list[int] | None = None) -> list[MessageRow]:
        statement = "SELECT * FROM {p}mv_messages WHERE mailbox_id=%s"
        params: list[Any] = [str(mailbox_id)]
        rows: list[Any] = []
        with self.read() as cursor:
            if uids is None:
                rows = self.run(cursor, statement + " ORDER BY uid", params).fetchall()
            else:
                for chunk in chunks(uids):
                    condition, values = self.member_of("uid", chunk)
                    rows += self.run(cursor, f"{statement} AND {condition}", params + values).fetchall()
                rows.sort(key=lambda r: int(r["uid"]))
        return [MessageRow(UUID(r["copy_id"]), UUID(r["mailbox_id"]), int(r["uid"]), int(r["modseq"]),
                           r["flags"].split() if r["flags"] else [], r["internal_date"], int(r["size"]),
                           json.loads(r["summary"]), r["blob_id"], r["saved_at"] or "") for r in rows]

    def storage_of(self, account_id: UUID) -> tuple[int, int] | None:
        with self.read() as cursor:
            row = self.run(cursor, "SELECT a.quota_bytes AS quota, (SELECT COALESCE(SUM(m.size), 0) "
                           "FROM {p}mv_messages m JOIN {p}mv_mailboxes b ON b.mailbox_id=m.mailbox_id "
                           "WHERE b.account_id=a.account_id) AS used FROM {p}mv_accounts a "
                           "WHERE a.account_id=%s", (str(account_id),)).fetchone()
        return None if row is None else (int(row["used"]), int(row["quota"]))

    def mailbox_marks(self, mailbox_ids: list[UUID]) -> dict[UUID, int]:
        found: dict[UUID, int] = {}
        with self.read() as cursor:
            for chunk in chunks([str(m) for m in mailbox_ids]):
                condition, params = self.member_of("mailbox_id", chunk)
                rows = self.run(cursor, f"SELECT mailbox_id, highestmodseq FROM {{p}}mv_mailboxes "
                                f"WHERE {condition}", params).fetchall()
                found.update((UUID(r["mailbox_id"]), int(r["highestmodseq"])) for r in rows)
        return found

    def vanished_since(self, mailbox_id: UUID, modseq: int) -> list[int]:
        with self.read() as cursor:
            rows = self.run(cursor, "SELECT uid FROM {p}mv_vanished WHERE mailbox_id=%s AND modseq>%s "
                            "ORDER BY uid", (str(mailbox_id), modseq)).fetchall()
        return [int(r["uid"]) for r in rows]

    def rows_for_streams(self, stream_ids: list[str]) -> int:
        checks = [("mv_accounts", ("account_id",)), ("mv_aliases", ("account_id",)),
                  ("mv_mailboxes", ("mailbox_id", "account_id")),
                  ("mv_messages", ("copy_id", "mailbox_id")), ("mv_vanished", ("mailbox_id",)),
                  ("mv_outbound", ("message_id", "account_id"))]
        total = 0
        with self.read() as cursor:
            for chunk in chunks(stream_ids):
                for table, columns in checks:
                    conditions, params = [], []
                    for column in columns:
                        condition, values = self.member_of(column, chunk)
                        conditions.append(condition)
                        params += values
                    statement = f"SELECT count(*) AS n FROM {{p}}{table} WHERE {' OR '.join(conditions)}"
                    total += int(self.run(cursor, statement, params).fetchone()["n"])
        return total

    def referenced_blobs(self, blob_ids: list[str]) -> set[str]:
        found: set[str] = set()
        with self.read() as cursor:
            for chunk in chunks(blob_ids):
                condition, params = self.member_of("blob_id", chunk)
                rows = self.run(cursor, f"SELECT DISTINCT blob_id FROM {{p}}mv_messages WHERE {condition}",
                                params).fetchall()
                found.update(r["blob_id"] for r in rows)
        return found

    def blobs_of_copies(self, copy_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self.read() as cursor:
            for chunk in chunks(copy_ids):
                condition, params = self.member_of("copy_id", chunk)
                rows = self.run(cursor, f"SELECT copy_id, blob_id FROM {{p}}mv_messages WHERE {condition}",
                                params).fetchall()
                found.update((r["copy_id"], r["blob_id"]) for r in rows)
        return found

    view_tables = ("mv_accounts", "mv_aliases", "mv_mailboxes", "mv_messages", "mv_vanished", "mv_outbound")
    added_columns = (("mv_messages", "saved_at", "TEXT"),)


class SqlAuditTrail(SqlViewBase):
    def ddl(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS {p}audit_entries(position BIGINT PRIMARY KEY, at TEXT NOT NULL, "
            "event_type TEXT NOT NULL, stream_id TEXT NOT NULL, subject TEXT, actor TEXT NOT NULL, "
            "protocol TEXT NOT NULL, session TEXT NOT NULL, purpose TEXT NOT NULL, "
            "prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS audit_entries_subject ON {p}audit_entries(subject)",
        ]

    def append(self, entry: AuditEntry, tracking: Tracking) -> None:
        with self.write() as cursor:
            # Within a batch the previous hash is the one this batch wrote last.
            prev = getattr(self._batch, "last_hash", None) if self._batch_cursor() is cursor else None
            if prev is None:
                last = self.run(cursor, "SELECT hash FROM {p}audit_entries ORDER BY position DESC LIMIT 1"
                                ).fetchone()
                prev = last["hash"] if last else GENESIS_HASH
            digest = chain_hash(prev, entry)
            self.run(cursor, "INSERT INTO {p}audit_entries VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                     (entry.position, entry.at, entry.event_type, entry.stream_id, entry.subject,
                      entry.actor, entry.protocol, entry.session, entry.purpose, prev, digest))
            if self._batch_cursor() is cursor:
                self._batch.last_hash = digest
            self.record_position(cursor, tracking)

    def rows(self, subject: str | None = None) -> list[AuditRow]:
        statement = "SELECT * FROM {p}audit_entries"
        params: tuple[Any, ...] = ()
        if subject is not None:
            statement += " WHERE subject=%s"
            params = (subject,)
        with self.read() as cursor:
            rows = self.run(cursor, statement + " ORDER BY position", params).fetchall()
        return [AuditRow(AuditEntry(int(r["position"]), r["at"], r["event_type"], r["stream_id"],
                                    r["subject"], r["actor"], r["protocol"], r["session"], r["purpose"]),
                         r["prev_hash"], r["hash"]) for r in rows]

    def query(self, criteria: AuditQuery) -> list[AuditEntry]:
        conditions, params = ["position > %s"], [criteria.after_position]
        for column, operator, value in (("subject", "=", criteria.subject),
                                        ("at", ">=", criteria.since), ("at", "<=", criteria.until),
                                        ("event_type", "=", criteria.event_type),
                                        ("actor", "=", criteria.actor),
                                        ("position", "<", criteria.before_position)):
            if value is not None:
                conditions.append(f"{column} {operator} %s")
                params.append(value)
        statement = (f"SELECT * FROM {{p}}audit_entries WHERE {' AND '.join(conditions)} "
                     f"ORDER BY position {'DESC' if criteria.newest_first else 'ASC'} LIMIT %s")
        with self.read() as cursor:
            rows = self.run(cursor, statement, (*params, criteria.limit)).fetchall()
        return [AuditEntry(int(r["position"]), r["at"], r["event_type"], r["stream_id"], r["subject"],
                           r["actor"], r["protocol"], r["session"], r["purpose"]) for r in rows]

    def activity(self) -> list[ActivityCount]:
        with self.read() as cursor:
            rows = self.run(cursor, "SELECT event_type, purpose, COUNT(*) AS n, MIN(at) AS first_at, "
                                    "MAX(at) AS last_at FROM {p}audit_entries "
                                    "GROUP BY event_type, purpose ORDER BY event_type, purpose").fetchall()
        return [ActivityCount(r["event_type"], r["purpose"], int(r["n"]), r["first_at"], r["last_at"])
                for r in rows]
