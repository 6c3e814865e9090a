"""Store benchmark: durable delivery throughput and erasure time, on SQLite and PostgreSQL.

What it measures, for each backend (SQLite in a temporary data dir; PostgreSQL in fresh
schemas that are dropped afterwards):

1. **deliveries/s, 1 recipient** -- ``--messages`` messages of 4 KiB, each to one random
   account out of ``--accounts`` (64), delivered by ``--threads`` (32) concurrent caller
   threads through ``app.deliver``. ``deliver`` returns only after the transaction is
   committed (DESIGN §2), so this is acknowledged-and-durable mail per second. The
   projections run in the background, as under ``ledgermail serve``.
2. **deliveries/s, 10 recipients** -- the same, each message to 10 distinct random accounts.
3. **erasure of a person holding K messages** (``--erase-sizes``, default 1000,10000) --
   one account's INBOX is filled with K messages (``app.deliver`` from several threads),
   the views are caught up (``container.catch_up()``), then ``app.erase_subject(address,
   "bench")`` is timed; the receipt's ``verification.passed`` is reported.

Each measurement runs ``--runs`` (3) times, each time on a fresh store, and the table
shows the median and the spread (min-max), next to the targets from the issue:
>= 1000 single-recipient deliveries/s on SQLite, and erasure of 10,000 messages < 2 s.

As a peer (DESIGN §7), each backend also gets the plain floor of the same hardware:
``--threads`` threads inserting 4 KiB rows into a bare table, one durable commit per
row (SQLite WAL with synchronous=FULL; PostgreSQL with synchronous_commit=on), and the
delivery rows print their ratio to it.

Run from the repository root::

    .venv/bin/python bench/store.py                      # both backends, defaults
    .venv/bin/python bench/store.py --backend sqlite --messages 1000 --runs 1
    .venv/bin/python bench/store.py --backend postgres --erase-sizes 1000

PostgreSQL comes from ``LEDGERMAIL_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from adapters.bootstrap import Container, build, schemas_for
from adapters.config import Settings, load_settings
from domain.application.context import acting

PG_DSN = os.environ.get("LEDGERMAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DOMAIN = "bench.test"
PASSWORD = "bench-password-1"
MESSAGE_BYTES = 4096
FILL_THREADS = 8
SQLITE_TARGET_DELIVERIES = 1000.0
ERASE_TARGET_SIZE, ERASE_TARGET_SECONDS = 10_000, 2.0


# -- stores ---------------------------------------------------------------------------


def make_settings(data_dir: Path, backend: str, schema: str) -> Settings:
    """As tests/conftest.py does: cheap argon2, a fresh schema on PostgreSQL."""
    store = {"url": PG_DSN, "schema": schema} if backend == "postgres" else None
    return load_settings(None, data_dir=data_dir, store=store,
                         crypto={"password_memory_kib": 1024, "password_time_cost": 1})


def drop_schemas(settings: Settings) -> None:
    if settings.is_postgres:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for schema in schemas_for(settings).values():
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_store(backend: str) -> Iterator[Container]:
    """A new, empty store with the bench domain; removed (dir and schemas) afterwards."""
    with tempfile.TemporaryDirectory(prefix="ledgermail-bench-") as tmp:
        settings = make_settings(Path(tmp) / "data", backend, "bench" + uuid.uuid4().hex[:10])
        try:
            container = build(settings)
            try:
                with acting("admin:bench", protocol="bench"):
                    container.app.add_domain(DOMAIN)
                yield container
            finally:
                container.close()
        finally:
            drop_schemas(settings)


def create_accounts(container: Container, count: int) -> list[str]:
    addresses = [f"user{i}@{DOMAIN}" for i in range(count)]
    with acting("admin:bench", protocol="bench"):
        for address in addresses:
            container.app.create_account(address, PASSWORD)
    return addresses


# -- load -----------------------------------------------------------------------------


def message(n: int) -> bytes:
    """A unique 4 KiB RFC 5322 message."""
    head = (f"From: Sender <sender{n}@remote.example>\r\nTo: someone@{DOMAIN}\r\n"
            f"Subject: bench message {n}\r\nMessage-ID: <{uuid.uuid4().hex}@remote.example>\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n").encode()
    line = (uuid.uuid4().hex * 2)[:76].encode() + b"\r\n"
    body = (line * (MESSAGE_BYTES // len(line) + 1))[: MESSAGE_BYTES - len(head)]
    return head + body


def deliver_concurrently(container: Container, jobs: list[list[str]], threads: int) -> float:
    """Deliver one message per job (a recipient list) from ``threads`` callers; seconds."""
    bodies = [message(n) for n in range(len(jobs))]
    next_job = iter(range(len(jobs)))
    take = threading.Lock()
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        # ContextVars do not flow into new threads: each caller sets its own actor.
        with acting("admin:bench", protocol="bench"):
            start.wait()
            while True:
                with take:
                    n = next(next_job, None)
                if n is None:
                    return
                container.app.deliver(jobs[n], bodies[n], channel="bench")

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        start.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        return time.perf_counter() - began


# -- measurements ---------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    what: str
    unit: str  # "/s" (higher is better) or "s" (lower is better)
    samples: list[float] = field(default_factory=list)
    target: str = ""
    met: Callable[[float], bool] | None = None
    note: str = ""
    #: Erasures: the receipt's verification.passed, per run.
    verified: list[bool] = field(default_factory=list)


def deliveries_per_second(backend: str, args: argparse.Namespace, recipients: int) -> float:
    with fresh_store(backend) as container:
        addresses = create_accounts(container, args.accounts)
        # Warm-up (untimed): every INBOX loaded once, as on a server that has been up.
        deliver_concurrently(container, [[a] for a in addresses], args.threads)
        rng = random.Random(recipients)
        jobs = [rng.sample(addresses, recipients) for _ in range(args.messages)]
        seconds = deliver_concurrently(container, jobs, args.threads)
        return args.messages / seconds


def erase_seconds(backend: str, size: int) -> tuple[float, bool]:
    with fresh_store(backend) as container:
        [address] = create_accounts(container, 1)
        deliver_concurrently(container, [[address]] * size, FILL_THREADS)
        container.catch_up(timeout=600)
        with acting("admin:bench", protocol="bench"):
            began = time.perf_counter()
            receipt = container.app.erase_subject(address, "bench")
            seconds = time.perf_counter() - began
        return seconds, bool(receipt["verification"]["passed"])


def run_callers(threads: int, count: int, connect: Callable[[], Any],
                insert: Callable[[Any], None]) -> float:
    """``count`` inserts shared by ``threads`` threads, each on its own connection; per second."""
    left = iter(range(count))
    take = threading.Lock()

    def worker() -> None:
        conn = connect()
        try:
            while True:
                with take:
                    if next(left, None) is None:
                        return
                insert(conn)
        finally:
            conn.close()

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return count / (time.perf_counter() - began)


def peer_commits_per_second(backend: str, args: argparse.Namespace) -> float:
    """The hardware floor: bare 4 KiB row inserts, one durable commit each."""
    row = os.urandom(MESSAGE_BYTES)
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ledgermail-peer-") as tmp:
            path = str(Path(tmp) / "peer.sqlite")
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)")

            def connect() -> sqlite3.Connection:
                conn = sqlite3.connect(path, timeout=60, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA synchronous=FULL")
                return conn

            def insert(conn: sqlite3.Connection) -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO t(body) VALUES (?)", (row,))
                conn.execute("COMMIT")

            return run_callers(args.threads, args.messages, connect, insert)
    schema = f'"benchpeer{uuid.uuid4().hex[:10]}"'
    table = f"{schema}.t"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {table}(id BIGSERIAL PRIMARY KEY, body BYTEA)")
    try:
        return run_callers(
            args.threads, args.messages,
            lambda: psycopg.connect(PG_DSN, autocommit=True),
            lambda conn: conn.execute(f"INSERT INTO {table}(body) VALUES (%s)", (row,)),
        )
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def read_your_writes_ms(backend: str, samples: int = 200) -> float:
    """Median time from a delivery's return to its copy being visible in the views."""
    with fresh_store(backend) as container:
        [address] = create_accounts(container, 1)
        latencies = []
        with acting("admin:bench", protocol="bench"):
            for n in range(samples):
                position = container.app.deliver([address], message(n)).position
                began = time.perf_counter()
                container.projections.wait_for(position, timeout=10)
                latencies.append((time.perf_counter() - began) * 1000)
        return statistics.median(latencies)


def bench_backend(backend: str, args: argparse.Namespace) -> list[Row]:
    peer = Row(backend, f"peer: bare 4 KiB durable commits, {args.threads} thr", "/s")
    one = Row(backend, f"deliveries/s, 1 rcpt, {args.threads} thr", "/s")
    ten = Row(backend, f"deliveries/s, 10 rcpt, {args.threads} thr", "/s")
    if backend == "sqlite":
        one.target, one.met = f">= {SQLITE_TARGET_DELIVERIES:.0f}/s", (
            lambda v: v >= SQLITE_TARGET_DELIVERIES)
    visible = Row(backend, "delivery -> visible in views (read-your-writes)", "ms")
    erasures = []
    for size in args.erase_sizes:
        row = Row(backend, f"erase person with {size:,} msgs", "s")
        if size == ERASE_TARGET_SIZE:
            row.target, row.met = f"< {ERASE_TARGET_SECONDS:g} s", (
                lambda v: v < ERASE_TARGET_SECONDS)
        erasures.append((size, row))
    for run in range(1, args.runs + 1):
        progress(f"{backend} run {run}/{args.runs}: peer")
        peer.samples.append(peer_commits_per_second(backend, args))
        progress(f"{backend} run {run}/{args.runs}: {args.messages} deliveries, 1 recipient")
        one.samples.append(deliveries_per_second(backend, args, 1))
        progress(f"{backend} run {run}/{args.runs}: {args.messages} deliveries, 10 recipients")
        ten.samples.append(deliveries_per_second(backend, args, 10))
        progress(f"{backend} run {run}/{args.runs}: read-your-writes latency")
        visible.samples.append(read_your_writes_ms(backend))
        for size, row in erasures:
            progress(f"{backend} run {run}/{args.runs}: erasure of {size} messages")
            seconds, passed = erase_seconds(backend, size)
            row.samples.append(seconds)
            row.verified.append(passed)
    peer_median = statistics.median(peer.samples)
    for row in (one, ten):
        row.note = f"{statistics.median(row.samples) / peer_median:.2f}x peer"
    ten.note += f", {10 * statistics.median(ten.samples):,.0f} copies/s"
    for _, row in erasures:
        row.note = f"verification.passed {sum(row.verified)}/{len(row.verified)}"
    return [peer, one, ten, visible, *[row for _, row in erasures]]


# -- output ---------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:,.0f}/s" if unit == "/s" else f"{value:.2f} s"


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    header = ("backend", "measurement", "median", "spread (min-max)", "target", "result", "notes")
    lines = [header]
    for row in rows:
        median = statistics.median(row.samples)
        spread = f"{fmt(min(row.samples), row.unit)} - {fmt(max(row.samples), row.unit)}"
        verdict = "" if row.met is None else ("MET" if row.met(median) else "MISSED")
        lines.append((row.backend, row.what, fmt(median, row.unit), spread, row.target,
                      verdict, row.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print(f"\nledgermail store benchmark: {args.messages} x {MESSAGE_BYTES // 1024} KiB messages, "
          f"{args.accounts} accounts, {args.runs} runs each (median, min-max), "
          f"{os.cpu_count()} CPUs")
    for n, line in enumerate(lines):
        cells = zip(line, widths, strict=True)
        print("  ".join(cell.ljust(width) for cell, width in cells).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--messages", type=int, default=3000,
                        help="deliveries per throughput run (default 3000)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--threads", type=int, default=32, help="concurrent callers (default 32)")
    parser.add_argument("--accounts", type=int, default=64, help="recipient accounts (default 64)")
    parser.add_argument("--erase-sizes", default="1000,10000",
                        type=lambda text: [int(n) for n in text.split(",") if n.strip()],
                        help="messages held by the erased person, comma-separated")
    args = parser.parse_args(argv)
    if args.accounts < 10:
        parser.error("--accounts must be at least 10 (10-recipient deliveries)")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends:
        try:
            psycopg.connect(PG_DSN, connect_timeout=3).close()
        except psycopg.OperationalError as error:
            parser.error(f"PostgreSQL at {PG_DSN} is unreachable "
                         f"({str(error).strip().splitlines()[0]}); "
                         "set LEDGERMAIL_TEST_PG or use --backend sqlite")
    rows: list[Row] = []
    for backend in backends:
        rows += bench_backend(backend, args)
    print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
