"""IMAP benchmark: ledgermail against Dovecot, on this machine, in the same run.

Why: a figure for one server means little alone; Dovecot on the same hardware, driven by
the same client code with the same messages in the same run, is the yardstick. Targets
(issue #4): every throughput at least half of Dovecot's, an idle IDLE connection costs at
most 20 KiB of server memory, and a new message reaches an IDLE client within 1 s (p99).

How: both servers run side by side on fresh stores, and each step runs on one, then on
the other (the order alternating between runs), never on both at once, so load from
elsewhere on the machine falls on both alike.

- **Dovecot** (apt-get install dovecot-imapd if missing) on 127.0.0.1:10143, storing
  Maildirs in a scratch dir, configured as in shared/reference/peers/README.md plus the
  limits 1,000 connections of one user from one IP need. Stopped at the end.
- **ledgermail** ``serve`` on a fresh data dir (SQLite, or ``--backend postgres``: fresh
  schemas dropped afterwards), every listener but IMAP off, on a free port. Its domain
  and user come from the ``ledgermail`` CLI. The user's password is hashed with a cheap
  Argon2 (1 MiB, 1 pass; ``--real-password-cost`` keeps the configured one) because
  Dovecot's peer compares a {PLAIN} password, and 1,000 logins at 64 MiB x 3 passes
  would measure Argon2, not IMAP (and leave its buffers in the RSS figure).

One client (this file: raw sockets, no imaplib) does the same against both, one user
``bench@example.test``; 4,096-byte messages generated here, the same bytes for both:

1. APPEND of ``--append`` (2,000) messages into a new mailbox, one connection. With
   LITERAL+ advertised the client pipelines (``--window`` 16 commands in flight, as
   mbsync does); without it each APPEND waits for the ``+`` continuation.
2. SELECT of a mailbox holding ``--big`` (10,000) messages (filled by the same APPEND;
   the fill rate is printed too), on a new connection each run.
3. ``FETCH 1:* (FLAGS ENVELOPE)`` of it.
4. ``FETCH n (BODY.PEEK[])`` of ``--bodies`` (1,000) messages spread over it, one command
   per message, pipelined ``--window`` deep.
5. ``SEARCH TEXT`` of a word that is in 1% of the messages' bodies only.
6. Memory of ``--idle`` (1,000) logged-in connections with INBOX selected, each in IDLE
   (``+`` read): ledgermail's server process RSS (VmRSS, /proc/PID/status), Dovecot's
   RSS summed over the master and all its descendants (one ``imap`` process per
   connection, plus auth/anvil/log growth), before and after, divided by the count.
   The server is restarted first (memory that steps 1-5 left allocated, or freed
   meanwhile, would blur the difference) and "before" is read with 20 such connections
   open, so one-time costs of the first connection are not charged to the 1,000.
   Summed RSS counts a shared page (libraries, Dovecot's own code) again in every
   process that maps it, which overstates Dovecot's real cost, so PSS
   (/proc/PID/smaps_rollup, shared pages divided among their users) is printed beside
   it. Dovecot's imap-hibernate is off, as by default. Each imap process takes an
   inotify instance as user mail, so fs.inotify.max_user_instances is raised for the
   run (and restored), else Dovecot warns and polls.
7. IDLE notification latency: ``--watchers`` (20) connections IDLE on INBOX while another
   connection APPENDs ``--notify`` (50) messages to INBOX one at a time; the time from
   each APPEND's tagged OK to each watcher's ``* n EXISTS``, p50 and p99. Dovecot
   waits 500 ms after a change before it notifies (NOTIFY_DELAY_MSECS in its
   mailbox-watch.c), so its figure sits near 500 ms by design.
8. Memory of ``--many`` (10,000; also with ``--quick``, since the target is for that
   count) such idle IDLE connections, ledgermail only: the serve process's whole RSS
   with them open, in MB (10^6 bytes), on a restarted server. Why a second memory
   figure: step 6's per-connection difference says nothing of what the server holds
   whatever the count, and issue 9's target is the total (<= 150 MB), the memory a mail
   host must set aside for a busy domain's phones and desktop clients. Dovecot is not run
   at 10,000: a process per connection, ten thousand processes, would not fit on a small
   machine; its figure is extrapolated from step 6 (its PSS with 20 open, plus its PSS
   per connection times the rest) and labelled so. PSS, not summed RSS, as summed RSS
   counts Dovecot's shared code once per process and would flatter ledgermail. The
   bench raises RLIMIT_NOFILE (the server inherits it) and ledgermail's IMAP connection
   limits (``connection_limits()``) to fit.

Steps 2-5 run ``--runs`` (3) times and the median is printed (every run too); step 1 as
well unless a run took more than 30 s. Ratios are ledgermail/Dovecot for throughputs and
Dovecot time / ledgermail time for times, so 0.5 or more meets the target either way.

``--json FILE`` also writes the rows bench/all.py reads (its docstring has the format): steps
1-5 with the target >= 0.5x, step 8 with its absolute target, and steps 6 and 7 without
a target (they are shown, not counted). A failed check or step makes its rows' ``met``
false.

Run from the repository root, as root (Dovecot stores mail as user ``mail``)::

    python3 bench/imap.py                 # the full run, under ~10 minutes on 2 cores
    python3 bench/imap.py --quick         # 10x smaller counts, 1 run
    python3 bench/imap.py --servers dovecot

Exit status 1 when a check failed (a count, a size, a missing notification), 2 when the
benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LEDGERMAIL = REPO / ".venv" / "bin" / "ledgermail"
PYTHON = REPO / ".venv" / "bin" / "python"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DOMAIN = "example.test"
USER = f"bench@{DOMAIN}"
PASSWORD = "password123"
DOVECOT_PORT = 10143
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")
MESSAGE_SIZE = 4096
#: In the body of 1% of the messages (i % 100 == MARK_AT) and nowhere else.
MARKER = "zyxomorphic"
MARK_AT = 37
SLOW_RUN = 30.0  # seconds: an APPEND run slower than this is not repeated
NOTIFY_TIMEOUT = 10.0  # seconds a watcher may take to see a new message
WARM_IDLERS = 20  # IDLE connections open when the baseline memory is read

#: shared/reference/peers/dovecot.conf without POP3 (bench/pop3.py adds it through
#: {protocols} and {extra}), plus what --idle connections need.
DOVECOT_CONF = """\
protocols = {protocols}
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{dir}/mail/%u
first_valid_uid = {uid}
default_internal_user = dovecot
default_login_user = dovenull
default_internal_group = root
mail_uid = mail
mail_gid = mail
default_client_limit = {clients}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={dir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  process_limit = {processes}
}}
service anvil {{
  client_limit = {clients}
}}
protocol imap {{
  mail_max_userip_connections = {clients}
}}
{extra}"""


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


class ImapError(Exception):
    """A server answered NO/BAD, closed the connection, or sent something unexpected."""


# -- helpers --------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def sh(*argv: str | Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; raise BenchError with its output when it fails."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} exited {done.returncode}: "
                         f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def free_port(first: int = 21430) -> int:
    for port in range(first, first + 1000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError(f"no free port in {first}-{first + 999}")


def listening_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on 127.0.0.1:port (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(fields[9])
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and inodes:
            with suppress(OSError):
                for fd in os.listdir(f"/proc/{entry}/fd"):
                    with suppress(OSError):
                        link = os.readlink(f"/proc/{entry}/fd/{fd}")
                        if link.startswith("socket:[") and link[8:-1] in inodes:
                            pids.add(int(entry))
    return pids


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time (this process only)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def descendants(root: int) -> list[int]:
    """root and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def memory_kib(root: int) -> tuple[int, int, int]:
    """(RSS, PSS, process count) of root and its descendants, in KiB."""
    rss = pss = count = 0
    for pid in descendants(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # exited meanwhile
        rss += int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
        found = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
        pss += int(found.group(1)) if found else 0
        count += 1
    return rss, pss, count


def settled_memory(root: int, seconds: float = 1.0) -> tuple[int, int, int]:
    """Memory once it stops moving (a few samples apart), at most ~10 s of waiting."""
    last = memory_kib(root)
    for _ in range(10):
        time.sleep(seconds)
        now = memory_kib(root)
        if abs(now[0] - last[0]) < 256:
            return now
        last = now
    return last


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))]


# -- messages ---------------------------------------------------------------------------

WORDS = [
    "ledger", "account", "balance", "invoice", "quarterly", "report", "meeting", "agenda",
    "schedule", "budget", "forecast", "review", "draft", "proposal", "contract", "signed",
    "delivery", "shipment", "warehouse", "order", "customer", "support", "ticket", "release",
    "version", "update", "server", "network", "storage", "backup", "policy", "audit", "compliance",
    "summary", "notes", "minutes", "action", "item", "deadline", "friday", "monday", "project",
    "milestone", "estimate", "payment", "receipt", "travel", "expense", "approval", "request",
    "the", "and", "with", "from", "about", "please", "regards", "thanks", "attached", "below",
    "above", "further", "details",
]


def make_message(index: int, size: int = MESSAGE_SIZE) -> bytes:
    """Message ``index``: plain text, CRLF lines, exactly ``size`` bytes; the body holds
    MARKER when index % 100 == MARK_AT."""
    rng = random.Random(index)
    day, second = divmod(index, 86400)
    header = (f"From: Sender {index % 50} <sender{index % 50}@src.test>\r\n"
              f"To: Bench <{USER}>\r\n"
              f"Subject: Message {index} on {rng.choice(WORDS)} {rng.choice(WORDS)}\r\n"
              f"Date: {1 + day % 28:02d} Mar 2026 {second // 3600:02d}:{second // 60 % 60:02d}:"
              f"{second % 60:02d} +0000\r\n"
              f"Message-ID: <bench-{index}@src.test>\r\n"
              "MIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    lines, length = [], len(header)
    marked = index % 100 == MARK_AT
    while length < size:
        words = [rng.choice(WORDS) for _ in range(11)]
        if marked and not lines:
            words[5] = MARKER
        line = (" ".join(words) + "\r\n").encode()
        lines.append(line)
        length += len(line)
    # Cut to size; a cut between CR and LF would leave a bare CR, which servers rewrite.
    body = b"".join(lines)[: size - len(header) - 2].replace(b"\r\n", b"\n")
    body = body.replace(b"\r", b" ").replace(b"\n", b"\r\n") + b"\r\n"
    message = header + body
    assert len(message) == size, len(message)
    return message


# -- client -----------------------------------------------------------------------------

LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n\Z")


class Imap:
    """A minimal IMAP client over a blocking socket: one code path for both servers."""

    def __init__(self, port: int, timeout: float = 120, greet: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.tags = 0
        self.literals: list[int] = []  # sizes of the literals in the last response
        self.capabilities: set[str] = set()
        if greet:
            self.greeting()

    def greeting(self) -> bytes:
        line = self.response()
        if not line.startswith(b"* OK"):
            raise ImapError(f"greeting: {line[:200]!r}")
        return line

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()

    # reading
    def _fill(self) -> None:
        if self.pos > 1 << 20:
            del self.buf[: self.pos]
            self.pos = 0
        data = self.sock.recv(1 << 18)
        if not data:
            raise ImapError("connection closed by the server")
        self.buf += data

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos: end + 2])
                self.pos = end + 2
                return line
            self._fill()

    def _bytes(self, count: int) -> bytes:
        while len(self.buf) - self.pos < count:
            self._fill()
        data = bytes(self.buf[self.pos: self.pos + count])
        self.pos += count
        return data

    def response(self) -> bytes:
        """One whole response, literals included."""
        self.literals = []
        parts = [self._line()]
        while (found := LITERAL.search(parts[-1])) is not None:
            size = int(found.group(1))
            self.literals.append(size)
            parts.append(self._bytes(size))
            parts.append(self._line())
        return b"".join(parts)

    def buffered(self) -> bool:
        return self.buf.find(b"\r\n", self.pos) >= 0

    # writing
    def tag(self) -> bytes:
        self.tags += 1
        return b"t%d" % self.tags

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, tag: bytes, on_untagged: Callable[[bytes], None] | None = None) -> bytes:
        """Read to the tagged response of ``tag``; NO/BAD raise."""
        prefix = tag + b" "
        while True:
            line = self.response()
            if line.startswith(prefix):
                if line[len(prefix):len(prefix) + 2] != b"OK":
                    raise ImapError(line[:300].decode(errors="replace").strip())
                return line
            if on_untagged is not None:
                on_untagged(line)

    def command(self, text: str, on_untagged: Callable[[bytes], None] | None = None) -> bytes:
        tag = self.tag()
        self.send(tag + b" " + text.encode() + b"\r\n")
        return self.until(tag, on_untagged)

    def login(self) -> None:
        self.command(f'LOGIN "{USER}" "{PASSWORD}"')
        caps: list[bytes] = []
        self.command("CAPABILITY", lambda line: caps.append(line))
        for line in caps:
            if line.upper().startswith(b"* CAPABILITY "):
                self.capabilities |= set(line[13:].decode().upper().split())

    def select(self, mailbox: str) -> int:
        exists = []

        def untagged(line: bytes) -> None:
            if found := re.match(rb"\* (\d+) EXISTS", line):
                exists.append(int(found.group(1)))

        self.command(f'SELECT "{mailbox}"', untagged)
        if not exists:
            raise ImapError(f"SELECT {mailbox}: no EXISTS")
        return exists[-1]


def connect(port: int) -> Imap:
    client = Imap(port)
    client.login()
    return client


def append_all(client: Imap, mailbox: str, messages: list[bytes], window: int) -> str:
    """APPEND every message; pipelined with LITERAL+, else one at a time. The mode."""
    box = f'"{mailbox}"'.encode()
    if "LITERAL+" in client.capabilities:
        pending: deque[bytes] = deque()
        for message in messages:
            if len(pending) >= window:
                client.until(pending.popleft())
            tag = client.tag()
            client.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag, box, len(message), message))
            pending.append(tag)
        while pending:
            client.until(pending.popleft())
        return f"LITERAL+, {window} in flight"
    for message in messages:
        tag = client.tag()
        client.send(b"%s APPEND %s {%d}\r\n" % (tag, box, len(message)))
        line = client.response()
        if not line.startswith(b"+"):
            raise ImapError(f"APPEND: expected a continuation, got {line[:200]!r}")
        client.send(message + b"\r\n")
        client.until(tag)
    return "synchronizing literals, one at a time"


def fetch_envelopes(client: Imap) -> int:
    count = 0

    def untagged(line: bytes) -> None:
        nonlocal count
        if b" FETCH " in line[:30] and b"ENVELOPE" in line:
            count += 1

    client.command("FETCH 1:* (FLAGS ENVELOPE)", untagged)
    return count


def fetch_bodies(client: Imap, sequence: list[int], window: int) -> list[int]:
    """``FETCH n (BODY.PEEK[])`` for each n, pipelined; the literal sizes received."""
    sizes: list[int] = []

    def untagged(line: bytes) -> None:
        if b" FETCH " in line[:30]:
            sizes.extend(client.literals)

    pending: deque[bytes] = deque()
    for number in sequence:
        if len(pending) >= window:
            client.until(pending.popleft(), untagged)
        tag = client.tag()
        client.send(b"%s FETCH %d (BODY.PEEK[])\r\n" % (tag, number))
        pending.append(tag)
    while pending:
        client.until(pending.popleft(), untagged)
    return sizes


def search_text(client: Imap, word: str) -> int:
    hits: list[int] = []

    def untagged(line: bytes) -> None:
        if line.upper().startswith(b"* SEARCH"):
            hits.extend(int(n) for n in line[8:].split())

    client.command(f'SEARCH TEXT "{word}"', untagged)
    return len(hits)


def open_idlers(port: int, count: int, batch: int = 50) -> list[Imap]:
    """``count`` connections, logged in, INBOX selected, IDLE's ``+`` read; opened
    ``batch`` at a time, each step of a batch sent to all before any answer is read."""
    clients: list[Imap] = []
    try:
        for start in range(0, count, batch):
            group = [Imap(port, greet=False) for _ in range(min(batch, count - start))]
            clients.extend(group)
            for client in group:
                client.greeting()
            for step in (f'LOGIN "{USER}" "{PASSWORD}"', 'SELECT "INBOX"'):
                tags = []
                for client in group:
                    tags.append(client.tag())
                    client.send(tags[-1] + b" " + step.encode() + b"\r\n")
                for client, tag in zip(group, tags, strict=True):
                    client.until(tag)
            for client in group:
                client.send(client.tag() + b" IDLE\r\n")
            for client in group:
                while not (line := client.response()).startswith(b"+"):
                    if line.startswith(b"t"):
                        raise ImapError(f"IDLE: {line[:200]!r}")
    except BaseException:
        for client in clients:
            client.close()
        raise
    return clients


# -- the steps ----------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    append_mode: str = ""
    append_rate: list[float] = field(default_factory=list)  # msg/s per run
    fill_rate: float = 0.0
    select: list[float] = field(default_factory=list)  # seconds per run
    envelopes: list[float] = field(default_factory=list)
    bodies: list[float] = field(default_factory=list)
    search: list[float] = field(default_factory=list)
    idle_rss_kib: float | None = None  # per connection
    idle_pss_kib: float | None = None
    idle_base_kib: tuple[int, int] | None = None  # (RSS, PSS) with WARM_IDLERS open
    idle_note: str = ""
    many_rss_kib: int | None = None  # the server's RSS with --many IDLE connections open
    many_note: str = ""
    notify: list[float] = field(default_factory=list)  # seconds, every watcher x message
    notify_missed: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of this server's steps
    failed_step: str = ""  # the step (function name, or "start") that raised, if any


def check(figures: Figures, ok: bool, text: str) -> None:
    if not ok:
        figures.problems.append(text)
        progress(f"CHECK FAILED ({figures.name}): {text}")


def step_append(server: Served, figures: Figures, run: int, batch: list[bytes],
                args: argparse.Namespace) -> None:
    """1. APPEND ``batch`` into a new mailbox; skipped once a run was slower than SLOW_RUN."""
    if figures.append_rate and len(batch) / figures.append_rate[-1] > SLOW_RUN:
        return
    client = connect(server.port)
    try:
        client.command(f'CREATE "append{run}"')
        t0 = time.perf_counter()
        figures.append_mode = append_all(client, f"append{run}", batch, args.window)
        seconds = time.perf_counter() - t0
        client.command("LOGOUT")
    finally:
        client.close()
    figures.append_rate.append(len(batch) / seconds)
    progress(f"{figures.name}: APPEND {len(batch)} in {seconds:.2f} s ({figures.append_mode})")


def step_fill(server: Served, figures: Figures, messages: list[bytes], args: argparse.Namespace) -> None:
    """The big mailbox, filled with the same APPEND."""
    client = connect(server.port)
    try:
        client.command('CREATE "big"')
        progress(f"{figures.name}: filling 'big' with {len(messages):,} messages")
        t0 = time.perf_counter()
        append_all(client, "big", messages, args.window)
        figures.fill_rate = len(messages) / (time.perf_counter() - t0)
        client.command("LOGOUT")
    finally:
        client.close()
    progress(f"{figures.name}: filled at {figures.fill_rate:,.0f} msg/s")


def step_read(server: Served, figures: Figures, big: int, args: argparse.Namespace) -> None:
    """2-5. SELECT, FETCH envelopes, FETCH bodies, SEARCH, on a new connection."""
    every = max(1, big // args.bodies)
    sequence = [1 + i * every for i in range(min(args.bodies, big))]
    expected_hits = sum(1 for i in range(big) if i % 100 == MARK_AT)
    client = connect(server.port)
    try:
        t0 = time.perf_counter()
        exists = client.select("big")
        figures.select.append(time.perf_counter() - t0)
        check(figures, exists == big, f"SELECT big: {exists} EXISTS, expected {big}")
        t0 = time.perf_counter()
        count = fetch_envelopes(client)
        figures.envelopes.append(time.perf_counter() - t0)
        check(figures, count == big, f"FETCH 1:* ENVELOPE: {count} responses, expected {big}")
        t0 = time.perf_counter()
        sizes = fetch_bodies(client, sequence, args.window)
        figures.bodies.append(time.perf_counter() - t0)
        check(figures, sizes == [MESSAGE_SIZE] * len(sequence),
              f"FETCH BODY.PEEK[]: {len(sizes)} bodies of sizes {sorted(set(sizes))[:5]}, "
              f"expected {len(sequence)} of {MESSAGE_SIZE}")
        t0 = time.perf_counter()
        hits = search_text(client, MARKER)
        figures.search.append(time.perf_counter() - t0)
        check(figures, hits == expected_hits, f"SEARCH TEXT: {hits} hits, expected {expected_hits}")
        client.command("LOGOUT")
    finally:
        client.close()
    progress(f"{figures.name}: SELECT {figures.select[-1] * 1000:.1f} ms, "
             f"envelopes {figures.envelopes[-1]:.3f} s, bodies {figures.bodies[-1]:.3f} s, "
             f"SEARCH {figures.search[-1]:.3f} s")


def step_memory(server: Served, figures: Figures, args: argparse.Namespace) -> None:
    """6. Memory of idle connections, on a restarted server (what earlier steps left
    allocated, or freed meanwhile, would blur the figure), from WARM_IDLERS open."""
    progress(f"{figures.name}: restarting, then {WARM_IDLERS} + {args.idle} IDLE connections")
    server.restart()
    idlers = open_idlers(server.port, WARM_IDLERS)
    try:
        rss0, pss0, procs0 = settled_memory(server.process.pid)
        t0 = time.perf_counter()
        idlers += open_idlers(server.port, args.idle)
        opened = time.perf_counter() - t0
        rss1, pss1, procs1 = settled_memory(server.process.pid)
    finally:
        for client in idlers:
            client.close()
    figures.idle_rss_kib = (rss1 - rss0) / args.idle
    figures.idle_base_kib = (rss0, pss0)
    figures.idle_pss_kib = (pss1 - pss0) / args.idle
    figures.idle_note = (f"RSS {rss0 / 1024:,.1f} -> {rss1 / 1024:,.1f} MiB, PSS {pss0 / 1024:,.1f} -> "
                         f"{pss1 / 1024:,.1f} MiB, {procs0} -> {procs1} processes, from {WARM_IDLERS} to "
                         f"{WARM_IDLERS + args.idle} connections opened in {opened:.1f} s")
    progress(f"{figures.name}: {figures.idle_note}")
    time.sleep(2.0)  # let the server notice the closed connections


def step_many(server: Served, figures: Figures, args: argparse.Namespace) -> None:
    """8. The server's whole RSS with ``--many`` (10,000) IDLE connections open, on a
    restarted server: an absolute figure (<= 150 MB), not a difference. ledgermail only:
    Dovecot's figure is extrapolated from step 6 (a process per connection)."""
    if figures.name != "ledgermail":
        return
    progress(f"{figures.name}: restarting, then {args.many:,} IDLE connections")
    server.restart()
    t0 = time.perf_counter()
    idlers: list[Imap] = []
    try:
        for start in range(0, args.many, 1000):  # in steps of 1,000, to show progress
            idlers += open_idlers(server.port, min(1000, args.many - start))
            progress(f"{figures.name}: {len(idlers):,} IDLE connections open, "
                     f"RSS {memory_kib(server.process.pid)[0] / 1024:,.1f} MiB")
        opened = time.perf_counter() - t0
        rss, pss, procs = settled_memory(server.process.pid)
    finally:
        for client in idlers:
            client.close()
    figures.many_rss_kib = rss
    figures.many_note = (f"{args.many:,} IDLE connections opened in {opened:.1f} s: RSS "
                         f"{rss / 1024:,.1f} MiB, PSS {pss / 1024:,.1f} MiB, {procs} process(es)")
    progress(f"{figures.name}: {figures.many_note}")
    time.sleep(2.0)  # let the server notice the closed connections


def step_notify(server: Served, figures: Figures, args: argparse.Namespace) -> None:
    """7. IDLE notification latency."""
    progress(f"{figures.name}: {args.watchers} watchers, {args.notify} deliveries by APPEND")
    notify_latency(server.port, figures, args)


def notify_latency(port: int, figures: Figures, args: argparse.Namespace) -> None:
    sender = connect(port)
    watchers = open_idlers(port, args.watchers)
    selector = selectors.DefaultSelector()
    try:
        counts = {}
        for watcher in watchers:
            selector.register(watcher.sock, selectors.EVENT_READ, watcher)
            counts[watcher] = 0
        status: list[bytes] = []
        sender.command('STATUS "INBOX" (MESSAGES)', status.append)
        found = re.search(rb"MESSAGES (\d+)", b"".join(status))
        base = int(found.group(1)) if found else 0
        for n in range(1, args.notify + 1):
            message = make_message(2_000_000 + n)
            tag = sender.tag()
            # The same APPEND for both servers whatever their capabilities.
            sender.send(b'%s APPEND "INBOX" {%d}\r\n' % (tag, len(message)))
            line = sender.response()
            if not line.startswith(b"+"):
                raise ImapError(f"APPEND: expected a continuation, got {line[:200]!r}")
            sender.send(message + b"\r\n")
            sender.until(tag)
            done = time.perf_counter()
            target = base + n
            waiting = {w for w in watchers if counts[w] < target}
            deadline = done + NOTIFY_TIMEOUT
            while waiting and (left := deadline - time.perf_counter()) > 0:
                ready = [key.data for key, _ in selector.select(left)]
                for watcher in ready:
                    watcher._fill()
                    while watcher.buffered():
                        line = watcher.response()
                        if found := re.match(rb"\* (\d+) EXISTS", line):
                            counts[watcher] = max(counts[watcher], int(found.group(1)))
                    if watcher in waiting and counts[watcher] >= target:
                        figures.notify.append(time.perf_counter() - done)
                        waiting.discard(watcher)
            figures.notify_missed += len(waiting)
            for watcher in waiting:  # count a miss once per message, not again later
                counts[watcher] = target
        check(figures, figures.notify_missed == 0,
              f"IDLE: {figures.notify_missed} notifications not seen within {NOTIFY_TIMEOUT:.0f} s")
        sender.command("LOGOUT")
    finally:
        selector.close()
        sender.close()
        for watcher in watchers:
            watcher.close()


# -- Dovecot --------------------------------------------------------------------------------


def ensure_dovecot(protocol: str = "imap") -> None:
    """Dovecot with its ``protocol`` server (imap, pop3), from apt-get if missing."""
    if shutil.which("dovecot", path="/usr/sbin:/usr/bin") and Path(f"/usr/lib/dovecot/{protocol}").exists():
        return
    package = f"dovecot-{protocol}d"
    progress(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        sh("apt-get", "install", "-y", package, env=env)
    except BenchError:
        sh("apt-get", "update", env=env)
        sh("apt-get", "install", "-y", package, env=env)


def dovecot_version() -> str:
    done = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout else "?"


@dataclass
class Served:
    """A running server: its port, its process (the root of its process tree) and a
    way to restart it on the same store."""

    port: int
    start: Callable[[], subprocess.Popen]
    halt: Callable[[subprocess.Popen], None]
    log: Path
    process: subprocess.Popen | None = None

    def describe(self) -> str:
        """The process's state and the end of its log, for a failure message."""
        process = self.process
        state = ("stopped" if process is None else "running" if process.poll() is None
                 else f"exited {process.returncode}")
        return f"server {state}; {self.log.name} ends:\n{tail(self.log)}"

    def restart(self) -> None:
        if self.process is not None:
            self.halt(self.process)
            self.process = None
        self.process = self.start()

    def close(self) -> None:
        if self.process is not None:
            self.halt(self.process)
            self.process = None


@contextmanager
def dovecot_peer(scratch: Path, args: argparse.Namespace, protocols: str = "imap",
                 extra: str = "", ports: tuple[int, ...] = ()) -> Iterator[Served]:
    """Dovecot on 127.0.0.1:10143 in the foreground (its master is the process).
    ``protocols``, ``extra`` (configuration appended) and ``ports`` (more listeners it
    opens) let bench/pop3.py add POP3."""
    for port in (DOVECOT_PORT, *ports):
        if port_taken(port):
            raise BenchError(f"something already listens on 127.0.0.1:{port} "
                             "(a Dovecot left running? doveadm stop)")
    mail = pwd.getpwnam("mail")
    home = scratch / "dovecot"
    for sub in ("run", "state", "mail"):
        (home / sub).mkdir(parents=True)
    os.chown(home / "mail", mail.pw_uid, mail.pw_gid)
    home.chmod(0o755)
    (home / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    conf = home / "dovecot.conf"
    # Not below Dovecot's default of 1000, which it checks against its login process limits.
    limit = max(1000, args.idle + WARM_IDLERS + args.watchers + 100)
    conf.write_text(DOVECOT_CONF.format(dir=home, uid=mail.pw_uid, port=DOVECOT_PORT,
                                        clients=limit, processes=limit, protocols=protocols,
                                        extra=extra))
    log = home / "dovecot.log"
    output = home / "dovecot.out"

    def start() -> subprocess.Popen:
        with output.open("ab") as out:
            process = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_greeting(DOVECOT_PORT, process, output, log, timeout=30)
        except BaseException:
            halt(process)
            raise
        return process

    def halt(process: subprocess.Popen) -> None:
        subprocess.run(["doveadm", "-c", str(conf), "stop"], capture_output=True)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            stop(process)

    # One inotify instance per imap process, all as user mail: past the kernel's limit
    # (128 by default) Dovecot warns and falls back to polling. Raised for the run only.
    inotify = Path("/proc/sys/fs/inotify/max_user_instances")
    saved = inotify.read_text().strip() if inotify.exists() else None
    if saved is not None and int(saved) < limit + 100:
        try:
            inotify.write_text(f"{limit + 100}\n")
        except OSError as error:
            progress(f"cannot raise {inotify} ({error.strerror}): Dovecot will warn and poll")
            saved = None
    served = Served(DOVECOT_PORT, start, halt, log)
    try:
        served.restart()
        yield served
    finally:
        served.close()
        if saved is not None and inotify.read_text().strip() != saved:
            inotify.write_text(f"{saved}\n")
        if args.keep_logs and log.exists():
            shutil.copy2(log, args.keep_logs / "dovecot.log")
        warnings = [line for line in (log.read_text(errors="replace") if log.exists() else "").splitlines()
                    if any(word in line for word in ("Warning", "Error", "Fatal", "Panic"))
                    and "Killed with signal 15" not in line]  # that is doveadm stop
        if warnings:
            progress("dovecot's log has warnings/errors:\n    " + "\n    ".join(warnings[-10:]))


def wait_for_greeting(port: int, process: subprocess.Popen, *logs: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited {process.returncode}: "
                             + "\n".join(tail(log) for log in logs))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if sock.recv(512).startswith(b"* OK"):
                    sock.sendall(b"a LOGOUT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"no IMAP greeting on port {port} after {timeout:.0f} s: "
                     + "\n".join(tail(log) for log in logs))


# -- ledgermail ---------------------------------------------------------------------------


def ledgermail_env(data_dir: Path, port: int, schema: str | None, args: argparse.Namespace,
                   listen: dict[str, int] | None = None) -> dict[str, str]:
    env = {**os.environ, "LEDGERMAIL_DATA_DIR": str(data_dir)}
    env.update({f"LEDGERMAIL_LISTEN__{name.upper()}": "" for name in LISTENERS})
    env["LEDGERMAIL_LISTEN__IMAP"] = f"127.0.0.1:{port}"
    for name, other in (listen or {}).items():
        env[f"LEDGERMAIL_LISTEN__{name.upper()}"] = f"127.0.0.1:{other}"
    if not args.real_password_cost:
        env.update({"LEDGERMAIL_CRYPTO__PASSWORD_MEMORY_KIB": "1024",
                    "LEDGERMAIL_CRYPTO__PASSWORD_TIME_COST": "1"})
    if schema:
        env.update({"LEDGERMAIL_STORE__URL": PG_URL, "LEDGERMAIL_STORE__SCHEMA": schema})
    needed = max(args.idle + WARM_IDLERS, getattr(args, "many", 0)) + args.watchers + 100
    env.update(connection_limits(env, needed))
    return env


#: Prints "NAME DEFAULT" for every IMAP connection limit the settings have (none may exist).
LIMITS = """
from adapters.config import Settings
section = Settings.model_fields.get("imap")
if section is not None and hasattr(section.annotation, "model_fields"):
    for name in section.annotation.model_fields:
        if name.startswith("max_connections"):
            print(f"LEDGERMAIL_IMAP__{name.upper()}", section.annotation.model_fields[name].default)
"""


def connection_limits(env: dict[str, str], needed: int) -> dict[str, str]:
    """Raise ledgermail's IMAP connection limits (if it has any) to what the bench opens."""
    found = (line.split() for line in sh(PYTHON, "-c", LIMITS, env=env, cwd=REPO).stdout.splitlines())
    return {name: str(needed) for name, default in found if int(default) < needed}


def drop_schemas(schema: str) -> None:
    drops = "; ".join(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE'
                      for suffix in ("", "_keys", "_mailbox_view", "_audit"))
    sh("psql", PG_URL, "-q", "-v", "ON_ERROR_STOP=1", "-c", drops)


@contextmanager
def ledgermail_server(scratch: Path, args: argparse.Namespace,
                      listen: dict[str, int] | None = None) -> Iterator[Served]:
    """``ledgermail serve`` with only the IMAP listener (and those of ``listen``,
    name -> port on 127.0.0.1), on a fresh store."""
    port = free_port()
    schema = f"bench{uuid.uuid4().hex[:10]}" if args.backend == "postgres" else None
    env = ledgermail_env(scratch / "ledgermail", port, schema, args, listen)
    limits = sorted(k for k in env if k.startswith("LEDGERMAIL_IMAP__"))
    if limits:
        progress(f"ledgermail: raised {', '.join(limits)} to {env[limits[0]]}")
    log = scratch / "ledgermail.log"

    def start() -> subprocess.Popen:
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            process = subprocess.Popen([LEDGERMAIL, "serve"], env=env, cwd=REPO, stdout=out,
                                       stderr=subprocess.STDOUT)
        try:
            # serve prints "... Ctrl-C stops" once its listeners are bound.
            deadline = time.monotonic() + 120
            while (b"Ctrl-C stops" not in log.read_bytes()[offset:]
                   and process.poll() is None and time.monotonic() < deadline):
                time.sleep(0.2)
            if process.poll() is None and process.pid not in listening_pids(port):
                raise BenchError(f"ledgermail serve does not listen on 127.0.0.1:{port} (no IMAP "
                                 f"listener in this build?); its log ends:\n{tail(log)}")
            wait_for_greeting(port, process, log, timeout=max(5.0, deadline - time.monotonic()))
        except BaseException:
            stop(process)
            raise
        return process

    served = Served(port, start, stop, log)
    try:
        sh(LEDGERMAIL, "domain", "add", DOMAIN, env=env, cwd=REPO)
        sh(LEDGERMAIL, "user", "add", USER, "--password-stdin", input=f"{PASSWORD}\n", env=env, cwd=REPO)
        served.restart()
        yield served
    finally:
        served.close()
        if args.keep_logs and log.exists():
            shutil.copy2(log, args.keep_logs / "ledgermail.log")
        if schema:
            drop_schemas(schema)


# -- report -------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def runs_text(values: list[float], scale: float, digits: int) -> str:
    return "/".join(f"{v * scale:.{digits}f}" for v in values)


MANY_TARGET_MB = 150  # ledgermail's RSS with 10,000 IDLE connections, issue 9
#: The steps in the order they run; a failure in one leaves the later ones unmeasured.
STEPS = ("start", "step_append", "step_fill", "step_read", "step_memory", "step_many", "step_notify")


def many_peer(peer: Figures | None, args: argparse.Namespace) -> float | None:
    """Dovecot's memory with --many IDLE connections, in MB, extrapolated from step 6: its
    PSS with WARM_IDLERS open plus its PSS per further connection (one imap process each)
    for the rest. PSS, not summed RSS, which would count its shared code once per process."""
    if peer is None or peer.idle_base_kib is None or peer.idle_pss_kib is None or not args.many:
        return None
    return (peer.idle_base_kib[1] + peer.idle_pss_kib * max(0, args.many - WARM_IDLERS)) * 1024 / 1e6


def write_json(path: Path, script: str, rows: list[dict], failures: list[str]) -> None:
    """The --json FILE bench/all.py reads (its docstring has the format). Shared with bench/pop3.py."""
    path.write_text(json.dumps({"script": script, "rows": rows, "failures": failures}, indent=1) + "\n")


def contract_row(figure: str, ours: list[float], peer: list[float], peer_name: str | None, unit: str,
                 higher_better: bool, target: str | None, needed: float | None, spoiled: bool) -> dict:
    """One row of the contract: medians, ratio (how many times as good as the peer), and
    ``met`` decided by the ratio (``needed``); a spoiled row (a failed check or step)
    never meets its target. Shared with bench/pop3.py."""
    a, b = median(ours), median(peer)
    ratio = (a / b if higher_better else b / a) if a and b else None
    met = None
    if target is not None and needed is not None:
        met = bool(not spoiled and ratio is not None and ratio >= needed)
    return {"figure": figure, "ledgermail": a, "peer": b, "peer_name": peer_name if peer else None,
            "unit": unit, "ratio": ratio, "target": target, "met": met,
            "runs": {"ledgermail": ours, "peer": peer}}


def json_rows(results: dict[str, Figures], args: argparse.Namespace) -> list[dict]:
    ours, peer = results.get("ledgermail"), results.get("dovecot")
    empty = Figures("-")
    a, b = ours or empty, peer or empty
    dovecot = f"Dovecot {dovecot_version()}"

    def spoiled(step: str, check: str | None, figures: tuple[Figures, ...] = (a, b)) -> bool:
        """A server failed at this step or before it, or a check of this step failed."""
        return any((f.failed_step and STEPS.index(f.failed_step) <= STEPS.index(step))
                   or (check and any(p.startswith(check) for p in f.problems)) for f in figures) \
            or ours is None

    def compared(figure: str, get: Callable[[Figures], list[float]], scale: float, unit: str,
                 higher_better: bool, step: str, check: str | None) -> dict:
        return contract_row(figure, [v * scale for v in get(a)], [v * scale for v in get(b)], dovecot,
                            unit, higher_better, ">= 0.5x", 0.5, spoiled(step, check))

    big = f"{args.big:,}"
    rows = [
        compared(f"IMAP APPEND {args.append:,} x 4 KiB", lambda f: f.append_rate, 1, "msg/s", True,
                 "step_append", None),
        compared(f"IMAP SELECT of {big}", lambda f: f.select, 1000, "ms", False, "step_read", "SELECT"),
        compared(f"IMAP FETCH envelopes of {big}", lambda f: f.envelopes, 1, "s", False, "step_read",
                 "FETCH 1:*"),
        compared(f"IMAP FETCH {args.bodies:,} bodies", lambda f: f.bodies, 1, "s", False, "step_read",
                 "FETCH BODY"),
        compared(f"IMAP SEARCH TEXT of {big}", lambda f: f.search, 1, "s", False, "step_read", "SEARCH"),
        contract_row(f"IMAP idle connection ({args.idle:,} open), RSS each",
                     [a.idle_rss_kib] if a.idle_rss_kib is not None else [],
                     [b.idle_rss_kib] if b.idle_rss_kib is not None else [],
                     f"{dovecot} (RSS summed over its processes)", "KiB", False, None, None, False),
    ]
    if args.many:
        mine = [a.many_rss_kib * 1024 / 1e6] if a.many_rss_kib is not None else []
        theirs = [many_peer(peer, args)] if many_peer(peer, args) is not None else []
        # Absolute: decided by ledgermail's figure alone.
        applies = args.many >= 10_000
        row = contract_row(f"IMAP memory of {args.many:,} idle connections", mine, theirs,
                           f"{dovecot} (extrapolated from {args.idle:,}, PSS)", "MB", False,
                           None, None, False)
        if applies:
            row["target"] = f"<= {MANY_TARGET_MB} MB"
            row["met"] = bool(mine and mine[0] <= MANY_TARGET_MB and not spoiled("step_many", None, (a,)))
        rows.append(row)
    rows.append(contract_row(f"IMAP IDLE notification p99 ({args.watchers}x{args.notify})",
                             [percentile(a.notify, 0.99) * 1000] if a.notify else [],
                             [percentile(b.notify, 0.99) * 1000] if b.notify else [],
                             f"{dovecot} (waits 500 ms by design)", "ms", False, None, None, False))
    return rows


def report(results: dict[str, Figures], args: argparse.Namespace) -> list[str]:
    ours, peer = results.get("ledgermail"), results.get("dovecot")
    lines = [f"{'':<40} {'ledgermail':>11} {'dovecot':>11}  {'unit':<5} {'ratio':>6}  target"]

    def row(label: str, unit: str, a: float | None, b: float | None, digits: int,
            ratio: float | None, target: str) -> None:
        cells = [f"{v:>11,.{digits}f}" if v is not None else f"{'-':>11}" for v in (a, b)]
        shown = f"{ratio:>5.2f}x" if ratio is not None else f"{'-':>6}"
        lines.append(f"{label:<40} {cells[0]} {cells[1]}  {unit:<5} {shown}  {target}")

    def both(get: Callable[[Figures], float | None]) -> tuple[float | None, float | None]:
        return (get(ours) if ours else None), (get(peer) if peer else None)

    def compared(label: str, unit: str, get: Callable[[Figures], list[float]], scale: float,
                 digits: int, higher_better: bool) -> None:
        a, b = both(lambda f: median(get(f)))
        ratio = (a / b if higher_better else b / a) if a and b else None
        verdict = "" if ratio is None else (" met" if ratio >= 0.5 else " MISSED")
        row(label, unit, a and a * scale, b and b * scale, digits, ratio, f">= 0.5x{verdict}")
        detail = "; ".join(f"{f.name} {runs_text(get(f), scale, digits)}"
                           for f in (ours, peer) if f and len(get(f)) > 1)
        if detail:
            lines.append(f"{'':<5}runs: {detail}")

    big = f"{args.big:,}"
    compared(f"1. APPEND {args.append:,} x 4 KiB", "msg/s", lambda f: f.append_rate, 1, 0, True)
    a, b = both(lambda f: f.fill_rate or None)
    row(f"   filling the {big} (same APPEND)", "msg/s", a, b, 0, a / b if a and b else None, "info")
    compared(f"2. SELECT of {big}", "ms", lambda f: f.select, 1000, 1, False)
    compared(f"3. FETCH 1:* (FLAGS ENVELOPE) of {big}", "s", lambda f: f.envelopes, 1, 3, False)
    compared(f"4. FETCH {args.bodies:,} x BODY.PEEK[]", "s", lambda f: f.bodies, 1, 3, False)
    compared(f"5. SEARCH TEXT (1% hits) of {big}", "s", lambda f: f.search, 1, 3, False)
    a, b = both(lambda f: f.idle_rss_kib)
    verdict = "" if a is None else (" met" if a <= 20 else " MISSED")
    row(f"6. IDLE connection ({args.idle:,}), RSS", "KiB", a, b, 1, None, f"ledgermail <= 20 KiB{verdict}")
    a, b = both(lambda f: f.idle_pss_kib)
    row("   same, PSS", "KiB", a, b, 1, None, "info")
    a = ours.many_rss_kib * 1024 / 1e6 if ours and ours.many_rss_kib is not None else None
    b = many_peer(peer, args)
    verdict = "" if a is None else (" met" if a <= MANY_TARGET_MB else " MISSED")
    row(f"8. {args.many:,} IDLE connections, server RSS", "MB", a, b, 1, b / a if a and b else None,
        f"ledgermail <= {MANY_TARGET_MB} MB{verdict}")
    if b is not None:
        lines.append(f"{'':<5}dovecot: extrapolated, PSS with {WARM_IDLERS} + {args.idle:,} per connection "
                     f"x {args.many:,} (it runs a process per connection)")
    for which, fraction in (("p50", 0.50), ("p99", 0.99)):
        a, b = both(lambda f, p=fraction: percentile(f.notify, p) * 1000 if f.notify else None)
        target = "info"
        if which == "p99":
            target = "ledgermail < 1 s"
            if a is not None:
                target += " met" if a < 1000 and not ours.notify_missed else " MISSED"
        row(f"7. IDLE notification {which} ({args.watchers}x{args.notify})", "ms", a, b, 1, None, target)
    lines.append("")
    for f in (ours, peer):
        if f is None or not f.append_mode:
            continue
        lines.append(f"{f.name}: APPEND by {f.append_mode}; IDLE memory {f.idle_note}; "
                     f"{len(f.notify)} notifications seen, {f.notify_missed} missed; "
                     f"its steps took {f.seconds:.0f} s")
        if f.many_note:
            lines.append(f"{f.name}: {f.many_note}")
    if peer:
        lines.append("dovecot memory: master + all descendants (config, log, anvil, auth, stats and one "
                     "imap process per connection; imap-login exits after login). Summed RSS counts a "
                     "shared page again in every process that maps it; PSS divides it among them. "
                     "Dovecot's IDLE waits 500 ms after a change before notifying "
                     "(NOTIFY_DELAY_MSECS), by design.")
    return lines


# -- main -----------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> tuple[dict[str, Figures], dict[str, str]]:
    """Both servers up side by side, each step run on one then the other (the order
    alternating between runs), so load from elsewhere on the machine hits both alike."""
    progress(f"generating {args.big:,} + {args.append:,} messages of {MESSAGE_SIZE} bytes")
    messages = [make_message(i) for i in range(args.big)]
    batch = [make_message(1_000_000 + i) for i in range(args.append)]
    results = {name: Figures(name) for name in args.servers}
    failures: dict[str, str] = {}
    peers = {"dovecot": dovecot_peer, "ledgermail": ledgermail_server}
    with tempfile.TemporaryDirectory(prefix="ledgermail-imap-bench-") as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        scratch.chmod(0o755)  # Dovecot's imap processes run as mail
        servers: dict[str, Served] = {}
        for name in args.servers:
            progress(f"{name}: starting (scratch {scratch})")
            try:
                servers[name] = stack.enter_context(peers[name](scratch, args))
            except (BenchError, ImapError, OSError) as error:
                failures[name] = f"{type(error).__name__}: {error}"
                results[name].failed_step = "start"
                progress(f"{name}: FAILED: {failures[name]}")

        def each(step: Callable[..., None], *extra: object, reverse: bool = False) -> None:
            names = [n for n in args.servers if n in servers and n not in failures]
            for name in reversed(names) if reverse else names:
                began = time.perf_counter()
                try:
                    step(servers[name], results[name], *extra)
                except (BenchError, ImapError, OSError) as error:
                    failures[name] = f"{type(error).__name__}: {error}\n{servers[name].describe()}"
                    results[name].failed_step = step.__name__
                    progress(f"{name}: FAILED: {failures[name]}")
                results[name].seconds += time.perf_counter() - began

        for run in range(1, args.runs + 1):
            each(step_append, run, batch, args, reverse=run % 2 == 0)
        each(step_fill, messages, args)
        for run in range(1, args.runs + 1):
            each(step_read, args.big, args, reverse=run % 2 == 0)
        each(step_memory, args)
        if args.many and "ledgermail" in servers:
            each(step_many, args)
        each(step_notify, args)
    return results, failures


FULL = {"append": 2000, "big": 10_000, "bodies": 1000, "idle": 1000, "many": 10_000, "watchers": 20,
        "notify": 50, "window": 16, "runs": 3}
QUICK = {**FULL, "append": 200, "big": 1000, "bodies": 100, "idle": 100, "notify": 10, "runs": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items()
                                                            if v != FULL[k]))
    for name, text in (("append", "messages per APPEND run"), ("big", "messages in the big mailbox"),
                       ("bodies", "bodies fetched"), ("idle", "idle IDLE connections"),
                       ("many", "IDLE connections whose total memory is taken (ledgermail; 0: skip)"),
                       ("watchers", "IDLE watchers for the latency"),
                       ("notify", "deliveries for the latency"),
                       ("window", "pipelined commands in flight"), ("runs", "repetitions of steps 1-5")):
        parser.add_argument(f"--{name}", type=int,
                            help=f"{text} ({FULL[name]:,}; quick {QUICK[name]:,})")
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
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(args.servers) - {"dovecot", "ledgermail"}:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        parser.error("run as root: it runs Dovecot, which stores mail as user mail")
    if "ledgermail" in args.servers and not LEDGERMAIL.exists():
        parser.error(f"{LEDGERMAIL} is missing: create the venv first (make lint)")
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
    # Every idle connection is a file descriptor here, and one in the server, which
    # inherits this limit (Dovecot's processes hold one each).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(args.idle + WARM_IDLERS, args.many) + args.watchers + 200
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, soft), max(wanted, hard)))
        except (ValueError, OSError) as error:
            parser.error(f"cannot raise RLIMIT_NOFILE to {wanted} ({error}); try a smaller --many")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers stopped, dirs removed
    began, load = time.perf_counter(), os.getloadavg()[0]
    try:
        if "dovecot" in args.servers:
            ensure_dovecot()
        if args.backend == "postgres" and "ledgermail" in args.servers:
            sh("psql", PG_URL, "-Atc", "SELECT 1")
        results, failures = bench(args)
    except BenchError as error:
        print(f"imap bench: {error}", file=sys.stderr)
        if args.json:
            write_json(args.json, "bench/imap.py", [], [f"imap bench: {error}"])
        return 2
    if args.json:
        write_json(args.json, "bench/imap.py", json_rows(results, args),
                   [f"{name}: {text}" for name, text in failures.items()]
                   + [f"{f.name}: {p}" for f in results.values() for p in f.problems])
    return summarize("imap", report(results, args), results, failures, args, began, load,
                     f"median of up to {args.runs} runs")


def summarize(protocol: str, lines: list[str], results: dict[str, Figures], failures: dict[str, str],
              args: argparse.Namespace, began: float, load: float, runs: str) -> int:
    """Print the header, the report lines, failures and failed checks; the exit status
    (2 when a step could not run, 1 when a check failed). Shared with bench/pop3.py."""
    print(f"\n{protocol} bench: ledgermail ({args.backend}) vs Dovecot {dovecot_version()} (maildir), "
          f"{os.cpu_count()} CPUs, {MESSAGE_SIZE} B messages, {runs}, "
          f"{time.perf_counter() - began:.0f} s in all, load average {load:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end (other work on the machine skews every figure)")
    for line in lines:
        print(line)
    for name, text in failures.items():
        print(f"{name}: FAILED: {text}")
    problems = [f"{f.name}: {p}" for f in results.values() for p in f.problems]
    for problem in problems:
        print(f"check failed: {problem}")
    if failures:
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
