"""Fail-closed encryption: wrong master key, tampered rows, restore mismatches."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from adapters.bootstrap import build, verify_event_log
from adapters.config import Settings
from adapters.crypto.errors import MasterKeyMismatch, TamperedEventError, UnknownKeyError
from adapters.crypto.master_key import MasterKeyError, load_or_create_master_key
from domain.application.context import acting
from domain.model.errors import SubjectErased
from tests.conftest import PG_DSN

PASSWORD = "correct horse battery"


def populate(settings: Settings) -> None:
    container = build(settings)
    try:
        with acting("admin:test"):
            container.app.add_domain("example.test")
            container.app.create_account("alice@example.test", PASSWORD)
            container.app.deliver(["alice@example.test"], b"Subject: hi\r\n\r\nbody\r\n")
            container.catch_up()
    finally:
        container.close()


def execute(settings: Settings, sqlite_file: str, sql: str, pg_schema: str | None = None) -> Any:
    """Run one statement behind the server's back, on the right backend."""
    if settings.is_postgres:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{pg_schema or settings.store.schema_name}"')
            return conn.execute(sql).rowcount
    with sqlite3.connect(settings.data_dir / sqlite_file) as conn:
        return conn.execute(sql).rowcount


EVENTS_TABLE = {"sqlite": "stored_events", "postgres": "ledgermail_events"}


def test_the_master_key_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    key = load_or_create_master_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_master_key(path) == key


def test_a_world_readable_master_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    load_or_create_master_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError, match="readable by others"):
        load_or_create_master_key(path)


def test_a_wrong_master_key_is_refused_loudly(settings: Settings) -> None:
    populate(settings)
    wrong = settings.model_copy(update={"master_key": base64.b64encode(os.urandom(32)).decode()})
    with pytest.raises(MasterKeyMismatch, match="master key does not open the key store"):
        build(wrong)


def test_a_changed_event_row_fails_authentication(settings: Settings, backend: str) -> None:
    populate(settings)
    table = EVENTS_TABLE[backend]
    if backend == "postgres":
        # Flip every bit of byte 40 (set_byte/get_byte are 0-based), so it always changes.
        sql = (f"UPDATE {table} SET state = set_byte(state, 39, 255 - get_byte(state, 39)) "
               f"WHERE originator_version = 1 AND topic LIKE '%Account.Created'")
    else:
        sql = (f"UPDATE {table} SET state = CAST(substr(state, 1, 39) || CASE WHEN substr(state, 40, 1) "
               f"= x'ff' THEN x'00' ELSE x'ff' END || substr(state, 41) AS BLOB) "
               f"WHERE originator_version = 1 AND topic LIKE '%Account.Created'")
    assert execute(settings, "events.sqlite", sql) == 1
    container = build(settings, run_projections=False)
    try:
        with pytest.raises(TamperedEventError, match="failed authentication"):
            verify_event_log(container)
    finally:
        container.close()


def test_an_event_moved_to_another_row_fails_authentication(settings: Settings, backend: str) -> None:
    populate(settings)
    table = EVENTS_TABLE[backend]
    # Copy the INBOX creation of one mailbox over another mailbox's creation: same key,
    # valid ciphertext, wrong row. The AAD binds it to its original row.
    sql = (f"UPDATE {table} SET state = (SELECT state FROM {table} WHERE topic LIKE '%Mailbox.Created' "
           f"ORDER BY originator_id LIMIT 1) WHERE originator_id = (SELECT originator_id FROM {table} "
           f"WHERE topic LIKE '%Mailbox.Created' ORDER BY originator_id DESC LIMIT 1) "
           f"AND originator_version = 1")
    assert execute(settings, "events.sqlite", sql) == 1
    container = build(settings, run_projections=False)
    try:
        with pytest.raises(TamperedEventError):
            verify_event_log(container)
    finally:
        container.close()


def test_a_key_store_older_than_the_log_is_a_restore_mismatch_not_an_erasure(settings: Settings) -> None:
    populate(settings)
    removed = execute(settings, "keys.sqlite", "DELETE FROM subject_keys",
                      pg_schema=f"{settings.store.schema_name}_keys")
    assert removed == 1
    container = build(settings, run_projections=False)
    try:
        with pytest.raises(UnknownKeyError, match="restore mismatch"):
            verify_event_log(container)
        account_id = container.app.account_id_for("alice@example.test")
        with pytest.raises(UnknownKeyError):
            container.app.repository.get(account_id)
    finally:
        container.close()


def snapshot_keys(settings: Settings, backend: str) -> Any:
    if backend == "postgres":
        with psycopg.connect(PG_DSN) as conn:
            return conn.execute(f'SELECT * FROM "{settings.store.schema_name}_keys".subject_keys').fetchall()
    backup = sqlite3.connect(":memory:")
    with sqlite3.connect(settings.data_dir / "keys.sqlite") as source:
        source.backup(backup)
    return backup


def restore_keys(settings: Settings, backend: str, backup: Any) -> None:
    if backend == "postgres":
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            table = f'"{settings.store.schema_name}_keys".subject_keys'
            conn.execute(f"DELETE FROM {table}")
            for row in backup:
                conn.execute(f"INSERT INTO {table} VALUES (%s,%s,%s,%s,%s,%s)", row)
        return
    with sqlite3.connect(settings.data_dir / "keys.sqlite") as target:
        backup.backup(target)


def test_a_restored_key_store_is_shredded_again_on_start(settings: Settings, backend: str) -> None:
    populate(settings)
    backup = snapshot_keys(settings, backend)  # a backup taken while alice existed
    container = build(settings)
    try:
        with acting("admin:test"):
            receipt = container.app.erase_subject("alice@example.test", "request")
    finally:
        container.close()
    restore_keys(settings, backend, backup)  # ... comes back after her erasure

    container = build(settings, run_projections=False)
    try:
        assert container.keystore.shredded_key_ids(receipt["erasure_id"]) == receipt["destroyed_key_ids"]
        request = container.app.repository.get(UUID(receipt["erasure_id"]))
        with pytest.raises(SubjectErased):
            container.app.repository.get(request.account_id)
        assert verify_event_log(container) > 0
    finally:
        container.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_key_store_reconnects_after_postgresql_drops_its_connection(settings: Settings) -> None:
    populate(settings)
    container = build(settings, run_projections=False)
    try:
        pid = container.keystore._conn.info.backend_pid  # noqa: SLF001 - the connection under test
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        with acting("admin:test"):
            bob = container.app.create_account("bob@example.test", PASSWORD)  # a new key row
        assert container.app.authenticate("bob@example.test", PASSWORD) == bob
        assert container.keystore._conn.info.backend_pid != pid  # noqa: SLF001
    finally:
        container.close()
