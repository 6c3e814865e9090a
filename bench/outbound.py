"""Outbound queue benchmark: ledgermail's delivery queue against Postfix's, same run.

Why (issue #6, "Speed"): messages/s delivered from a full queue means little alone;
Postfix on the same hardware, delivering the same number of messages to the same sink
in the same run, is the yardstick. The figure is messages/s from "the queue is full and
the worker starts" until the sink has received every message, for ``--messages``
(10,000) messages of 4 KiB to one domain and to 100 domains.

The sink, for both: Postfix's ``smtp-sink -c -u postfix 127.0.0.1:PORT 1000``, a fresh
one for each timed run. ``-c`` prints ``sess=N quit=N mesg=N`` followed by ``\\r`` each
time a session ends, a QUIT arrives or a message's final ``.`` is received; this file
reads that stream from a pipe and stops the clock the moment ``mesg`` reaches the count
(every message has one recipient, so one ``.`` per message).

- **Postfix** (apt-get install postfix if missing): a separate instance in a scratch
  ``config_directory`` (``postfix -c DIR``), with its own queue and data directories,
  so the system's /etc/postfix and /var/spool/postfix are left alone. Configured as in
  shared/reference/peers/README.md (127.0.0.1:10025, ``in_flow_delay = 0``,
  ``default_process_limit = 100``), but relaying: ``mydestination`` empty,
  ``relayhost = [127.0.0.1]:SINK`` for one domain, ``transport_maps`` (each
  ``destK.test`` -> ``smtp:[127.0.0.1]:SINK``) for 100 domains; concurrency limits left
  at their defaults; ``chroot`` off in master.cf (a scratch queue directory has no
  /etc copies to run chrooted in). Held, then released:
  ``smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks,
  reject`` puts every accepted message in the hold queue, so ``smtp-source -s 20 -l 4096``
  fills the queue with nothing delivered (``postqueue -j`` must list N held messages;
  100 domains: one smtp-source per domain, 4 at a time). The clock starts, then
  ``postsuper -H ALL`` (hold -> deferred) and ``postqueue -f`` (deliver the deferred
  queue now), and stops when the sink has N messages. Afterwards ``postqueue -j`` must
  be empty.
- **ledgermail**: ``ledgermail serve`` on a scratch data dir (SQLite), first with
  ``LEDGERMAIL_OUTBOUND__ENABLED=false`` and only the submission listener (free port):
  ``ledgermail domain add src.test`` (which makes its DKIM keys: the worker signs mail
  From a local domain, a real cost that is kept), ``ledgermail user add
  bench@src.test``, then N 4,096-byte messages From bench@src.test to
  ``user{i}@dest{i % D}.test``, by submission (smtplib: STARTTLS, AUTH PLAIN),
  ``--connections`` (8) in parallel, many messages per connection. Every message must
  get 250; then serve is stopped and the queue, counted through the mailbox view, must
  hold N. That data dir is kept as a template and copied afresh for each run (SQLite,
  server stopped: a consistent copy), so the queue is filled once per case. Each run
  starts ``serve`` with the worker on, every listener off, defaults otherwise, routed to
  the sink: ``LEDGERMAIL_OUTBOUND__SMARTHOST=127.0.0.1:SINK`` for one domain,
  ``[outbound.routes]`` in a ``--config`` file for 100 domains. The clock starts when
  serve prints its "Ctrl-C stops" line (the worker task is created just before it)
  and stops when the sink has N messages; serve's start-up (it authenticates every
  stored event first, ``verify_on_start``) is printed apart. Afterwards serve is stopped
  and the queue must be empty; any line serve logs besides its start and stop lines is
  reported as a problem.

Concurrency, as each server is configured by default: Postfix queues by next hop, so
both cases are one destination ``[127.0.0.1]:SINK`` for its scheduler
(``default_destination_concurrency_limit`` 20, starting at 5); ledgermail counts a
smarthost as one destination and a per-domain route per domain
(``outbound.per_domain_concurrency`` 10, ``outbound.max_concurrency`` 50 in all).

Runs: ``--runs`` (3) of every case, each server in turn, the order alternating. The
default bench must end well within 30 minutes on 2 cores: at the ~350-390 msg/s
ledgermail delivers at now a ledgermail run of 10,000 takes about 30 s and the whole
bench under 10 minutes. Should it slow down, from the second run on ledgermail's part
of a run is skipped when the run would end more than ``--budget`` (25) minutes after
the start, projected from the previous run, and the output says how many runs its
medians are of (``--budget 0`` runs them all).

Run from the repository root, as root (Postfix and smtp-sink need it)::

    python3 bench/outbound.py                          # 3 runs x 10,000 messages, both cases
    python3 bench/outbound.py --messages 1000 --runs 1 # quick, about a minute
    python3 bench/outbound.py --domains 100 --servers ledgermail --keep /tmp/ob  # logs kept

Exit status 1 when a check failed (a count, a message left queued, serve logging an
error), 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp import (  # noqa: E402 - bench/ is not a package; smtp.py is beside this file
    LEDGERMAIL,
    LISTENERS,
    PYTHON,
    REPO,
    BenchError,
    ensure_postfix,
    free_port,
    progress,
    sh,
    stop,
    tail,
)

POSTFIX_PORT = 10025
SRC_DOMAIN = "src.test"
SENDER = f"bench@{SRC_DOMAIN}"
PASSWORD = "password123"
MESSAGE_SIZE = 4096
#: Seconds the sink's count may stay still before the run is declared stuck (ledgermail
#: retries a failed delivery after outbound.min_backoff, 300 s by default).
STALL = 120.0
#: smtp-source processes at once when filling Postfix's queue for many domains.
SOURCES_AT_ONCE = 4
#: Reconnect after this many messages on one submission connection.
PER_CONNECTION = 500
#: What serve prints once its listeners are bound and the worker task exists.
READY = "Ctrl-C stops"
#: Distinct records of serve's log reported per run; the rest are counted.
MAX_SHOWN = 5
#: Counted through the mailbox view, with the server stopped.
COUNT_QUEUE = """
from adapters.config import load_settings
from adapters.bootstrap import build
c = build(load_settings())
try:
    c.catch_up(timeout=600)
    print(c.mailbox_view.queue_size())
finally:
    c.close()
"""


@dataclass
class Figures:
    """One server, one case (a number of domains)."""

    name: str
    rates: list[float] = field(default_factory=list)  # msg/s per run
    startup: list[float] = field(default_factory=list)  # ledgermail: serve start to worker start, s
    with_startup: list[float] = field(default_factory=list)  # ledgermail: msg/s counting start-up
    enqueue: list[float] = field(default_factory=list)  # msg/s filling the queue (not timed against)
    seconds: list[float] = field(default_factory=list)  # wall time of each run, filling and checks included
    skipped: list[int] = field(default_factory=list)  # runs left out by --budget (ledgermail)
    problems: list[str] = field(default_factory=list)


def check(figures: Figures, ok: bool, text: str) -> None:
    if not ok:
        figures.problems.append(text)
        progress(f"CHECK FAILED ({figures.name}): {text}")


def domain_of(index: int, domains: int) -> str:
    return f"dest{index % domains}.test"


def recipient(index: int, domains: int) -> str:
    return f"user{index}@{domain_of(index, domains)}"


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_banner(port: int, alive: Callable[[], bool], what: str, timeout: float) -> None:
    """Until a ``220`` greeting comes from 127.0.0.1:port (then QUIT)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BenchError(f"{what} exited before greeting on port {port}")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if sock.recv(512).startswith(b"220"):
                sock.sendall(b"QUIT\r\n")
                return
        time.sleep(0.1)
    raise BenchError(f"{what}: no SMTP greeting on port {port} after {timeout:.0f} s")


# -- the sink -----------------------------------------------------------------------------


class Sink:
    """``smtp-sink -c`` on 127.0.0.1:port; ``count`` follows its ``mesg=`` counter."""

    def __init__(self, program: str, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.count = 0
        self.changed = time.monotonic()  # when count last moved
        self._target: int | None = None
        self._reached: float | None = None
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.process = subprocess.Popen([program, "-c", "-u", "postfix", f"127.0.0.1:{port}", "1000"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            wait_for_banner(port, lambda: self.process.poll() is None, "smtp-sink", timeout=10)
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        pending = b""
        with self.log.open("ab") as out:
            while chunk := self.process.stdout.read1(65536):
                out.write(chunk)
                pending += chunk
                *records, pending = re.split(rb"[\r\n]", pending)
                counts = [int(m.group(1)) for r in records if (m := re.search(rb"mesg=(\d+)", r))]
                if counts:
                    self._update(max(counts))

    def _update(self, count: int) -> None:
        now = time.perf_counter()
        with self._lock:
            if count != self.count:
                self.count = count
                self.changed = time.monotonic()
            if self._target is not None and self._reached is None and count >= self._target:
                self._reached = now
                self._event.set()

    def wait_for(self, target: int, alive: Callable[[], str | None], describe: Callable[[], str]) -> float:
        """perf_counter() of the moment the count reached ``target``. ``alive`` returns why
        the sender can no longer deliver (None while it can); ``describe`` its log."""
        with self._lock:
            self._target = target
            if self.count >= target:
                self._reached = time.perf_counter()
                self._event.set()
        while not self._event.wait(0.05):
            if self.process.poll() is not None:
                raise BenchError(f"smtp-sink exited {self.process.returncode}: {tail(self.log)}")
            if (why := alive()) is not None:
                raise BenchError(f"{why} with {self.count} of {target} messages at the sink; "
                                 f"{describe()}")
            if time.monotonic() - self.changed > STALL:
                raise BenchError(f"the sink has {self.count} of {target} messages and none came for "
                                 f"{STALL:.0f} s; {describe()}")
        assert self._reached is not None
        return self._reached

    def close(self) -> None:
        stop(self.process, timeout=10)
        self._reader.join(5)


# -- Postfix ------------------------------------------------------------------------------

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {home}/spool
data_directory = {home}/data
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.peer.test
mydestination =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# Every accepted message goes to the hold queue: nothing leaves before the release.
smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject
in_flow_delay = 0
default_process_limit = 100
maillog_file = /dev/stdout
{route}
"""


def postfix_version() -> str:
    done = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "?"


class Postfix:
    """A Postfix instance of its own in ``home`` (config, queue and data directories),
    on 127.0.0.1:10025, relaying everything to the sink, holding what it accepts."""

    def __init__(self, home: Path, sink_port: int, domains: int) -> None:
        self.home = home
        self.etc = home / "etc"
        self.log = home / "postfix.log"
        self.domains = domains
        self.process: subprocess.Popen | None = None
        if home.exists():
            shutil.rmtree(home)
        for sub in ("etc", "spool", "data"):
            (home / sub).mkdir(parents=True)
        home.chmod(0o755)
        (home / "spool").chmod(0o755)
        shutil.chown(home / "data", "postfix")
        for name in ("dynamicmaps.cf", "dynamicmaps.cf.d"):
            source = Path("/etc/postfix") / name
            if source.is_dir():
                shutil.copytree(source, self.etc / name)
            elif source.exists():
                shutil.copy2(source, self.etc / name)
        master = Path("/etc/postfix/master.cf").read_text()
        master, renamed = re.subn(r"^smtp(\s+inet\s)", rf"127.0.0.1:{POSTFIX_PORT}\1", master, flags=re.M)
        if renamed != 1:
            raise BenchError(f"/etc/postfix/master.cf: expected one 'smtp inet' service, found {renamed}")
        (self.etc / "master.cf").write_text(_chroot_off(master))
        if domains == 1:
            route = f"relayhost = [127.0.0.1]:{sink_port}"
        else:
            table = self.etc / "transport"
            table.write_text("".join(f"{domain_of(k, domains)} smtp:[127.0.0.1]:{sink_port}\n"
                                     for k in range(domains)))
            route = f"transport_maps = texthash:{table}"
        (self.etc / "main.cf").write_text(MAIN_CF.format(home=home, route=route))
        sh("postfix", "-c", self.etc, "check")  # creates the queue directories

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(["postfix", "-c", str(self.etc), "start-fg"], stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_banner(POSTFIX_PORT, lambda: self.process.poll() is None, f"postfix (log {self.log})",
                        timeout=30)

    def close(self) -> None:
        if self.process is None:
            return
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            stop(self.process)
        self.process = None

    def queue(self) -> list[str]:
        """The queue name of each queued message (postqueue -j)."""
        out = sh("postqueue", "-c", self.etc, "-j").stdout
        return re.findall(r'"queue_name": "(\w+)"', out)

    def alive(self) -> str | None:
        if self.process is None or self.process.poll() is not None:
            return "postfix exited"
        return None

    def describe(self) -> str:
        queued = self.queue()
        return (f"postfix queue: {len(queued)} messages ({', '.join(sorted(set(queued))) or 'empty'}); "
                f"its log ends:\n{tail(self.log)}")


def _chroot_off(master: str) -> str:
    """master.cf with the chroot column set to ``n`` on every service line."""
    out = []
    for line in master.splitlines(keepends=True):
        fields = line.split()
        if line[:1] not in ("#", " ", "\t", "\n") and len(fields) >= 8:
            fields[4] = "n"
            line = "  ".join(fields) + "\n"
        out.append(line)
    return "".join(out)


def fill_postfix(postfix: Postfix, smtp_source: str, args: argparse.Namespace, domains: int) -> float:
    """N messages into the hold queue with smtp-source; msg/s."""
    if queued := postfix.queue():
        raise BenchError(f"postfix's queue is not empty before filling it ({len(queued)} messages)")
    shares = [args.messages // domains + (1 if k < args.messages % domains else 0) for k in range(domains)]
    sessions = max(1, args.sessions // min(domains, SOURCES_AT_ONCE))

    def source(k: int) -> None:
        if shares[k]:
            sh(smtp_source, "-s", min(sessions, shares[k]), "-l", MESSAGE_SIZE, "-m", shares[k],
               "-f", SENDER, "-t", f"user@{domain_of(k, domains)}", f"127.0.0.1:{POSTFIX_PORT}")

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(domains, SOURCES_AT_ONCE)) as pool:
        list(pool.map(source, range(domains)))
    seconds = time.perf_counter() - began
    held = postfix.queue()
    if held.count("hold") != args.messages or len(held) != args.messages:
        raise BenchError(f"postfix holds {held.count('hold')} messages ({len(held)} queued) after "
                         f"smtp-source sent {args.messages}; {postfix.describe()}")
    return args.messages / seconds


def run_postfix(postfix: Postfix, smtp_source: str, sink_program: str, sink_port: int, run: int,
                figures: Figures, args: argparse.Namespace, domains: int) -> None:
    progress(f"postfix, {domains} domain(s), run {run}: filling the hold queue with {args.messages:,}")
    figures.enqueue.append(fill_postfix(postfix, smtp_source, args, domains))
    sink = Sink(sink_program, sink_port, postfix.home / f"sink-{run}.log")
    try:
        began = time.perf_counter()
        sh("postsuper", "-c", postfix.etc, "-H", "ALL")
        sh("postqueue", "-c", postfix.etc, "-f")
        ended = sink.wait_for(args.messages, postfix.alive, postfix.describe)
        figures.rates.append(args.messages / (ended - began))
        progress(f"postfix: {args.messages:,} delivered in {ended - began:.2f} s "
                 f"({figures.rates[-1]:,.0f} msg/s; filled at {figures.enqueue[-1]:,.0f} msg/s)")
        deadline = time.monotonic() + 60
        while (left := postfix.queue()) and time.monotonic() < deadline:
            time.sleep(0.2)
        check(figures, not left, f"run {run}: {len(left)} messages still in postfix's queue 60 s after "
                                 "the sink had them all")
        time.sleep(0.3)  # the last sessions' QUIT
        check(figures, sink.count == args.messages,
              f"run {run}: the sink received {sink.count} messages, {args.messages} were sent")
    finally:
        sink.close()
    if left:
        sh("postsuper", "-c", postfix.etc, "-d", "ALL")


# -- ledgermail ---------------------------------------------------------------------------


def make_message(index: int, domains: int) -> bytes:
    """Message ``index``: From the bench user, exactly MESSAGE_SIZE bytes, CRLF lines."""
    header = (f"From: Bench <{SENDER}>\r\n"
              f"To: <{recipient(index, domains)}>\r\n"
              f"Subject: Outbound bench message {index}\r\n"
              f"Date: {formatdate(1_790_000_000 + index)}\r\n"
              f"Message-ID: <outbound-{index}@{SRC_DOMAIN}>\r\n"
              "MIME-Version: 1.0\r\n"
              "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    line = (f"Line of message {index}: the quick brown fox jumps over the lazy dog. " * 2)[:76]
    body = bytearray()
    while len(header) + len(body) < MESSAGE_SIZE:
        body += line.encode() + b"\r\n"
    del body[MESSAGE_SIZE - len(header) - 2:]
    if body.endswith(b"\r"):  # a cut between CR and LF would leave a bare CR
        body[-1:] = b" "
    body += b"\r\n"
    message = header + bytes(body)
    assert len(message) == MESSAGE_SIZE, len(message)
    return message


class Serve:
    """``ledgermail serve`` with its output read from a pipe into ``log``; ``ready`` is the
    perf_counter() of its "Ctrl-C stops" line."""

    def __init__(self, env: dict[str, str], log: Path, argv: tuple[str, ...] = ()) -> None:
        self.log = log
        self.ready: float | None = None
        self.lines: list[str] = []
        self._event = threading.Event()
        self.began = time.perf_counter()
        self.process = subprocess.Popen([str(LEDGERMAIL), *argv, "serve"], env=env, cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with self.log.open("ab") as out:
            for raw in self.process.stdout:
                now = time.perf_counter()
                out.write(raw)
                out.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if READY in line and self.ready is None:
                    self.ready = now
                    self._event.set()
        self._event.set()

    def wait_ready(self, timeout: float = 300) -> float:
        if not self._event.wait(timeout) or self.ready is None:
            raise BenchError(f"ledgermail serve did not start ({self.state()}); {self.describe()}")
        return self.ready

    def state(self) -> str:
        return "running" if self.process.poll() is None else f"exited {self.process.returncode}"

    def alive(self) -> str | None:
        return None if self.process.poll() is None else f"ledgermail serve {self.state()}"

    def describe(self) -> str:
        return f"ledgermail serve ({self.state()}); its log ends:\n{tail(self.log)}"

    def close(self) -> None:
        stop(self.process, timeout=120)
        self._reader.join(10)

    def unexpected(self) -> list[str]:
        """What serve logged besides its start and stop lines, one entry per distinct
        record (ids, times and destination numbers masked, the count in front; a traceback shown by its first
        and last lines), in order of first appearance."""
        records: list[list[str]] = []
        for line in self.lines:
            if not line.strip() or line.startswith(("ledgermail serving from", "ledgermail stopped")):
                continue
            if LOG_RECORD.match(line) or not records:
                records.append([line])
            else:
                records[-1].append(line)
        seen: dict[str, int] = {}
        for record in records:
            text = record[0] if len(record) == 1 else f"{record[0]} ... {record[-1]}"
            text = DEST_TEXT.sub("dest<k>.test", UUID_TEXT.sub("<id>", LOG_RECORD.sub("", text)))
            seen[text] = seen.get(text, 0) + 1
        shown = [f"{count}x {text}" for text, count in seen.items()]
        if len(shown) > MAX_SHOWN:
            more = sum(list(seen.values())[MAX_SHOWN:])
            shown[MAX_SHOWN:] = [f"and {more} more record(s) of {len(shown) - MAX_SHOWN} other kind(s) "
                                 f"(in {self.log.name}; --keep DIR keeps it)"]
        return shown


#: The start of a record of Python's logging as serve prints it (time and level).
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
DEST_TEXT = re.compile(r"dest\d+\.test")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def base_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "LEDGERMAIL_DATA_DIR": str(data_dir)}
    env.update({f"LEDGERMAIL_LISTEN__{name.upper()}": "" for name in LISTENERS})
    return {k: v for k, v in env.items() if not k.startswith("LEDGERMAIL_OUTBOUND__")}


def queue_size(env: dict[str, str]) -> int:
    return int(sh(PYTHON, "-c", COUNT_QUEUE, env=env, cwd=REPO).stdout.split()[-1])


def submit_all(port: int, messages: list[tuple[str, bytes]], connections: int) -> None:
    """Every (recipient, message) by submission: STARTTLS, AUTH PLAIN, ``connections``
    connections at once, PER_CONNECTION messages each before reconnecting. Raises on any
    refusal (smtplib raises on every non-2xx reply)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def session(batch: list[tuple[str, bytes]]) -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.src.test", timeout=120) as client:
            client.starttls(context=context)
            client.ehlo("bench.src.test")
            client.user, client.password = SENDER, PASSWORD
            client.auth("PLAIN", client.auth_plain)
            for to, message in batch:
                refused = client.sendmail(SENDER, [to], message)
                if refused:
                    raise BenchError(f"submission refused {refused}")

    batches = [messages[i:i + PER_CONNECTION] for i in range(0, len(messages), PER_CONNECTION)]
    with ThreadPoolExecutor(max_workers=connections) as pool:
        for done in [pool.submit(session, batch) for batch in batches]:
            done.result()


def fill_ledgermail(data_dir: Path, domains: int, figures: Figures, args: argparse.Namespace) -> None:
    """A data dir whose queue holds N messages, the worker never having run."""
    port = free_port()
    env = base_env(data_dir)
    env["LEDGERMAIL_OUTBOUND__ENABLED"] = "false"
    # One sender submits the whole batch: the per-user hourly limit (issue 8) is for
    # stolen passwords, not for a benchmark.
    env["LEDGERMAIL_OUTBOUND__MAX_MESSAGES_PER_HOUR"] = "0"
    env["LEDGERMAIL_LISTEN__SUBMISSION"] = f"127.0.0.1:{port}"
    sh(LEDGERMAIL, "domain", "add", SRC_DOMAIN, env=env, cwd=REPO)
    sh(LEDGERMAIL, "user", "add", SENDER, "--password-stdin", input=f"{PASSWORD}\n", env=env, cwd=REPO)
    messages = [(recipient(i, domains), make_message(i, domains)) for i in range(args.messages)]
    serve = Serve(env, data_dir.parent / f"{data_dir.name}-fill.log")
    try:
        serve.wait_ready()
        wait_for_banner(port, lambda: serve.process.poll() is None, "ledgermail serve", timeout=60)
        progress(f"ledgermail, {domains} domain(s): submitting {args.messages:,} messages "
                 f"({args.connections} connections)")
        began = time.perf_counter()
        try:
            submit_all(port, messages, args.connections)
        except (smtplib.SMTPException, OSError) as error:
            raise BenchError(f"submission failed: {type(error).__name__}: {error}; "
                             f"{serve.describe()}") from None
        figures.enqueue.append(args.messages / (time.perf_counter() - began))
    finally:
        serve.close()
    for line in serve.unexpected():
        check(figures, False, f"serve (filling the queue) logged: {line}")
    queued = queue_size(env)
    if queued != args.messages:
        raise BenchError(f"ledgermail's queue holds {queued} messages after {args.messages} were "
                         f"submitted; {serve.describe()}")
    progress(f"ledgermail: queue full ({queued:,}), filled at {figures.enqueue[-1]:,.0f} msg/s")


def run_ledgermail(template: Path, data_dir: Path, sink_program: str, sink_port: int, run: int,
                   figures: Figures, args: argparse.Namespace, domains: int) -> None:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    shutil.copytree(template, data_dir)
    env = base_env(data_dir)
    argv: tuple[str, ...] = ()
    if domains == 1:
        env["LEDGERMAIL_OUTBOUND__SMARTHOST"] = f"127.0.0.1:{sink_port}"
    else:
        config = data_dir.parent / f"routes-{domains}.toml"
        config.write_text("[outbound.routes]\n" + "".join(
            f'"{domain_of(k, domains)}" = "127.0.0.1:{sink_port}"\n' for k in range(domains)))
        argv = ("--config", str(config))
    progress(f"ledgermail, {domains} domain(s), run {run}: starting serve with the worker on")
    sink = Sink(sink_program, sink_port, data_dir.parent / f"sink-{domains}-{run}.log")
    serve = None
    try:
        serve = Serve(env, data_dir.parent / f"{data_dir.name}-run{run}.log", argv)
        ready = serve.wait_ready()
        ended = sink.wait_for(args.messages, serve.alive, serve.describe)
        figures.rates.append(args.messages / (ended - ready))
        figures.startup.append(ready - serve.began)
        figures.with_startup.append(args.messages / (ended - serve.began))
        progress(f"ledgermail: {args.messages:,} delivered in {ended - ready:.2f} s after a "
                 f"{ready - serve.began:.2f} s start-up ({figures.rates[-1]:,.0f} msg/s)")
        serve.close()
        time.sleep(0.3)  # the last sessions' QUIT
        check(figures, sink.count == args.messages,
              f"run {run}: the sink received {sink.count} messages, {args.messages} were sent")
    finally:
        if serve is not None:
            serve.close()
        sink.close()
    for line in serve.unexpected():
        check(figures, False, f"run {run}: serve logged: {line}")
    left = queue_size(env)
    check(figures, left == 0, f"run {run}: {left} messages still in ledgermail's queue after the "
                              "sink had them all and serve stopped")


# -- report -------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def runs_text(values: list[float], digits: int = 0) -> str:
    return "/".join(f"{v:,.{digits}f}" for v in values)


def report(results: dict[int, dict[str, Figures]], args: argparse.Namespace) -> list[str]:
    lines = [f"{'case':<34} {'ledgermail':>11} {'postfix':>11}  {'unit':<5} {'ratio':>6}"]

    def row(label: str, unit: str, a: float | None, b: float | None, digits: int, ratio: bool) -> None:
        cells = [f"{v:>11,.{digits}f}" if v is not None else f"{'-':>11}" for v in (a, b)]
        shown = f"{a / b:>5.2f}x" if ratio and a and b else f"{'-':>6}"
        lines.append(f"{label:<34} {cells[0]} {cells[1]}  {unit:<5} {shown}")

    for domains, figures in results.items():
        ours, peer = figures["ledgermail"], figures["postfix"]
        label = f"{args.messages:,} x 4 KiB to {domains} domain{'s' if domains > 1 else ''}"
        row(label, "msg/s", median(ours.rates), median(peer.rates), 0, True)
        detail = "; ".join(f"{f.name} {runs_text(f.rates)}" for f in (ours, peer) if f.rates)
        if detail:
            lines.append(f"{'':<5}runs: {detail}")
        row("   ledgermail counting start-up", "msg/s", median(ours.with_startup), None, 0, False)
        row("   ledgermail start-up (serve)", "s", median(ours.startup), None, 2, False)
        row("   filling the queue (info)", "msg/s", median(ours.enqueue), median(peer.enqueue), 0, False)
    lines.append("")
    for domains, figures in results.items():
        ours = figures["ledgermail"]
        if ours.skipped:
            took = f"{median(ours.seconds):,.0f} s" if ours.seconds else "?"
            lines.append(f"ledgermail, {domains} domain(s): {len(ours.rates)} of {args.runs} runs; a run of "
                         f"{args.messages:,} took {took} here (start-up and checks included), so run(s) "
                         f"{', '.join(map(str, ours.skipped))} were skipped to end within --budget "
                         f"{args.budget:g} min (--budget 0 runs them all)")
    lines.append("msg/s: from the release (postfix: postsuper -H ALL + postqueue -f; ledgermail: serve's "
                 "worker start, its start-up apart) until smtp-sink had every message; ratio is "
                 "ledgermail/postfix. ledgermail fills by submission (STARTTLS + AUTH, "
                 f"{args.connections} connections) and DKIM-signs as it sends; postfix fills with "
                 f"smtp-source ({args.sessions} sessions) into its hold queue. Concurrency as each "
                 "is configured by default: postfix 20 per next hop (all cases are one next hop, "
                 "[127.0.0.1]:sink); ledgermail 10 per smarthost / per routed domain, 50 in all.")
    return lines


def summarize(lines: list[str], results: dict[int, dict[str, Figures]], failures: dict[str, str],
              args: argparse.Namespace, began: float, load: float) -> int:
    """As bench/imap.py's summarize (which names Dovecot): header, report, failures and
    failed checks; the exit status (2 when a step could not run, 1 when a check failed)."""
    print(f"\noutbound bench: ledgermail (sqlite) vs Postfix {postfix_version()}, to smtp-sink, "
          f"{os.cpu_count()} CPUs, {MESSAGE_SIZE} B messages, median of up to {args.runs} runs, "
          f"{time.perf_counter() - began:.0f} s in all, load average {load:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end (other work on the machine skews every figure)")
    for line in lines:
        print(line)
    for name, text in failures.items():
        print(f"{name}: FAILED: {text}")
    problems = [f"{f.name}, {d} domain(s): {p}" for d, figures in results.items()
                for f in figures.values() for p in f.problems]
    for problem in problems:
        print(f"check failed: {problem}")
    if failures:
        return 2
    return 1 if problems else 0


# -- main ---------------------------------------------------------------------------------


@contextmanager
def scratch_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        keep.chmod(0o755)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="ledgermail-outbound-bench-") as tmp:
        Path(tmp).chmod(0o755)  # Postfix's processes run as postfix
        yield Path(tmp)


def bench(args: argparse.Namespace, smtp_source: str, sink_program: str
          ) -> tuple[dict[int, dict[str, Figures]], dict[str, str]]:
    """Fill ledgermail's queue once per case (a template data dir), then for each run
    every case, each server in turn (the order alternating between runs), so load from
    elsewhere on the machine falls on both alike and, when ``--budget`` cuts
    ledgermail's runs short, every case keeps the same number of runs."""
    results = {domains: {name: Figures(name) for name in ("ledgermail", "postfix")}
               for domains in args.domains}
    failures: dict[str, str] = {}
    sink_port = free_port(12625)
    with scratch_dir(args.keep) as scratch:
        progress(f"scratch {scratch}; sink on 127.0.0.1:{sink_port}")
        for domains in args.domains if "ledgermail" in args.servers else ():
            data_dir = scratch / f"ledgermail-{domains}"
            try:
                fill_ledgermail(data_dir, domains, results[domains]["ledgermail"], args)
                shutil.copytree(data_dir, scratch / f"ledgermail-{domains}.template")
            except (BenchError, OSError, smtplib.SMTPException) as error:
                failures[f"ledgermail, {domains} domain(s)"] = f"{type(error).__name__}: {error}"
                progress(f"ledgermail: FAILED: {error}")
        for run in range(1, args.runs + 1):
            # A round of every case, ledgermail's part only if it ends within --budget
            # (projected from the previous round).
            elapsed = time.perf_counter() - args.began
            projected = elapsed + sum(f.seconds[-1] for figures in results.values()
                                      for f in figures.values() if f.seconds)
            ours = "ledgermail" in args.servers and not (args.budget and projected > args.budget * 60)
            if "ledgermail" in args.servers and not ours:
                progress(f"run {run}: ledgermail skipped, the round would end past --budget "
                         f"{args.budget:g} min ({projected / 60:.1f} min)")
            for domains in args.domains:
                if not ours:
                    results[domains]["ledgermail"].skipped.append(run)
                one_run(scratch, sink_port, run, domains, results[domains], failures, args,
                        smtp_source, sink_program, ours)
    return results, failures


def one_run(scratch: Path, sink_port: int, run: int, domains: int, figures: dict[str, Figures],
            failures: dict[str, str], args: argparse.Namespace, smtp_source: str, sink_program: str,
            ours: bool) -> None:
    case = f"{domains} domain(s)"
    data_dir = scratch / f"ledgermail-{domains}"
    with ExitStack() as stack:

        def postfix_step() -> None:
            began = time.perf_counter()
            postfix = Postfix(scratch / f"postfix-{domains}", sink_port, domains)
            stack.callback(postfix.close)
            postfix.start()
            run_postfix(postfix, smtp_source, sink_program, sink_port, run, figures["postfix"], args, domains)
            postfix.close()
            figures["postfix"].seconds.append(time.perf_counter() - began)

        def ledgermail_step() -> None:
            began = time.perf_counter()
            run_ledgermail(scratch / f"ledgermail-{domains}.template", data_dir, sink_program, sink_port,
                           run, figures["ledgermail"], args, domains)
            figures["ledgermail"].seconds.append(time.perf_counter() - began)

        steps = [("postfix", postfix_step), ("ledgermail", ledgermail_step)]
        for name, step in (reversed(steps) if run % 2 == 0 else steps):
            if name not in args.servers or f"{name}, {case}" in failures or (name == "ledgermail"
                                                                              and not ours):
                continue
            try:
                step()
            except (BenchError, OSError, smtplib.SMTPException) as error:
                failures[f"{name}, {case}"] = f"run {run}: {type(error).__name__}: {error}"
                progress(f"{name}: FAILED: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages per run (default 10000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per server and case (default 3)")
    parser.add_argument("--domains", default="1,100",
                        help="comma-separated destination domain counts, one case each (default 1,100)")
    parser.add_argument("--connections", type=int, default=8,
                        help="parallel submission connections filling ledgermail's queue (default 8)")
    parser.add_argument("--sessions", type=int, default=20,
                        help="smtp-source sessions filling postfix's queue (default 20)")
    parser.add_argument("--budget", type=float, default=25.0,
                        help="minutes: from the second run on, ledgermail's part of a run (every case) is "
                             "skipped, and said so, when the run would end later than this after the "
                             "start, projected from the previous one (default 25; 0: no limit)")
    parser.add_argument("--servers", default="postfix,ledgermail",
                        help="comma-separated, either or both (default postfix,ledgermail)")
    parser.add_argument("--keep", type=Path,
                        help="work in this directory and leave it (logs, data dirs) instead of a "
                             "temporary one")
    args = parser.parse_args(argv)
    try:
        args.domains = [int(d) for d in args.domains.split(",") if d.strip()]
    except ValueError:
        parser.error("--domains: comma-separated numbers")
    args.servers = {s.strip() for s in args.servers.split(",") if s.strip()}
    if not args.servers or args.servers - {"postfix", "ledgermail"}:
        parser.error("--servers: postfix, ledgermail or both")
    if not args.domains or min(args.domains) < 1 or args.messages < 1 or args.runs < 1:
        parser.error("--messages, --runs and every --domains count must be at least 1")
    if os.geteuid() != 0:
        parser.error("run as root: Postfix and smtp-sink need it")
    if not LEDGERMAIL.exists():
        parser.error(f"{LEDGERMAIL} is missing: create the venv first (make lint)")
    # SIGTERM unwinds like Ctrl-C: serve, Postfix and the sink are stopped, dirs removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began, load = time.perf_counter(), os.getloadavg()[0]
    args.began = began
    try:
        smtp_source = ensure_postfix()
        sink_program = str(Path(smtp_source).with_name("smtp-sink"))
        if port_taken(POSTFIX_PORT):
            raise BenchError(f"something already listens on 127.0.0.1:{POSTFIX_PORT} "
                             "(a Postfix left running? postfix stop)")
        results, failures = bench(args, smtp_source, sink_program)
    except BenchError as error:
        print(f"outbound bench: {error}", file=sys.stderr)
        return 2
    return summarize(report(results, args), results, failures, args, began, load)


if __name__ == "__main__":
    sys.exit(main())
