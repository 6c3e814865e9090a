"""SMTP intake benchmark: ledgermail against Postfix, on this machine, in the same run.

Why: a messages/s figure means little alone; Postfix on the same hardware, fed by the
same load tool in the same run, is the yardstick. Postfix's ``250`` means the message is
fsynced in its queue; delivery to the mailbox follows. ledgermail's ``250`` means the
message is already committed to the mailbox (DESIGN §2): accepted == delivered. So
Postfix gets two figures, accepted/s (``smtp-source`` wall time) and delivered/s (until
every message is in the Maildir and ``postqueue -j`` is empty), and the ratio is taken
against delivered/s: message in the recipient's mailbox, in both cases.

How, for each of ``--runs`` (3) runs, the two servers one after the other:

- **Postfix** (installed with apt-get if missing) on 127.0.0.1:10025, delivering to a
  virtual Maildir in a scratch dir, as in shared/reference/peers/README.md. Its
  main.cf and master.cf are backed up and restored, and it is stopped at the end.
- **ledgermail** on a fresh data dir (SQLite, or ``--backend postgres``: fresh schemas
  that are dropped afterwards), every listener but SMTP off, on a free port.
- ``smtp-source -s 20 -l 4096 -m 10000`` (one connection per message) sends to
  user@example.test. Afterwards the recipient's INBOX (ledgermail, counted through the
  mailbox view with the server stopped) or Maildir (Postfix) must have grown by exactly
  the number sent: smtp-source exits 0 even when every RCPT is refused.

Run from the repository root, as root (it configures the system's Postfix)::

    python3 bench/smtp.py                                  # 3 runs x 10,000 messages
    python3 bench/smtp.py --messages 1000 --runs 1         # quick
    python3 bench/smtp.py --backend postgres

Prints each run and the medians; the last line is the summary. Exit status 1 when a
count did not match.
"""

from __future__ import annotations

import argparse
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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LEDGERMAIL = REPO / ".venv" / "bin" / "ledgermail"
PYTHON = REPO / ".venv" / "bin" / "python"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DOMAIN = "example.test"
RECIPIENT = f"user@{DOMAIN}"
SENDER = "bench@src.test"
POSTFIX_PORT = 10025
POSTFIX_ETC = Path("/etc/postfix")
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")
#: Counted through the mailbox view, with the server stopped.
COUNT_INBOX = """
from adapters.config import load_settings
from adapters.bootstrap import build
c = build(load_settings())
try:
    c.catch_up(timeout=600)
    view = c.mailbox_view
    [account] = [a for a in view.accounts() if a.address == {address!r}]
    print(next(m.messages for m in view.mailboxes(account.account_id) if m.name == "INBOX"))
finally:
    c.close()
"""


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass
class Run:
    ledgermail: float
    postfix_accepted: float
    postfix_delivered: float
    stored: int  # ledgermail INBOX growth
    maildir: int  # Postfix Maildir growth


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


def free_port(first: int = 12525) -> int:
    """A free port below the ephemeral range, which smtp-source's 20,000 connections churn."""
    for port in range(first, first + 1000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError(f"no free port in {first}-{first + 999}")


def wait_for_banner(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until a ``220`` greeting comes from 127.0.0.1:port (then QUIT)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited {process.returncode}: {tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"no SMTP greeting on port {port} after {timeout:.0f} s: {tail(log)}")


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def smtp_source(port: int, args: argparse.Namespace) -> float:
    """Send ``args.messages`` messages with smtp-source; wall seconds."""
    began = time.perf_counter()
    sh(args.smtp_source, "-s", args.sessions, "-l", args.size, "-m", args.messages,
       "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}")
    return time.perf_counter() - began


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time (this process only)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- Postfix --------------------------------------------------------------------------


def ensure_postfix() -> str:
    """The path of smtp-source, installing Postfix (which ships it) if missing."""
    found = shutil.which("smtp-source", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if found and shutil.which("postfix", path="/usr/sbin:/usr/bin"):
        return found
    progress("installing postfix with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        sh("apt-get", "install", "-y", "postfix", env=env)
    except BenchError:
        sh("apt-get", "update", env=env)
        sh("apt-get", "install", "-y", "postfix", env=env)
    subprocess.run(["postfix", "stop"], capture_output=True)  # if its install started it
    return shutil.which("smtp-source", path="/usr/sbin:/usr/bin") or "/usr/sbin/smtp-source"


def queued_files() -> int:
    """Messages in Postfix's queues, counted on disk (works while Postfix is down)."""
    queue = Path(sh("postconf", "-h", "queue_directory").stdout.strip())
    return sum(len(files) for name in ("maildrop", "incoming", "active", "deferred", "hold")
               for _, _, files in os.walk(queue / name))


def configure_postfix(vmail: Path) -> None:
    mail = pwd.getpwnam("mail")
    vmail.parent.chmod(0o711)  # a temporary dir is 0700; Postfix's virtual runs as mail
    vmail.mkdir()
    os.chown(vmail, mail.pw_uid, mail.pw_gid)
    nowhere = "error:the benchmark peer delivers locally only"
    sh("postconf", "-e", "inet_interfaces = loopback-only", "inet_protocols = ipv4",
       "myhostname = mx.peer.test", "mydestination =", f"virtual_mailbox_domains = {DOMAIN}",
       f"virtual_mailbox_base = {vmail}", f"virtual_mailbox_maps = static:{DOMAIN}/inbox/",
       f"virtual_uid_maps = static:{mail.pw_uid}", f"virtual_gid_maps = static:{mail.pw_gid}",
       f"virtual_minimum_uid = {mail.pw_uid}",
       "smtpd_recipient_restrictions = permit_mynetworks, reject", "mynetworks = 127.0.0.0/8",
       "in_flow_delay = 0", "default_process_limit = 100", "maillog_file = /dev/stdout",
       # Nothing leaves this machine, not even a bounce.
       f"default_transport = {nowhere}", f"relay_transport = {nowhere}")
    master = POSTFIX_ETC / "master.cf"
    text, renamed = re.subn(r"^smtp(\s+inet\s)", rf"{POSTFIX_PORT}\1", master.read_text(), flags=re.M)
    if renamed != 1:
        raise BenchError(f"{master}: expected one 'smtp inet' service, found {renamed}")
    master.write_text(text)


@contextmanager
def postfix_peer(scratch: Path) -> Iterator[Path]:
    """Postfix on 127.0.0.1:10025 delivering to a Maildir; yields the Maildir's parent.
    The system's main.cf and master.cf are restored afterwards, and Postfix stopped."""
    if subprocess.run(["postfix", "status"], capture_output=True).returncode == 0:
        raise BenchError("Postfix is already running: stop it first (postfix stop)")
    if queued_files():
        raise BenchError("Postfix's queue is not empty: the delivered/s timing needs it empty "
                         "(postqueue -p shows it; postsuper -d ALL empties it)")
    backup = scratch / "etc-postfix"
    backup.mkdir()
    for name in ("main.cf", "master.cf"):
        shutil.copy2(POSTFIX_ETC / name, backup / name)
    log = scratch / "postfix.log"
    process = None
    try:
        configure_postfix(scratch / "vmail")
        with log.open("wb") as out:
            process = subprocess.Popen(["postfix", "start-fg"], stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        wait_for_banner(POSTFIX_PORT, process, log, timeout=30)
        yield scratch / "vmail"
    finally:
        if process is not None:
            # The queue was empty at the start: whatever is left is ours.
            subprocess.run(["postsuper", "-d", "ALL"], capture_output=True)
            subprocess.run(["postfix", "stop"], capture_output=True)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                stop(process)
        for name in ("main.cf", "master.cf"):
            shutil.copy2(backup / name, POSTFIX_ETC / name)


def maildir_count(vmail: Path) -> int:
    inbox = vmail / DOMAIN / "inbox"
    return sum(len(os.listdir(inbox / sub)) for sub in ("new", "cur") if (inbox / sub).is_dir())


def wait_delivered(vmail: Path, log: Path, expected: int, stall: float = 60) -> None:
    """Until the Maildir holds ``expected`` messages and ``postqueue -j`` is empty."""
    last, last_change = -1, time.monotonic()
    while True:
        count = maildir_count(vmail)
        if count >= expected and not sh("postqueue", "-j").stdout.strip():
            return
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > stall:
            raise BenchError(f"Postfix delivered {count} of {expected} and stalled for "
                             f"{stall:.0f} s; its log ends:\n{tail(log)}")
        time.sleep(0.05)


def run_postfix(vmail: Path, args: argparse.Namespace) -> tuple[float, float, int]:
    """accepted/s, delivered/s and the Maildir's growth, on an emptied Maildir."""
    shutil.rmtree(vmail / DOMAIN, ignore_errors=True)
    began = time.perf_counter()
    accepted = smtp_source(POSTFIX_PORT, args)
    wait_delivered(vmail, vmail.parent / "postfix.log", args.messages)
    delivered = time.perf_counter() - began
    return args.messages / accepted, args.messages / delivered, maildir_count(vmail)


# -- ledgermail -----------------------------------------------------------------------


def ledgermail_env(data_dir: Path, port: int, schema: str | None) -> dict[str, str]:
    env = {**os.environ, "LEDGERMAIL_DATA_DIR": str(data_dir)}
    env.update({f"LEDGERMAIL_LISTEN__{name.upper()}": "" for name in LISTENERS})
    env["LEDGERMAIL_LISTEN__SMTP"] = f"127.0.0.1:{port}"
    # The peer (Postfix into smtp-sink) filters nothing: measure intake the same way.
    # The scorer's cost (DNS lookups per message) is its own question (docs/anti-abuse.md).
    env["LEDGERMAIL_ANTIABUSE__ENABLED"] = "false"
    if schema:
        env.update({"LEDGERMAIL_STORE__URL": PG_URL, "LEDGERMAIL_STORE__SCHEMA": schema})
    return env


def drop_schemas(schema: str) -> None:
    drops = "; ".join(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE'
                      for suffix in ("", "_keys", "_mailbox_view", "_audit"))
    sh("psql", PG_URL, "-q", "-v", "ON_ERROR_STOP=1", "-c", drops)


def inbox_count(env: dict[str, str]) -> int:
    code = COUNT_INBOX.format(address=RECIPIENT)
    return int(sh(PYTHON, "-c", code, env=env, cwd=REPO).stdout.split()[-1])


def timed_ledgermail(env: dict[str, str], port: int, log: Path, args: argparse.Namespace) -> float:
    """Serve, send, stop (SIGTERM); seconds of sending."""
    with log.open("wb") as out:
        process = subprocess.Popen([LEDGERMAIL, "serve"], env=env, cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for_banner(port, process, log, timeout=120)
        try:
            return smtp_source(port, args)
        except BenchError as error:
            state = "running" if process.poll() is None else f"exited {process.returncode}"
            raise BenchError(f"{error}\nledgermail serve ({state}); its log ends:\n{tail(log)}") from None
    finally:
        stop(process)


def run_ledgermail(scratch: Path, run: int, args: argparse.Namespace) -> tuple[float, int]:
    """msg/s and the INBOX's growth, on a fresh store."""
    port = free_port()
    schema = f"bench{uuid.uuid4().hex[:10]}" if args.backend == "postgres" else None
    env = ledgermail_env(scratch / f"ledgermail-{run}", port, schema)
    try:
        sh(LEDGERMAIL, "domain", "add", DOMAIN, env=env, cwd=REPO)
        sh(LEDGERMAIL, "user", "add", RECIPIENT, "--password-stdin", input="password123\n",
           env=env, cwd=REPO)
        before = inbox_count(env)
        seconds = timed_ledgermail(env, port, scratch / f"ledgermail-{run}.log", args)
        return args.messages / seconds, inbox_count(env) - before
    finally:
        if schema:
            drop_schemas(schema)


# -- main -----------------------------------------------------------------------------


def describe(run: Run, messages: int) -> str:
    checks = [f"INBOX +{run.stored}", f"Maildir +{run.maildir}"]
    flag = "" if run.stored == run.maildir == messages else f"  COUNT MISMATCH (sent {messages})"
    return (f"ledgermail {run.ledgermail:,.0f} msg/s, postfix {run.postfix_accepted:,.0f} msg/s "
            f"(accepted) / {run.postfix_delivered:,.0f} msg/s (delivered), "
            f"ratio {run.ledgermail / run.postfix_delivered:.2f}x  [{', '.join(checks)}]{flag}")


def summary(runs: list[Run]) -> str:
    ours = statistics.median(r.ledgermail for r in runs)
    accepted = statistics.median(r.postfix_accepted for r in runs)
    delivered = statistics.median(r.postfix_delivered for r in runs)
    return (f"smtp: ledgermail {ours:,.0f} msg/s, postfix {accepted:,.0f} msg/s (accepted) / "
            f"{delivered:,.0f} msg/s (delivered), ratio {ours / delivered:.2f}x "
            f"(median of {len(runs)})")


def bench(args: argparse.Namespace) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="ledgermail-smtp-bench-") as tmp:
        scratch = Path(tmp)
        progress(f"starting Postfix on 127.0.0.1:{POSTFIX_PORT} (scratch {scratch})")
        with postfix_peer(scratch) as vmail:
            for n in range(1, args.runs + 1):
                progress(f"run {n}/{args.runs}: postfix, {args.messages} messages")
                accepted, delivered, maildir = run_postfix(vmail, args)
                progress(f"run {n}/{args.runs}: ledgermail ({args.backend}), {args.messages} messages")
                ours, stored = run_ledgermail(scratch, n, args)
                runs.append(Run(ours, accepted, delivered, stored, maildir))
                print(f"run {n}: {describe(runs[-1], args.messages)}", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages per run (default 10000)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions (default 20)")
    parser.add_argument("--size", type=int, default=4096, help="message length in bytes (default 4096)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help=f"ledgermail's store (postgres: {PG_URL})")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: it installs and configures the system's Postfix")
    if not LEDGERMAIL.exists():
        parser.error(f"{LEDGERMAIL} is missing: create the venv first (make lint)")
    # SIGTERM unwinds like Ctrl-C, so Postfix's configuration is restored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        args.smtp_source = ensure_postfix()
        if args.backend == "postgres":
            sh("psql", PG_URL, "-Atc", "SELECT 1")
        runs = bench(args)
    except BenchError as error:
        print(f"smtp bench: {error}", file=sys.stderr)
        return 2
    print(f"\n{args.messages} x {args.size} B messages, {args.sessions} sessions, "
          f"ledgermail on {args.backend}, {os.cpu_count()} CPUs")
    print(summary(runs))
    return 0 if all(r.stored == r.maildir == args.messages for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
