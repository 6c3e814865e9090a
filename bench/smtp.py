"""SMTP intake benchmark: ledgermail against Postfix, on this machine, in the same run.

Why: a messages/s figure means little alone; Postfix on the same hardware, fed by the
same load tool in the same run, is the yardstick. Postfix's ``250`` means the message is
fsynced in its queue; delivery to the mailbox follows. ledgermail's ``250`` means the
message is already committed to the mailbox (DESIGN §2): accepted == delivered. So
Postfix gets two figures, accepted/s (``smtp-source`` wall time) and delivered/s (until
every message is in the Maildir and ``postqueue -j`` is empty), and the ratio is taken
against delivered/s: message in the recipient's mailbox, in both cases.

Throughput alone hides what it costs: a server that is as fast but burns twice the CPU
leaves less of the machine for everything else. So each run also counts the servers' CPU
seconds (user + system) per 1,000 messages, server side only (not smtp-source), over the
same work: from the first message sent until the server is quiet again after the last
one (Postfix: delivered, queue empty; ledgermail: accepted, which is delivered, plus any
work it does afterwards). Counted from /proc for the server's whole process tree:
utime + stime of every live process plus cutime + cstime, which hold what its exited
children used once reaped (Postfix's smtpd, cleanup and virtual processes come and go;
its master reaps them). At the end, the wait4 rusage of each server's process tree over
its whole life is printed beside it as a cross-check (it includes start-up and idle time,
so it is a little higher).

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
    python3 bench/smtp.py --json out.json                  # also rows for bench/all.py

Prints each run and the medians; the last line is the summary. ``--json FILE`` writes
the rows bench/all.py reads (its docstring has the format): intake against
Postfix delivered/s (target >= 1.0x), against Postfix accepted/s (no target: Postfix has
not delivered yet at that point) and the CPU per 1,000 messages (no target). Exit status
1 when a count did not match.
"""

from __future__ import annotations

import argparse
import ctypes
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
    ledgermail_cpu: float = 0.0  # CPU seconds per 1,000 messages
    postfix_cpu: float = 0.0


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


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of root's process tree so far: every live process's
    own time plus its reaped children's (cutime, cstime), from /proc."""
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    ticks, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if pid in stats:  # fields after the name: utime, stime, cutime, cstime are 12-15
            ticks += sum(int(value) for value in stats[pid][11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def quiet_cpu(root: int, began: float, interval: float = 0.5, timeout: float = 30) -> float:
    """root's tree CPU since ``began`` (a tree_cpu value), once it stops growing: less
    than 2% of a CPU over ``interval``, or ``timeout`` seconds."""
    last = tree_cpu(root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = tree_cpu(root)
        if now - last < 0.02 * interval:
            return now - began
        last = now
    return last - began


def wait_rusage(process: subprocess.Popen, timeout: float = 60) -> float:
    """Reap ``process`` (already told to stop; SIGKILL after ``timeout``) with wait4: user
    + system CPU seconds of it and of every descendant that it, or they, reaped, over its
    whole life; nan when it was reaped elsewhere."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                deadline = float("inf")
            time.sleep(0.1)
    except ChildProcessError:
        process.wait()
        return float("nan")
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux prctl), so that
    their CPU time can still be counted by reap_orphans(); False where it is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_orphans(timeout: float = 10) -> float:
    """Reap every child left (orphans reparented to this subreaper, as Postfix's daemons
    are when its master exits without waiting for them): their CPU seconds, rusage."""
    total, deadline = 0.0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break  # no children left
        if pid:
            total += usage.ru_utime + usage.ru_stime
        else:
            time.sleep(0.05)
    return total


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


@dataclass
class Peer:
    vmail: Path  # the Maildir's parent
    process: subprocess.Popen  # postfix start-fg: the root of Postfix's process tree
    lifetime_cpu: float = float("nan")  # wait4 rusage once stopped


@contextmanager
def postfix_peer(scratch: Path) -> Iterator[Peer]:
    """Postfix on 127.0.0.1:10025 delivering to a Maildir. The system's main.cf and
    master.cf are restored afterwards, and Postfix stopped."""
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
    process = peer = None
    try:
        configure_postfix(scratch / "vmail")
        with log.open("wb") as out:
            process = subprocess.Popen(["postfix", "start-fg"], stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        wait_for_banner(POSTFIX_PORT, process, log, timeout=30)
        peer = Peer(scratch / "vmail", process)
        yield peer
    finally:
        if process is not None:
            # The queue was empty at the start: whatever is left is ours.
            subprocess.run(["postsuper", "-d", "ALL"], capture_output=True)
            subprocess.run(["postfix", "stop"], capture_output=True)
            # Postfix's master exits without waiting for its daemons (qmgr, smtpd, ...),
            # which land here: this process is their subreaper (main()).
            lifetime = wait_rusage(process, timeout=30) + reap_orphans()
            if peer is not None:
                peer.lifetime_cpu = lifetime
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


def run_postfix(peer: Peer, args: argparse.Namespace) -> tuple[float, float, int, float]:
    """accepted/s, delivered/s, the Maildir's growth and CPU s per 1,000 messages, on an
    emptied Maildir."""
    vmail = peer.vmail
    shutil.rmtree(vmail / DOMAIN, ignore_errors=True)
    cpu = tree_cpu(peer.process.pid)
    began = time.perf_counter()
    accepted = smtp_source(POSTFIX_PORT, args)
    wait_delivered(vmail, vmail.parent / "postfix.log", args.messages)
    delivered = time.perf_counter() - began
    cpu = quiet_cpu(peer.process.pid, cpu)
    return (args.messages / accepted, args.messages / delivered, maildir_count(vmail),
            cpu * 1000 / args.messages)


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


def timed_ledgermail(env: dict[str, str], port: int, log: Path,
                     args: argparse.Namespace) -> tuple[float, float, float]:
    """Serve, send, stop (SIGTERM); seconds of sending, CPU seconds of the server's tree
    from the first message until it is quiet after the last, and its lifetime CPU."""
    with log.open("wb") as out:
        process = subprocess.Popen([LEDGERMAIL, "serve"], env=env, cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for_banner(port, process, log, timeout=120)
        try:
            cpu = tree_cpu(process.pid)
            seconds = smtp_source(port, args)
            cpu = quiet_cpu(process.pid, cpu)
        except BenchError as error:
            state = "running" if process.poll() is None else f"exited {process.returncode}"
            raise BenchError(f"{error}\nledgermail serve ({state}); its log ends:\n{tail(log)}") from None
    except BaseException:
        stop(process)
        raise
    process.send_signal(signal.SIGTERM)
    lifetime = wait_rusage(process)
    return seconds, cpu, lifetime


def run_ledgermail(scratch: Path, run: int, args: argparse.Namespace) -> tuple[float, int, float, float]:
    """msg/s, the INBOX's growth, CPU s per 1,000 messages and the server's lifetime CPU
    seconds, on a fresh store."""
    port = free_port()
    schema = f"bench{uuid.uuid4().hex[:10]}" if args.backend == "postgres" else None
    env = ledgermail_env(scratch / f"ledgermail-{run}", port, schema)
    try:
        sh(LEDGERMAIL, "domain", "add", DOMAIN, env=env, cwd=REPO)
        sh(LEDGERMAIL, "user", "add", RECIPIENT, "--password-stdin", input="password123\n",
           env=env, cwd=REPO)
        before = inbox_count(env)
        seconds, cpu, lifetime = timed_ledgermail(env, port, scratch / f"ledgermail-{run}.log", args)
        return args.messages / seconds, inbox_count(env) - before, cpu * 1000 / args.messages, lifetime
    finally:
        if schema:
            drop_schemas(schema)


# -- main -----------------------------------------------------------------------------


def describe(run: Run, messages: int) -> str:
    checks = [f"INBOX +{run.stored}", f"Maildir +{run.maildir}"]
    flag = "" if run.stored == run.maildir == messages else f"  COUNT MISMATCH (sent {messages})"
    return (f"ledgermail {run.ledgermail:,.0f} msg/s, postfix {run.postfix_accepted:,.0f} msg/s "
            f"(accepted) / {run.postfix_delivered:,.0f} msg/s (delivered), "
            f"ratio {run.ledgermail / run.postfix_delivered:.2f}x; CPU s per 1,000 messages: "
            f"ledgermail {run.ledgermail_cpu:.2f}, postfix {run.postfix_cpu:.2f}  "
            f"[{', '.join(checks)}]{flag}")


def summary(runs: list[Run]) -> str:
    ours = statistics.median(r.ledgermail for r in runs)
    accepted = statistics.median(r.postfix_accepted for r in runs)
    delivered = statistics.median(r.postfix_delivered for r in runs)
    ours_cpu = statistics.median(r.ledgermail_cpu for r in runs)
    postfix_cpu = statistics.median(r.postfix_cpu for r in runs)
    return (f"smtp: ledgermail {ours:,.0f} msg/s, postfix {accepted:,.0f} msg/s (accepted) / "
            f"{delivered:,.0f} msg/s (delivered), ratio {ours / delivered:.2f}x; CPU s per 1,000 "
            f"messages ledgermail {ours_cpu:.2f}, postfix {postfix_cpu:.2f} (median of {len(runs)})")


@dataclass
class Outcome:
    runs: list[Run]
    version: str = ""
    postfix_lifetime_cpu: float = float("nan")  # wait4, whole life, every run
    ledgermail_lifetime_cpu: float = 0.0  # wait4, summed over the runs' servers


def bench(args: argparse.Namespace) -> Outcome:
    outcome = Outcome([], sh("postconf", "-h", "mail_version").stdout.strip())
    with tempfile.TemporaryDirectory(prefix="ledgermail-smtp-bench-") as tmp:
        scratch = Path(tmp)
        progress(f"starting Postfix on 127.0.0.1:{POSTFIX_PORT} (scratch {scratch})")
        with postfix_peer(scratch) as peer:
            for n in range(1, args.runs + 1):
                progress(f"run {n}/{args.runs}: postfix, {args.messages} messages")
                accepted, delivered, maildir, postfix_cpu = run_postfix(peer, args)
                progress(f"run {n}/{args.runs}: ledgermail ({args.backend}), {args.messages} messages")
                ours, stored, ours_cpu, lifetime = run_ledgermail(scratch, n, args)
                outcome.ledgermail_lifetime_cpu += lifetime
                outcome.runs.append(Run(ours, accepted, delivered, stored, maildir, ours_cpu, postfix_cpu))
                print(f"run {n}: {describe(outcome.runs[-1], args.messages)}", flush=True)
        outcome.postfix_lifetime_cpu = peer.lifetime_cpu
    return outcome


def rows(outcome: Outcome, args: argparse.Namespace, failures: list[str]) -> list[dict]:
    """The rows of --json (bench/all.py's docstring has the format)."""
    runs = outcome.runs
    ok = bool(runs) and not failures

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    ours = [r.ledgermail for r in runs]
    delivered = [r.postfix_delivered for r in runs]
    accepted = [r.postfix_accepted for r in runs]
    ours_cpu = [r.ledgermail_cpu for r in runs]
    postfix_cpu = [r.postfix_cpu for r in runs]
    version = f"Postfix {outcome.version}".strip()
    shape = f"{args.sessions} sessions, {args.size / 1024:g} KiB"

    def row(figure: str, a: list[float], b: list[float], unit: str, higher_better: bool,
            target: str | None, needed: float | None, peer_name: str) -> dict:
        ma, mb = median(a), median(b)
        ratio = ((ma / mb if higher_better else mb / ma) if ma and mb else None)
        met = None if target is None else bool(ok and ratio is not None and ratio >= needed)
        return {"figure": figure, "ledgermail": ma, "peer": mb, "peer_name": peer_name, "unit": unit,
                "ratio": ratio, "target": target, "met": met, "runs": {"ledgermail": a, "peer": b}}

    return [
        row(f"SMTP intake to mailbox, {shape}", ours, delivered, "msg/s", True, ">= 1.0x", 1.0,
            f"{version} (delivered/s)"),
        row(f"SMTP intake vs Postfix queued, {shape}", ours, accepted, "msg/s", True, None, None,
            f"{version} (accepted/s, not yet delivered)"),
        row("SMTP CPU seconds per 1,000 accepted messages", ours_cpu, postfix_cpu, "CPU s/1000 msg",
            False, None, None, f"{version} (all processes)"),
    ]


def write_json(path: Path, outcome: Outcome, args: argparse.Namespace, failures: list[str]) -> None:
    data = {"script": "bench/smtp.py", "rows": rows(outcome, args, failures), "failures": failures}
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, help="messages per run (default 10000; quick 1000)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions (default 20)")
    parser.add_argument("--size", type=int, default=4096, help="message length in bytes (default 4096)")
    parser.add_argument("--runs", type=int, help="repetitions (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="--messages 1000 --runs 1 unless given")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help=f"ledgermail's store (postgres: {PG_URL})")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the rows bench/all.py reads to FILE")
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 1000 if args.quick else 10_000
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if os.geteuid() != 0:
        parser.error("run as root: it installs and configures the system's Postfix")
    if not LEDGERMAIL.exists():
        parser.error(f"{LEDGERMAIL} is missing: create the venv first (make lint)")
    # SIGTERM unwinds like Ctrl-C, so Postfix's configuration is restored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    subreaper = become_subreaper()
    try:
        args.smtp_source = ensure_postfix()
        if args.backend == "postgres":
            sh("psql", PG_URL, "-Atc", "SELECT 1")
        outcome = bench(args)
    except BenchError as error:
        print(f"smtp bench: {error}", file=sys.stderr)
        if args.json:
            write_json(args.json, Outcome([]), args, [f"smtp bench: {error}"])
        return 2
    runs = outcome.runs
    failures = [f"run {n}: sent {args.messages}, ledgermail INBOX +{r.stored}, Postfix Maildir +{r.maildir}"
                for n, r in enumerate(runs, start=1) if not r.stored == r.maildir == args.messages]
    print(f"\n{args.messages} x {args.size} B messages, {args.sessions} sessions, "
          f"ledgermail on {args.backend}, {os.cpu_count()} CPUs")
    total = args.messages * len(runs) / 1000
    missing = "" if subreaper else "; Postfix's daemons orphaned at its stop are missing"
    print(f"cross-check, wait4 rusage over each server's whole life (start-up and idle "
          f"included{missing}): postfix {outcome.postfix_lifetime_cpu:.1f} CPU s "
          f"({outcome.postfix_lifetime_cpu / total:.2f} per 1,000), ledgermail "
          f"{outcome.ledgermail_lifetime_cpu:.1f} CPU s "
          f"({outcome.ledgermail_lifetime_cpu / total:.2f} per 1,000)")
    print(summary(runs))
    if args.json:
        write_json(args.json, outcome, args, failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
