"""End-to-end benchmark: SMTP in, visible in IMAP, ledgermail against Postfix + Dovecot.

Why: bench/smtp.py times intake and bench/imap.py times reading, each alone. What a user
notices is the sum: a message sent to them, until their mail client shows it. ledgermail
does that in one process (its SMTP ``250`` commits the message to the mailbox, and the
IMAP view follows from the same store); the classic stack hands the message on twice
(Postfix queues it, delivers it over LMTP to Dovecot, which writes the Maildir that its
IMAP server then reads). Both are timed the same way, on the same machine, in the same run.

How, for each of ``--runs`` (3) runs, the two stacks one after the other (the order
alternating between runs):

- **Postfix + Dovecot** (apt-get install postfix dovecot-imapd dovecot-lmtpd if missing).
  Dovecot in a scratch dir (configured as in shared/reference/peers/dovecot.conf) serves
  IMAP on a free loopback port and LMTP on a unix socket. Postfix is an instance of its
  own (``postfix -c DIR``: its own config, queue and data directories, so /etc/postfix
  and the system queue are left alone) receiving on 127.0.0.1:10025 (another free port
  if that one is taken) and delivering ``example.test`` with
  ``virtual_transport = lmtp:unix:DOVECOT/run/lmtp``. Both run for the whole benchmark;
  each run has a recipient of its own (``userN@example.test``), so a fresh Maildir.
- **ledgermail** ``serve`` on a fresh data dir (SQLite) per run, with only its SMTP and
  IMAP listeners on, on free ports; antiabuse off (as bench/smtp.py: the peer filters
  nothing either) and a cheap Argon2 for the one login (as bench/imap.py).

A run: an IMAP client logs in as ``userN@example.test``, SELECTs INBOX (it must be empty),
then the clock starts and ``smtp-source -s 20 -l 4096 -m N`` (N = ``--messages``, 5,000;
one connection per message) sends to that user, while the client polls with NOOP (every
10 ms) and reads the ``* n EXISTS`` updates. The clock stops when EXISTS reaches N:
msg/s = N / that time. Checks afterwards (a run that fails one makes the figure fail):
smtp-source exited 0; a new IMAP connection's ``STATUS INBOX (MESSAGES)`` is exactly N
(smtp-source exits 0 even when every RCPT is refused, and a duplicate would show as
N+1); for the peer also the Maildir holds exactly N files and Postfix's queue is empty.
No progress for 60 s ends the run as a failure. The ratio is ledgermail/peer (target
``>= 1.5x``).

Run from the repository root, as root (Postfix and Dovecot need it)::

    python3 bench/end_to_end.py                        # 3 runs x 5,000 messages
    python3 bench/end_to_end.py --quick                # 1 run x 500
    python3 bench/end_to_end.py --runs 1 --json out.json

``--json FILE`` writes the result as bench/all.py reads it (its docstring has the contract).
Exit status 1 when a check failed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap import (  # noqa: E402 - bench/ is not a package; imap.py is beside this file
    DOVECOT_CONF,
    LEDGERMAIL,
    BenchError,
    Imap,
    ImapError,
    descendants,
    listening_pids,
    progress,
    sh,
    stop,
    tail,
)

DOMAIN = "example.test"
RECIPIENT = "user{run}@" + DOMAIN  # a user of its own per run
SENDER = "bench@src.test"
PASSWORD = "password123"
POSTFIX_PORT = 10025
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")
TARGET = 1.5
STALL = 60.0  # seconds without a new message before a run is declared failed
POLL = 0.01  # seconds between NOOPs
FIGURE = "SMTP to visible in IMAP, {n:,} x 4 KiB"
PEER_NAME = "Postfix+Dovecot LMTP"

#: What bench/imap.py's Dovecot configuration (imap.DOVECOT_CONF) gets added for LMTP.
LMTP_SERVICE = """\
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
"""

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
smtpd_recipient_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = static:ok
virtual_transport = lmtp:unix:{lmtp}
in_flow_delay = 0
default_process_limit = 100
maillog_file = /dev/stdout
# Nothing leaves this machine, not even a bounce.
default_transport = error:the benchmark peer delivers locally only
relay_transport = error:the benchmark peer delivers locally only
"""


class CheckFailed(Exception):
    """A run finished but its numbers do not match."""


# -- helpers --------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_handed_out: set[int] = set()


def free_port(first: int) -> int:
    """A free port at or above ``first`` (below the ephemeral range smtp-source churns),
    not handed out before by this process."""
    for port in range(first, first + 1000):
        if port not in _handed_out and port_free(port):
            _handed_out.add(port)
            return port
    raise BenchError(f"no free port in {first}-{first + 999}")


def wait_banner(port: int, prefix: bytes, alive: Callable[[], str | None], logs: list[Path],
                timeout: float, bye: bytes, root: int) -> None:
    """Until a greeting starting with ``prefix`` comes from 127.0.0.1:port, from a
    listener of process ``root`` or one below it (other benchmarks may run at the same
    time and take a port between our check and our bind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (dead := alive()) is not None:
            raise BenchError(f"{dead}: " + "\n".join(tail(log) for log in logs))
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if sock.recv(512).startswith(prefix):
                sock.sendall(bye)
                if listening_pids(port) & set(descendants(root)):
                    return
                raise BenchError(f"127.0.0.1:{port} answers, but not from our server (another "
                                 "benchmark took the port?): " + "\n".join(tail(log) for log in logs))
        time.sleep(0.2)
    raise BenchError(f"no greeting on 127.0.0.1:{port} after {timeout:.0f} s: "
                     + "\n".join(tail(log) for log in logs))


def apt_install(*packages: str) -> None:
    """apt-get install, waiting for the dpkg lock (others may be installing), with an
    apt-get update first if the package lists are stale."""
    progress(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ("-o", "DPkg::Lock::Timeout=600")
    try:
        sh("apt-get", *lock, "install", "-y", *packages, env=env)
    except BenchError:
        sh("apt-get", *lock, "update", env=env)
        sh("apt-get", *lock, "install", "-y", *packages, env=env)


def ensure_dovecot(*protocols: str) -> None:
    """Dovecot with the servers of ``protocols`` (imap, lmtp, pop3), from apt-get if missing."""
    missing = [f"dovecot-{p}d" for p in protocols if not Path(f"/usr/lib/dovecot/{p}").exists()]
    if missing or not shutil.which("doveadm", path="/usr/sbin:/usr/bin"):
        apt_install(*(missing or ["dovecot-core"]))


def ensure_postfix() -> str:
    """The path of smtp-source, installing Postfix (which ships it) if missing."""
    found = shutil.which("smtp-source", path="/usr/sbin:/usr/bin")
    if not (found and shutil.which("postfix", path="/usr/sbin:/usr/bin")):
        apt_install("postfix")
    return shutil.which("smtp-source", path="/usr/sbin:/usr/bin") or "/usr/sbin/smtp-source"


def dovecot_version() -> str:
    done = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout else "?"


def postfix_version() -> str:
    done = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "?"


# -- IMAP ---------------------------------------------------------------------------------


def imap_login(port: int, user: str, password: str = PASSWORD) -> Imap:
    client = Imap(port)
    try:
        client.command(f'LOGIN "{user}" "{password}"')
        caps: list[bytes] = []
        client.command("CAPABILITY", caps.append)
        for line in caps:
            if line.upper().startswith(b"* CAPABILITY "):
                client.capabilities |= set(line[13:].decode().upper().split())
    except BaseException:
        client.close()
        raise
    return client


def imap_messages(port: int, user: str, mailbox: str = "INBOX") -> int:
    """``STATUS mailbox (MESSAGES)`` on a new connection."""
    client = imap_login(port, user)
    try:
        lines: list[bytes] = []
        client.command(f'STATUS "{mailbox}" (MESSAGES)', lines.append)
        found = re.search(rb"MESSAGES (\d+)", b"".join(lines))
        if not found:
            raise ImapError(f"STATUS {mailbox}: no MESSAGES in {b''.join(lines)[:200]!r}")
        client.command("LOGOUT")
        return int(found.group(1))
    finally:
        client.close()


# -- Dovecot --------------------------------------------------------------------------------


@dataclass
class Dovecot:
    """Dovecot in the foreground in ``home`` (its master is ``process``), IMAP on
    ``port``; LMTP on the unix socket ``lmtp`` when asked for."""

    home: Path
    port: int
    users: list[str]
    lmtp: bool = True
    process: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.home / "dovecot.conf"

    @property
    def log(self) -> Path:
        return self.home / "dovecot.log"

    @property
    def lmtp_socket(self) -> Path:
        return self.home / "run" / "lmtp"

    def maildir(self, user: str) -> Path:
        return self.home / "mail" / user

    def start(self) -> None:
        mail = pwd.getpwnam("mail")
        for sub in ("run", "state", "mail"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        os.chown(self.home / "mail", mail.pw_uid, mail.pw_gid)
        self.home.chmod(0o755)
        (self.home / "users").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}\n" for u in self.users))
        # Dovecot's default limits (1000 clients, 100 processes), as this file used before.
        self.conf.write_text(DOVECOT_CONF.format(
            dir=self.home, uid=mail.pw_uid, port=self.port, clients=1000, processes=100,
            protocols="imap lmtp" if self.lmtp else "imap", extra=LMTP_SERVICE if self.lmtp else ""))
        output = self.home / "dovecot.out"
        with output.open("ab") as out:
            self.process = subprocess.Popen(["dovecot", "-F", "-c", str(self.conf)], stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_banner(self.port, b"* OK", self.dead, [output, self.log], 30, b"a LOGOUT\r\n",
                        self.process.pid)
            if self.lmtp:
                deadline = time.monotonic() + 10
                while not self.lmtp_socket.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not self.lmtp_socket.exists():
                    raise BenchError(f"dovecot: no LMTP socket {self.lmtp_socket}: {tail(self.log)}")
        except BaseException:
            self.close()
            raise

    def dead(self) -> str | None:
        if self.process is None or self.process.poll() is not None:
            return "dovecot exited"
        return None

    def close(self) -> None:
        if self.process is None:
            return
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], capture_output=True)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            stop(self.process)
        self.process = None
        problems = [line for line in (self.log.read_text(errors="replace") if self.log.exists() else "")
                    .splitlines() if any(w in line for w in ("Error", "Fatal", "Panic"))]
        if problems:
            progress("dovecot's log has errors:\n    " + "\n    ".join(problems[-10:]))

    def maildir_files(self, user: str) -> int:
        """Messages in the user's Maildir INBOX (new/ and cur/)."""
        box = self.maildir(user)
        return sum(len(os.listdir(box / sub)) for sub in ("new", "cur") if (box / sub).is_dir())


# -- Postfix --------------------------------------------------------------------------------


class Postfix:
    """A Postfix instance of its own in ``home`` (config, queue and data directories),
    receiving on 127.0.0.1:``port`` and delivering ``DOMAIN`` over LMTP to ``lmtp``."""

    def __init__(self, home: Path, port: int, lmtp: Path) -> None:
        self.home = home
        self.etc = home / "etc"
        self.port = port
        self.log = home / "postfix.log"
        self.process: subprocess.Popen | None = None
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
        # The smtpd inet service (bench/smtp.py renames it to 10025 while it runs).
        master, renamed = re.subn(r"^\S+(\s+inet\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+smtpd\s*$)",
                                  rf"127.0.0.1:{port}\1", master, count=1, flags=re.M)
        if renamed != 1:
            raise BenchError("/etc/postfix/master.cf: no smtpd inet service found")
        (self.etc / "master.cf").write_text(_chroot_off(master))
        (self.etc / "main.cf").write_text(MAIN_CF.format(home=home, domain=DOMAIN, lmtp=lmtp))
        sh("postfix", "-c", self.etc, "check")  # creates the queue directories

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(["postfix", "-c", str(self.etc), "start-fg"], stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_banner(self.port, b"220", self.dead, [self.log], 30, b"QUIT\r\n", self.process.pid)
        except BaseException:
            self.close()
            raise

    def dead(self) -> str | None:
        if self.process is None or self.process.poll() is not None:
            return "postfix exited"
        return None

    def close(self) -> None:
        if self.process is None:
            return
        subprocess.run(["postsuper", "-c", str(self.etc), "-d", "ALL"], capture_output=True)
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            stop(self.process)
        self.process = None

    def queued(self) -> int:
        return len(sh("postqueue", "-c", self.etc, "-j").stdout.splitlines())


def _chroot_off(master: str) -> str:
    """master.cf with the chroot column set to ``n`` on every service line (the LMTP
    client must reach Dovecot's socket outside the chroot)."""
    out = []
    for line in master.splitlines(keepends=True):
        fields = line.split()
        if line[:1] not in ("#", " ", "\t", "\n") and len(fields) >= 8:
            fields[4] = "n"
            line = "  ".join(fields) + "\n"
        out.append(line)
    return "".join(out)


# -- ledgermail -----------------------------------------------------------------------------


def ledgermail_env(data_dir: Path, listen: dict[str, int]) -> dict[str, str]:
    """Every listener off but those of ``listen`` (name -> port on 127.0.0.1); antiabuse
    off; a cheap Argon2 for the bench user's password (one login per run is timed by
    nobody, but 64 MiB x 3 passes per login would slow the set-up)."""
    env = {**os.environ, "LEDGERMAIL_DATA_DIR": str(data_dir)}
    env.update({f"LEDGERMAIL_LISTEN__{name.upper()}": "" for name in LISTENERS})
    for name, port in listen.items():
        env[f"LEDGERMAIL_LISTEN__{name.upper()}"] = f"127.0.0.1:{port}"
    env["LEDGERMAIL_ANTIABUSE__ENABLED"] = "false"
    env["LEDGERMAIL_CRYPTO__PASSWORD_MEMORY_KIB"] = "1024"
    env["LEDGERMAIL_CRYPTO__PASSWORD_TIME_COST"] = "1"
    return env


@contextmanager
def ledgermail_serve(data_dir: Path, listen: dict[str, int], users: list[str]) -> Iterator[dict[str, str]]:
    """``ledgermail serve`` on a fresh data dir with ``users`` created; yields its env."""
    env = ledgermail_env(data_dir, listen)
    sh(LEDGERMAIL, "domain", "add", DOMAIN, env=env, cwd=data_dir.parent)
    for user in users:
        sh(LEDGERMAIL, "user", "add", user, "--password-stdin", input=f"{PASSWORD}\n", env=env,
           cwd=data_dir.parent)
    log = data_dir.parent / f"{data_dir.name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen([LEDGERMAIL, "serve"], env=env, cwd=data_dir.parent, stdout=out,
                                   stderr=subprocess.STDOUT)

    def dead() -> str | None:
        return None if process.poll() is None else f"ledgermail serve exited {process.returncode}"

    try:
        deadline = time.monotonic() + 120
        while b"Ctrl-C stops" not in log.read_bytes() and time.monotonic() < deadline:
            if dead():
                raise BenchError(f"{dead()}: {tail(log)}")
            time.sleep(0.2)
        for name, port in listen.items():
            prefix, bye = (b"220", b"QUIT\r\n") if name == "smtp" else (b"* OK", b"a LOGOUT\r\n")
            wait_banner(port, prefix, dead, [log], max(5.0, deadline - time.monotonic()), bye,
                        process.pid)
        env["BENCH_LOG"] = str(log)
        yield env
        if dead():
            raise BenchError(f"{dead()} during the run: {tail(log)}")
    finally:
        stop(process)


# -- one run --------------------------------------------------------------------------------


def deliver_and_watch(smtp_port: int, imap_port: int, recipient: str, args: argparse.Namespace,
                      stalled: Callable[[], str] = str) -> float:
    """Log in, SELECT INBOX, start smtp-source, NOOP until EXISTS reaches N; seconds from
    the start of sending until then. ``stalled()`` adds to the message of a stall."""
    n = args.messages
    client = imap_login(imap_port, recipient)
    sender = None
    try:
        exists = [0]

        def untagged(line: bytes) -> None:
            if found := re.match(rb"\* (\d+) EXISTS", line):
                exists[0] = int(found.group(1))

        client.command('SELECT "INBOX"', untagged)
        if exists[0] != 0:
            raise BenchError(f"INBOX holds {exists[0]} messages before the run; expected 0")
        began = time.perf_counter()
        sender = subprocess.Popen(
            [args.smtp_source, "-s", str(args.sessions), "-l", str(args.size), "-m", str(n),
             "-f", SENDER, "-t", recipient, f"127.0.0.1:{smtp_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        last, last_change = 0, time.monotonic()
        while exists[0] < n:
            client.command("NOOP", untagged)
            if exists[0] != last:
                last, last_change = exists[0], time.monotonic()
            elif time.monotonic() - last_change > STALL:
                state = "running" if sender.poll() is None else f"exited {sender.returncode}"
                raise CheckFailed(f"{exists[0]} of {n} messages visible, none more for {STALL:.0f} s "
                                  f"(smtp-source {state}; STATUS on a new connection: "
                                  f"{imap_messages(imap_port, recipient)}{stalled()})")
            time.sleep(POLL)
        seconds = time.perf_counter() - began
        output = sender.communicate(timeout=120)[0].decode(errors="replace")
        if sender.returncode != 0:
            raise CheckFailed(f"smtp-source exited {sender.returncode}: {output.strip()[-500:]}")
        if exists[0] != n:
            raise CheckFailed(f"IMAP EXISTS went to {exists[0]}, expected {n}")
        client.command("LOGOUT")
        return seconds
    finally:
        client.close()
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait()


def run_peer(dovecot: Dovecot, postfix: Postfix, run: int, args: argparse.Namespace) -> float:
    """msg/s through Postfix and Dovecot; checks the counts."""
    recipient = RECIPIENT.format(run=run)
    if dovecot.maildir(recipient).exists():
        raise BenchError(f"{dovecot.maildir(recipient)} exists before the run")
    if postfix.queued():
        raise BenchError(f"postfix's queue holds {postfix.queued()} messages before the run")

    def stalled() -> str:
        return f"; Maildir {dovecot.maildir_files(recipient)} files; postfix queue {postfix.queued()}"

    seconds = deliver_and_watch(postfix.port, dovecot.port, recipient, args, stalled)
    time.sleep(1.0)  # a duplicate or a straggler would show now
    seen = imap_messages(dovecot.port, recipient)
    files = dovecot.maildir_files(recipient)
    queued = postfix.queued()
    if not seen == files == args.messages or queued:
        raise CheckFailed(f"peer: STATUS INBOX {seen}, Maildir {files} files, {queued} still queued; "
                          f"expected {args.messages}, {args.messages}, 0")
    return args.messages / seconds


def run_ledgermail(scratch: Path, run: int, args: argparse.Namespace) -> float:
    """msg/s through ledgermail serve (fresh store); checks the count."""
    smtp_port, imap_port = free_port(13100), free_port(13200)
    data_dir = scratch / f"ledgermail-{run}"
    recipient = RECIPIENT.format(run=run)
    with ledgermail_serve(data_dir, {"smtp": smtp_port, "imap": imap_port}, [recipient]) as env:
        try:
            seconds = deliver_and_watch(smtp_port, imap_port, recipient, args)
            time.sleep(1.0)
            seen = imap_messages(imap_port, recipient)
        except (CheckFailed, ImapError, OSError) as error:
            raise CheckFailed(f"ledgermail: {error}; its log ends:\n{tail(Path(env['BENCH_LOG']))}") from None
    if seen != args.messages:
        raise CheckFailed(f"ledgermail: STATUS INBOX {seen}, expected {args.messages}")
    return args.messages / seconds


# -- report ---------------------------------------------------------------------------------


@dataclass
class Results:
    ledgermail: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def write_json(path: Path, script: str, rows: list[dict], failures: list[str]) -> None:
    path.write_text(json.dumps({"script": script, "rows": rows, "failures": failures}, indent=2) + "\n")


def bench(args: argparse.Namespace) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="ledgermail-e2e-bench-") as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        scratch.chmod(0o755)  # Dovecot's processes run as mail, Postfix's as postfix
        dovecot = Dovecot(scratch / "dovecot", free_port(13143),
                          [RECIPIENT.format(run=run) for run in range(1, args.runs + 1)])
        stack.callback(dovecot.close)
        port = POSTFIX_PORT if port_free(POSTFIX_PORT) else free_port(13025)
        if port != POSTFIX_PORT:
            progress(f"127.0.0.1:{POSTFIX_PORT} is taken: Postfix listens on {port}")
        progress(f"starting Dovecot (IMAP 127.0.0.1:{dovecot.port}, LMTP) and Postfix "
                 f"(127.0.0.1:{port}) in {scratch}")
        try:
            dovecot.start()
            postfix = Postfix(scratch / "postfix", port, dovecot.lmtp_socket)
            stack.callback(postfix.close)
            postfix.start()
        except (BenchError, OSError) as error:
            results.failures.append(f"peer could not start: {error}")
            postfix = None
        for run in range(1, args.runs + 1):
            order = ["peer", "ledgermail"] if run % 2 else ["ledgermail", "peer"]
            for name in order:
                if name == "peer" and postfix is None:
                    continue
                progress(f"run {run}/{args.runs}: {name}, {args.messages:,} messages")
                try:
                    if name == "peer":
                        rate = run_peer(dovecot, postfix, run, args)
                        results.peer.append(rate)
                    else:
                        rate = run_ledgermail(scratch, run, args)
                        results.ledgermail.append(rate)
                    print(f"run {run}: {name:<10} {rate:8,.1f} msg/s", flush=True)
                except (BenchError, CheckFailed, ImapError, OSError) as error:
                    text = f"run {run}: {name}: {type(error).__name__}: {error}"
                    if name == "peer":
                        text += (f"\npostfix log ends:\n{tail(postfix.log)}"
                                 f"\ndovecot log ends:\n{tail(dovecot.log)}")
                    results.failures.append(text)
                    progress(f"FAILED: {text}")
    return results


def row(results: Results, args: argparse.Namespace) -> dict:
    ours, peer = median(results.ledgermail), median(results.peer)
    ratio = ours / peer if ours and peer else None
    complete = len(results.ledgermail) == len(results.peer) == args.runs and not results.failures
    return {"figure": FIGURE.format(n=args.messages), "ledgermail": ours, "peer": peer,
            "peer_name": PEER_NAME, "unit": "msg/s", "ratio": ratio, "target": f">= {TARGET}x",
            "met": bool(complete and ratio is not None and ratio >= TARGET),
            "runs": {"ledgermail": results.ledgermail, "peer": results.peer}}


FULL = {"messages": 5000, "runs": 3}
QUICK = {"messages": 500, "runs": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 messages, 1 run")
    parser.add_argument("--messages", type=int, help="messages per run (5,000; quick 500)")
    parser.add_argument("--runs", type=int, help="repetitions, medians taken (3; quick 1)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions (20)")
    parser.add_argument("--size", type=int, default=4096, help="message length in bytes (4096)")
    parser.add_argument("--json", type=Path, help="write the result here (bench/all.py's contract)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if os.geteuid() != 0:
        parser.error("run as root: it runs Postfix and Dovecot")
    if not LEDGERMAIL.exists():
        parser.error(f"{LEDGERMAIL} is missing: create the venv first (make lint)")
    # SIGTERM unwinds like Ctrl-C: servers stopped, scratch dirs removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began, load = time.perf_counter(), os.getloadavg()[0]
    try:
        args.smtp_source = ensure_postfix()
        ensure_dovecot("imap", "lmtp")
        results = bench(args)
        status = 1 if results.failures else 0
    except BenchError as error:
        results = Results(failures=[f"could not run: {error}"])
        status = 2
    result = row(results, args)
    if args.json:
        write_json(args.json, "bench/end_to_end.py", [result], results.failures)
    print(f"\nend-to-end bench: ledgermail (sqlite) vs Postfix {postfix_version()} -> LMTP -> "
          f"Dovecot {dovecot_version()} (maildir), {args.messages:,} x {args.size} B messages, "
          f"smtp-source -s {args.sessions}, IMAP NOOP every {POLL * 1000:.0f} ms, {os.cpu_count()} CPUs, "
          f"{time.perf_counter() - began:.0f} s in all, load average {load:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end")
    for text in results.failures:
        print(f"FAILED: {text}")
    ours, peer, ratio = result["ledgermail"], result["peer"], result["ratio"]

    def shown(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    runs = "; ".join(f"{name} {'/'.join(f'{v:,.0f}' for v in values)}"
                     for name, values in (("ledgermail", results.ledgermail), ("peer", results.peer))
                     if values)
    print(f"runs: {runs or 'none'}")
    print(f"{result['figure']}: ledgermail {shown(ours, ',.0f')} msg/s, {PEER_NAME} {shown(peer, ',.0f')} "
          f"msg/s, ratio {shown(ratio, '.2f')}x (target {result['target']}: "
          f"{'met' if result['met'] else 'NOT met'}), median of {args.runs}")
    return status


if __name__ == "__main__":
    sys.exit(main())
