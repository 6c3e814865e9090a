"""Byte-level scans of everything a store keeps: files under the data dir and, for
PostgreSQL, every row of every table in the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from adapters.config import Settings
from tests.conftest import PG_DSN


def files_containing(root: Path, needle: bytes) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and needle in p.read_bytes())


def postgres_tables_containing(needle: bytes) -> list[str]:
    """Every table in the database whose rows' text (bytea shown as hex) holds the needle."""
    text, hexed = needle.decode(), needle.hex()
    hits = []
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_type = 'BASE TABLE'").fetchall()
        for schema, table in tables:
            try:
                found = conn.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" t '
                    "WHERE strpos(t::text, %s) > 0 OR strpos(t::text, %s) > 0",
                    (text, hexed)).fetchone()[0]
            except psycopg.errors.UndefinedTable:
                continue  # another test dropped its schema meanwhile
            if found:
                hits.append(f"{schema}.{table}")
    return hits


def everything_containing(settings: Settings, needle: bytes) -> list[str]:
    hits = files_containing(settings.data_dir, needle)
    if settings.is_postgres:
        hits += postgres_tables_containing(needle)
    return hits


def stored_event_states(settings: Settings) -> list[bytes]:
    if settings.is_postgres:
        with psycopg.connect(PG_DSN) as conn:
            table = f'"{settings.store.schema_name}".ledgermail_events'
            rows = conn.execute(f"SELECT state FROM {table}").fetchall()
        return [bytes(r[0]) for r in rows]
    with sqlite3.connect(settings.data_dir / "events.sqlite") as conn:
        return [r[0] for r in conn.execute("SELECT state FROM stored_events")]


def key_store_rows(settings: Settings) -> list[bytes]:
    if settings.is_postgres:
        with psycopg.connect(PG_DSN) as conn:
            table = f'"{settings.store.schema_name}_keys".subject_keys'
            rows = conn.execute(f"SELECT t::text FROM {table} t").fetchall()
        return [r[0].encode() for r in rows]
    with sqlite3.connect(settings.data_dir / "keys.sqlite") as conn:
        return [repr(r).encode() for r in conn.execute("SELECT * FROM subject_keys")]


def blob_contents(settings: Settings) -> list[bytes]:
    if settings.is_postgres:
        with psycopg.connect(PG_DSN) as conn:
            rows = conn.execute(f'SELECT sealed FROM "{settings.store.schema_name}".blobs').fetchall()
        return [bytes(r[0]) for r in rows]
    with sqlite3.connect(settings.data_dir / "blobs.sqlite") as conn:
        return [r[0] for r in conn.execute("SELECT sealed FROM blobs")]
