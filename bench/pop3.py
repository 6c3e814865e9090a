"""POP3 benchmark: ledgermail against Dovecot, on this machine, in the same run.

Why: as for bench/imap.py, a figure means little alone; Dovecot on the same hardware,
driven by the same client code with the same messages in the same run, is the yardstick.
Target (issue #5): every figure at least 0.7x Dovecot's.

How: this reuses bench/imap.py (imported, not copied): its server start-up, its IMAP
client and its messages. Both servers run side by side on fresh stores, and each step
runs on one, then on the other (the order alternating between runs), never on both at
once, so load from elsewhere on the machine falls on both alike.

- **Dovecot** (apt-get install dovecot-imapd dovecot-pop3d if missing): bench/imap.py's
  configuration with POP3 added on 127.0.0.1:10110 as in
  shared/reference/peers/dovecot.conf, and ``pop3_uidl_format = %08Xu%08Xv`` (its
  default, which ledgermail's UIDL follows: UID and UIDVALIDITY in hex).
- **ledgermail** ``serve`` on a fresh data dir (SQLite, or ``--backend postgres``), every
  listener off but IMAP (to fill the maildrop) and ``pop3`` (on a free port), and a cheap
  Argon2 for the bench user's password (``--real-password-cost`` keeps the configured
  one), as bench/imap.py does.

The maildrop is user ``bench@example.test``'s INBOX, filled the same way for both: IMAP
APPEND, pipelined with LITERAL+ (``--window`` 16 in flight), 4,096-byte messages that
bench/imap.py generates, the same bytes for both. One client (this file: raw sockets, no
poplib) logs in with USER/PASS (both allow it on loopback) and:

1. RETR of each of the ``--retr`` (1,000) messages in the INBOX, pipelined ``--window``
   deep (both advertise PIPELINING, RFC 2449), on a new connection each run: msg/s from
   the first RETR sent to the last message read. Every message must come back
   byte-for-byte as it was appended (dot-stuffing undone). QUIT, nothing deleted.
2. The INBOX is then filled up to ``--uidl`` (10,000) messages, and each run times
   USER, PASS and UIDL (the whole listing read) on a new connection, from the
   greeting on; every message must be listed once, with a distinct id.

Each step runs ``--runs`` (3) times and the median is printed (every run too). Ratios are
ledgermail/Dovecot for the throughput and Dovecot time / ledgermail time for the time, so
0.7 or more meets the target either way. ``--json FILE`` also writes both figures as the
rows bench/all.py reads (its docstring has the format); a failed check or step makes a row's
``met`` false.

Run from the repository root, as root (Dovecot stores mail as user ``mail``)::

    python3 bench/pop3.py                 # the full run, 1-2 minutes on 2 cores
    python3 bench/pop3.py --quick         # 10x smaller counts, 1 run
    python3 bench/pop3.py --servers ledgermail

Exit status 1 when a check failed (a count, a byte, a missing capability), 2 when the
benchmark could not run.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap import (  # noqa: E402 - bench/ is not a package; imap.py is beside this file
    DOMAIN,
    LEDGERMAIL,
    MESSAGE_SIZE,
    PASSWORD,
    PG_URL,
    USER,
    BenchError,
    ImapError,
    Served,
    append_all,
    connect,
    contract_row,
    dovecot_peer,
    dovecot_version,
    ensure_dovecot,
    free_port,
    ledgermail_server,
    make_message,
    progress,
    sh,
    summarize,
    write_json,
)

DOVECOT_POP3_PORT = 10110
TARGET = 0.7
#: Added to bench/imap.py's Dovecot configuration (shared/reference/peers/dovecot.conf).
DOVECOT_POP3 = f"""\
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {DOVECOT_POP3_PORT}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
protocol pop3 {{
  pop3_uidl_format = %08Xu%08Xv
}}
"""
#: Messages of the maildrop: bench/imap.py's, numbered from here (any fixed base would do).
FIRST = 3_000_000

assert DOMAIN in USER


class Pop3Error(Exception):
    """A server answered -ERR, closed the connection, or sent something unexpected."""


# -- client -------------------------------------------------------------------------------


class Pop3:
    """A minimal POP3 client over a blocking socket: one code path for both servers."""

    def __init__(self, port: int, timeout: float = 120) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.greeting = self.status()

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise Pop3Error("connection closed by the server")
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n", self.pos)) < 0:
            self._fill()
        line = bytes(self.buf[self.pos: end + 2])
        self.pos = end + 2
        return line

    def status(self) -> bytes:
        """One status line; -ERR raises."""
        if self.pos > 1 << 20:  # here, not in _fill: body() keeps indexes into the buffer
            del self.buf[: self.pos]
            self.pos = 0
        line = self._line()
        if not line.startswith(b"+OK"):
            raise Pop3Error(line[:300].decode(errors="replace").strip())
        return line

    def body(self) -> bytes:
        """The lines after a +OK, to the "." line, dot-stuffing undone (RFC 1939 §3)."""
        start = self.pos - 2  # the status line's CRLF: an empty body ends right there
        while (end := self.buf.find(b"\r\n.\r\n", start)) < 0:
            start = max(start, len(self.buf) - 4)
            self._fill()
        data = bytes(self.buf[self.pos: end + 2]) if end + 2 > self.pos else b""
        self.pos = end + 5
        if data.startswith(b".."):
            data = data[1:]
        return data.replace(b"\r\n..", b"\r\n.")

    def command(self, text: str, multiline: bool = False) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        line = self.status()
        return line + self.body() if multiline else line

    def login(self) -> None:
        self.command(f"USER {USER}")
        self.command(f"PASS {PASSWORD}")

    def capabilities(self) -> set[str]:
        reply = self.command("CAPA", multiline=True)
        return {line.split()[0].upper() for line in reply.decode().splitlines()[1:] if line.strip()}

    def quit(self) -> None:
        with suppress(OSError, Pop3Error):
            self.command("QUIT")
        self.close()


def retr_all(client: Pop3, count: int, window: int) -> list[bytes]:
    """``RETR n`` for n = 1..count, ``window`` in flight; the messages received."""
    messages: list[bytes] = []
    pending: deque[int] = deque()

    def read_one() -> None:
        pending.popleft()
        client.status()
        messages.append(client.body())

    for number in range(1, count + 1):
        if len(pending) >= window:
            read_one()
        client.sock.sendall(b"RETR %d\r\n" % number)
        pending.append(number)
    while pending:
        read_one()
    return messages


def wait_for_pop3(port: int, served: Served, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            Pop3(port, timeout=5).quit()
            return
        except (OSError, Pop3Error):
            time.sleep(0.2)
    raise BenchError(f"no POP3 greeting on 127.0.0.1:{port} after {timeout:.0f} s; {served.describe()}")


# -- the steps ------------------------------------------------------------------------------


@dataclass
class Server:
    served: Served
    pop3_port: int


@dataclass
class Figures:
    name: str
    retr_rate: list[float] = field(default_factory=list)  # msg/s per run
    uidl: list[float] = field(default_factory=list)  # seconds per run (USER, PASS, UIDL)
    filled: list[tuple[int, float]] = field(default_factory=list)  # (messages, seconds) per APPEND batch
    uidl_sample: str = ""
    uidl_first: str = ""  # message 1's id
    capabilities: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failed_phase: int | None = None  # bench()'s phase (-1: start-up) that raised, if any


def check(figures: Figures, ok: bool, text: str) -> None:
    if not ok:
        figures.problems.append(text)
        progress(f"CHECK FAILED ({figures.name}): {text}")


def step_fill(server: Server, figures: Figures, messages: list[bytes], args: argparse.Namespace) -> None:
    """Append ``messages`` to the INBOX with IMAP APPEND (LITERAL+, pipelined)."""
    client = connect(server.served.port)
    try:
        t0 = time.perf_counter()
        mode = append_all(client, "INBOX", messages, args.window)
        seconds = time.perf_counter() - t0
        client.command("LOGOUT")
    finally:
        client.close()
    figures.filled.append((len(messages), seconds))
    progress(f"{figures.name}: appended {len(messages):,} to INBOX at "
             f"{len(messages) / seconds:,.0f} msg/s ({mode})")


def step_retr(server: Server, figures: Figures, expected: list[bytes], args: argparse.Namespace) -> None:
    """1. RETR of every message, pipelined, on a new connection."""
    client = Pop3(server.pop3_port)
    try:
        figures.capabilities = client.capabilities()
        check(figures, "PIPELINING" in figures.capabilities,
              f"CAPA has no PIPELINING: {sorted(figures.capabilities)}")
        client.login()
        stat = client.command("STAT").split()
        check(figures, int(stat[1]) == len(expected),
              f"STAT: {int(stat[1])} messages, expected {len(expected)}")
        t0 = time.perf_counter()
        got = retr_all(client, len(expected), args.window)
        seconds = time.perf_counter() - t0
        client.quit()
    finally:
        client.close()
    wrong = [n for n, (a, b) in enumerate(zip(got, expected, strict=True), start=1) if a != b]
    check(figures, not wrong, f"RETR: {len(wrong)} of {len(expected)} messages differ from what was "
                              f"appended (first: {wrong[:5]}, sizes {[len(got[n - 1]) for n in wrong[:5]]})")
    figures.retr_rate.append(len(got) / seconds)
    progress(f"{figures.name}: RETR {len(got):,} in {seconds:.3f} s ({len(got) / seconds:,.0f} msg/s)")


def step_uidl(server: Server, figures: Figures, count: int, args: argparse.Namespace) -> None:
    """2. USER, PASS and UIDL of the whole maildrop, on a new connection."""
    client = Pop3(server.pop3_port)
    try:
        t0 = time.perf_counter()
        client.login()
        listing = client.command("UIDL", multiline=True)
        seconds = time.perf_counter() - t0
        client.quit()
    finally:
        client.close()
    rows = [line.split() for line in listing.decode().splitlines()[1:]]
    ids = [row[1] for row in rows if len(row) == 2]
    check(figures, len(rows) == count and len(ids) == count and len(set(ids)) == count,
          f"UIDL: {len(rows)} lines, {len(set(ids))} distinct ids, expected {count}")
    figures.uidl_sample = f"{ids[0]} .. {ids[-1]}" if ids else "(none)"
    figures.uidl_first = ids[0] if ids else ""
    figures.uidl.append(seconds)
    progress(f"{figures.name}: USER+PASS+UIDL of {len(rows):,} in {seconds * 1000:.1f} ms")


# -- report ---------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def report(results: dict[str, Figures], args: argparse.Namespace) -> list[str]:
    ours, peer = results.get("ledgermail"), results.get("dovecot")
    lines = [f"{'':<44} {'ledgermail':>11} {'dovecot':>11}  {'unit':<5} {'ratio':>6}  target"]

    def row(label: str, unit: str, get: Callable[[Figures], list[float]], scale: float, digits: int,
            higher_better: bool | None) -> None:
        a, b = ((median(get(f)) if f else None) for f in (ours, peer))
        ratio = (a / b if higher_better else b / a) if a and b and higher_better is not None else None
        cells = [f"{v * scale:>11,.{digits}f}" if v is not None else f"{'-':>11}" for v in (a, b)]
        shown = f"{ratio:>5.2f}x" if ratio is not None else f"{'-':>6}"
        target = "info" if higher_better is None else f">= {TARGET}x Dovecot"
        if ratio is not None:
            target += " met" if ratio >= TARGET else " MISSED"
        lines.append(f"{label:<44} {cells[0]} {cells[1]}  {unit:<5} {shown}  {target}")
        detail = "; ".join(f"{f.name} " + "/".join(f"{v * scale:.{digits}f}" for v in get(f))
                           for f in (ours, peer) if f and len(get(f)) > 1)
        if detail:
            lines.append(f"{'':<5}runs: {detail}")

    row(f"1. RETR {args.retr:,} x 4 KiB ({args.window} in flight)", "msg/s",
        lambda f: f.retr_rate, 1, 0, True)
    row(f"2. USER+PASS+UIDL of {args.uidl:,}", "ms", lambda f: f.uidl, 1000, 1, False)
    row(f"   filling the INBOX to {args.uidl:,} (IMAP APPEND)", "msg/s",
        lambda f: [sum(n for n, _ in f.filled) / sum(t for _, t in f.filled)] if f.filled else [], 1, 0, None)
    lines.append("")
    lines.append(f"ratio: ledgermail/Dovecot for msg/s, Dovecot time / ledgermail time for ms; target >= "
                 f"{TARGET}x either way. Step 2 is timed from USER to the end of the UIDL listing.")
    if ours and peer and ours.uidl_first and peer.uidl_first:
        # Both are %08X UID + %08X UIDVALIDITY; UIDVALIDITY is the creation time in both, so
        # ids can only agree when both INBOXes were created in the same second.
        a, b = ours.uidl_first, peer.uidl_first
        same = ("identical" if a == b else "the same but for letter case" if a.lower() == b.lower()
                else "the same UID, another UIDVALIDITY" if a[:8] == b[:8]
                else "the same UID part but for letter case" if a[:8].lower() == b[:8].lower()
                else "different")
        lines.append(f"UIDL of message 1: ledgermail {a}, dovecot {b}: {same}")
    for f in (ours, peer):
        if f is not None and f.capabilities:
            lines.append(f"{f.name}: CAPA {' '.join(sorted(f.capabilities))}; UIDL ids {f.uidl_sample}; "
                         f"its steps took {f.seconds:.0f} s")
    return lines


def json_rows(results: dict[str, Figures], args: argparse.Namespace) -> list[dict]:
    """The rows of --json (bench/all.py's docstring has the format)."""
    ours, peer = results.get("ledgermail"), results.get("dovecot")
    empty = Figures("-")
    a, b = ours or empty, peer or empty
    dovecot = f"Dovecot {dovecot_version()}"
    target = f">= {TARGET}x"

    def spoiled(last_phase: float, checks: tuple[str, ...]) -> bool:
        """A server failed in or before the phases this row's runs come from, or one of
        the row's checks failed."""
        return ours is None or any(
            (f.failed_phase is not None and f.failed_phase <= last_phase)
            or any(p.startswith(checks) for p in f.problems) for f in (a, b))

    retr_phases = getattr(args, "retr_phases", 0)
    return [
        contract_row(f"POP3 RETR {args.retr:,} x 4 KiB", a.retr_rate, b.retr_rate, dovecot, "msg/s", True,
                     target, TARGET, spoiled(retr_phases, ("CAPA", "STAT", "RETR"))),
        contract_row(f"POP3 USER+PASS+UIDL of {args.uidl:,}", [v * 1000 for v in a.uidl],
                     [v * 1000 for v in b.uidl], dovecot, "ms", False, target, TARGET,
                     spoiled(float("inf"), ("UIDL",))),
    ]


# -- main -----------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> tuple[dict[str, Figures], dict[str, str]]:
    progress(f"generating {args.uidl:,} messages of {MESSAGE_SIZE} bytes")
    messages = [make_message(FIRST + i) for i in range(args.uidl)]
    results = {name: Figures(name) for name in args.servers}
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ledgermail-pop3-bench-") as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        scratch.chmod(0o755)  # Dovecot's mail processes run as mail
        servers: dict[str, Server] = {}
        for name in args.servers:
            progress(f"{name}: starting (scratch {scratch})")
            try:
                if name == "dovecot":
                    served = stack.enter_context(dovecot_peer(
                        scratch, args, protocols="imap pop3", extra=DOVECOT_POP3, ports=(DOVECOT_POP3_PORT,)))
                    servers[name] = Server(served, DOVECOT_POP3_PORT)
                else:
                    port = free_port(22110)
                    served = stack.enter_context(ledgermail_server(scratch, args, {"pop3": port}))
                    servers[name] = Server(served, port)
                wait_for_pop3(servers[name].pop3_port, served)
            except (BenchError, ImapError, Pop3Error, OSError) as error:
                failures[name] = f"{type(error).__name__}: {error}"
                results[name].failed_phase = -1
                progress(f"{name}: FAILED: {failures[name]}")
        phase = 0

        def each(step: Callable[..., None], *extra: object, reverse: bool = False) -> None:
            nonlocal phase
            phase += 1
            names = [n for n in args.servers if n in servers and n not in failures]
            for name in reversed(names) if reverse else names:
                began = time.perf_counter()
                try:
                    step(servers[name], results[name], *extra)
                except (BenchError, ImapError, Pop3Error, OSError) as error:
                    failures[name] = f"{type(error).__name__}: {error}\n{servers[name].served.describe()}"
                    results[name].failed_phase = phase
                    progress(f"{name}: FAILED: {failures[name]}")
                results[name].seconds += time.perf_counter() - began

        each(step_fill, messages[: args.retr], args)
        for run in range(1, args.runs + 1):
            each(step_retr, messages[: args.retr], args, reverse=run % 2 == 0)
        args.retr_phases = phase  # the phases up to here: filling and RETR
        each(step_fill, messages[args.retr:], args)
        for run in range(1, args.runs + 1):
            each(step_uidl, args.uidl, args, reverse=run % 2 == 0)
    return results, failures


FULL = {"retr": 1000, "uidl": 10_000, "window": 16, "runs": 3}
QUICK = {**FULL, "retr": 100, "uidl": 1000, "runs": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items()
                                                            if v != FULL[k]))
    for name, text in (("retr", "messages retrieved (the INBOX holds this many first)"),
                       ("uidl", "messages in the INBOX for UIDL"),
                       ("window", "pipelined commands in flight"), ("runs", "repetitions of each step")):
        parser.add_argument(f"--{name}", type=int, help=f"{text} ({FULL[name]:,}; quick {QUICK[name]:,})")
    parser.add_argument("--servers", default="dovecot,ledgermail",
                        help="comma-separated, in order (dovecot,ledgermail)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help=f"ledgermail's store (postgres: {PG_URL})")
    parser.add_argument("--real-password-cost", action="store_true",
                        help="hash the bench user's password with the configured Argon2 cost")
    parser.add_argument("--keep-logs", type=Path, help="copy the servers' logs into this directory")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the rows bench/all.py reads to FILE")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 1 <= args.retr <= args.uidl:
        parser.error("--retr must be between 1 and --uidl")
    # bench/imap.py's server start-up sizes connection limits from these; POP3 needs few.
    args.idle = args.watchers = args.many = 0
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(args.servers) - {"dovecot", "ledgermail"}:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    if os.geteuid() != 0 and "dovecot" in args.servers:
        parser.error("run as root: it runs Dovecot, which stores mail as user mail")
    if "ledgermail" in args.servers and not LEDGERMAIL.exists():
        parser.error(f"{LEDGERMAIL} is missing: create the venv first (make lint)")
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers stopped, dirs removed
    began, load = time.perf_counter(), os.getloadavg()[0]
    try:
        if "dovecot" in args.servers:
            ensure_dovecot("imap")
            ensure_dovecot("pop3")
        if args.backend == "postgres" and "ledgermail" in args.servers:
            sh("psql", PG_URL, "-Atc", "SELECT 1")
        results, failures = bench(args)
    except BenchError as error:
        print(f"pop3 bench: {error}", file=sys.stderr)
        if args.json:
            write_json(args.json, "bench/pop3.py", [], [f"pop3 bench: {error}"])
        return 2
    if args.json:
        write_json(args.json, "bench/pop3.py", json_rows(results, args),
                   [f"{name}: {text}" for name, text in failures.items()]
                   + [f"{f.name}: {p}" for f in results.values() for p in f.problems])
    return summarize("pop3", report(results, args), results, failures, args, began, load,
                     f"median of {args.runs} runs")


if __name__ == "__main__":
    sys.exit(main())
