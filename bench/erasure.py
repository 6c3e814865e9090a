"""Erasure benchmark: erasing a person with 10,000 messages, ledgermail against Dovecot.

Why: the right to erasure (GDPR Art. 17) is an operator's chore that ledgermail turns
into one command (docs/gdpr.md section 2): ``ledgermail erase ADDRESS --reason TEXT``
records the request, marks every stream of the person, waits for the views to purge
them, destroys the person's key, deletes the bodies only they held, verifies, and prints
a receipt. On a classic Maildir server the same chore is "expunge everything, then
delete the directory", which is about as fast as deleting files can be. The question is
whether the crypto-shredding route costs the operator more time than that; on the same
machine, in the same run, with the same messages.

How, for each of ``--runs`` (3) runs, the two servers one after the other (the order
alternating between runs):

- **ledgermail** ``serve`` on a fresh data dir (SQLite) per run, only its IMAP listener
  on, on a free port (cheap Argon2 for the bench user's password, as bench/imap.py).
  Not timed: the user's INBOX is filled with K (``--messages``, 10,000) 4,096-byte
  messages by pipelined IMAP APPEND (LITERAL+, 16 in flight: bench/imap.py's client and
  messages) and ``STATUS INBOX`` must show K. Timed: the operator's command, run while
  ``serve`` goes on serving (the CLI works beside it, docs/contributing.md):
  ``ledgermail erase bench@example.test --reason ...``, from its start to its exit 0,
  with bytecode cached (one untimed command first), as an installed ledgermail runs.
  Checks afterwards: the receipt's verification passed with no view rows remaining, it
  names K deleted bodies and at least K + 1 marked streams, ``user list`` no longer
  shows the address, and an IMAP LOGIN as the person is refused.
- **Dovecot** (apt-get install dovecot-imapd if missing) in a scratch dir, configured as
  in shared/reference/peers/dovecot.conf, IMAP on a free loopback port, storing Maildir.
  Not timed: the same K messages by the same APPEND, ``STATUS INBOX`` must show K.
  Timed: ``doveadm -c CONF expunge -u USER mailbox '*' all`` and then ``rm -rf`` of the
  user's mail directory (their home: Maildir, indexes and all). Checks: doveadm exits 0
  and leaves INBOX with 0 messages (counted between the two timed commands, off the
  clock), rm exits 0 and the directory is gone.

Seconds are medians of the runs; the ratio is Dovecot's time / ledgermail's (target
``> 1.0x``: ledgermail faster). Dovecot's erasure leaves what erasure of a Maildir
always leaves (the log lines, the backups); ledgermail's receipt says what it leaves
(docs/gdpr.md section 5). Neither is measured here, only the time.

Run from the repository root, as root (Dovecot stores mail as user ``mail``)::

    python3 bench/erasure.py                        # 3 runs x 10,000 messages
    python3 bench/erasure.py --quick                # 1 run x 1,000
    python3 bench/erasure.py --runs 1 --json out.json

``--json FILE`` writes the result as bench/all.py reads it (its docstring has the contract).
Exit status 1 when a check failed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from end_to_end import (  # noqa: E402 - bench/ is not a package; these are beside this file
    PASSWORD,
    BenchError,
    CheckFailed,
    Dovecot,
    dovecot_version,
    ensure_dovecot,
    free_port,
    imap_login,
    imap_messages,
    ledgermail_serve,
    progress,
    sh,
    write_json,
)
from imap import (  # noqa: E402
    LEDGERMAIL,
    USER,
    ImapError,
    append_all,
    make_message,
    tail,
)

TARGET = 1.0
WINDOW = 16  # APPENDs in flight while filling
REASON = "Art. 17 request, benchmark bench/erasure.py"
FIGURE = "Erasure of a person with {n:,} messages"


def fill(port: int, messages: list[bytes]) -> float:
    """APPEND the messages to the user's INBOX (pipelined); checks STATUS; msg/s."""
    client = imap_login(port, USER)
    try:
        before = imap_messages(port, USER)
        if before:
            raise BenchError(f"INBOX holds {before} messages before filling; expected 0")
        began = time.perf_counter()
        append_all(client, "INBOX", messages, WINDOW)
        rate = len(messages) / (time.perf_counter() - began)
        client.command("LOGOUT")
    finally:
        client.close()
    count = imap_messages(port, USER)
    if count != len(messages):
        raise CheckFailed(f"after filling, STATUS INBOX shows {count}, expected {len(messages)}")
    return rate


def login_refused(port: int) -> str | None:
    """None when LOGIN as the person fails; else what happened."""
    try:
        client = imap_login(port, USER, PASSWORD)
    except ImapError as error:
        return None if "NO" in str(error) or "closed" in str(error) else f"LOGIN: {error}"
    client.close()
    return "LOGIN as the erased person still succeeds"


def run_ledgermail(scratch: Path, run: int, messages: list[bytes]) -> float:
    """Seconds of ``ledgermail erase`` on a fresh store holding the messages; checks."""
    k = len(messages)
    port = free_port(13400)
    data_dir = scratch / f"ledgermail-{run}"
    with ledgermail_serve(data_dir, {"imap": port}, [USER]) as env:
        log = Path(env["BENCH_LOG"])
        try:
            rate = fill(port, messages)
        except (ImapError, OSError) as error:
            raise BenchError(f"filling: {error}; serve's log ends:\n{tail(log)}") from None
        progress(f"ledgermail: filled {k:,} at {rate:,.0f} msg/s; erasing")
        # An installed ledgermail runs compiled modules (pip writes the .pyc files). This
        # machine may set PYTHONDONTWRITEBYTECODE, which would charge compiling every
        # module to the erase: the command gets a bytecode cache, warmed by one command
        # (tests/conftest.py does the same for the test suite's subprocesses).
        cli_env = {name: value for name, value in env.items() if name != "PYTHONDONTWRITEBYTECODE"}
        cli_env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
        sh(LEDGERMAIL, "user", "list", env=cli_env, cwd=data_dir.parent)
        began = time.perf_counter()
        done = subprocess.run([str(LEDGERMAIL), "erase", USER, "--reason", REASON], env=cli_env,
                              cwd=data_dir.parent, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            raise CheckFailed(f"ledgermail erase exited {done.returncode}: "
                              f"{(done.stderr or done.stdout).strip()[-1500:]}")
        try:
            receipt = json.loads(done.stdout)
        except ValueError:
            raise CheckFailed(f"ledgermail erase printed no JSON receipt: {done.stdout[:500]!r}") from None
        problems = []
        verification = receipt.get("verification") or {}
        if verification.get("passed") is not True or verification.get("view_rows_remaining") != 0:
            problems.append(f"receipt verification {verification}")
        deleted = receipt.get("blobs_deleted")
        deleted = len(deleted) if isinstance(deleted, list) else deleted
        if deleted != k:
            problems.append(f"receipt: {deleted} bodies deleted, expected {k}")
        if not isinstance(receipt.get("streams_marked"), int) or receipt["streams_marked"] < k + 1:
            problems.append(f"receipt: {receipt.get('streams_marked')} streams marked, expected >= {k + 1}")
        if not receipt.get("destroyed_key_ids"):
            problems.append("receipt: no destroyed key ids")
        users = sh(LEDGERMAIL, "user", "list", env=env, cwd=data_dir.parent).stdout
        if USER in users:
            problems.append(f"user list still shows {USER}")
        if (login := login_refused(port)) is not None:
            problems.append(login)
        if problems:
            raise CheckFailed("ledgermail: " + "; ".join(problems))
        progress(f"ledgermail: erased in {seconds:.2f} s: {receipt['streams_marked']:,} streams marked, "
                 f"{deleted:,} bodies deleted, {len(receipt['destroyed_key_ids'])} key(s) destroyed")
    return seconds


def run_dovecot(dovecot: Dovecot, messages: list[bytes]) -> float:
    """Seconds of doveadm expunge + rm -rf of the user's mail directory; checks."""
    k = len(messages)
    home = dovecot.maildir(USER)
    rate = fill(dovecot.port, messages)
    files = dovecot.maildir_files(USER)
    if files != k:
        raise CheckFailed(f"dovecot: the Maildir holds {files} files after filling, expected {k}")
    progress(f"dovecot: filled {k:,} at {rate:,.0f} msg/s; erasing")
    time.sleep(0.5)  # the imap process of the filling session exits after LOGOUT
    began = time.perf_counter()
    expunge = subprocess.run(["doveadm", "-c", str(dovecot.conf), "expunge", "-u", USER,
                              "mailbox", "*", "all"], capture_output=True, text=True)
    expunged = time.perf_counter() - began
    if expunge.returncode != 0:
        raise CheckFailed(f"doveadm expunge exited {expunge.returncode}: {expunge.stderr.strip()[-500:]}")
    left = sh("doveadm", "-c", dovecot.conf, "-f", "flow", "mailbox", "status", "-u", USER,
              "messages", "INBOX").stdout  # off the clock
    began = time.perf_counter()
    removed = subprocess.run(["rm", "-rf", str(home)], capture_output=True, text=True)
    deleted = time.perf_counter() - began
    if "messages=0" not in left.split():
        raise CheckFailed(f"dovecot: after doveadm expunge, INBOX status {left.strip()!r}, "
                          "expected messages=0")
    if removed.returncode != 0 or home.exists():
        raise CheckFailed(f"dovecot: rm -rf {home} exited {removed.returncode}, directory "
                          f"{'still there' if home.exists() else 'gone'}: {removed.stderr.strip()[-300:]}")
    progress(f"dovecot: expunge {expunged:.2f} s + rm -rf {deleted:.2f} s")
    return expunged + deleted


@dataclass
class Results:
    ledgermail: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def bench(args: argparse.Namespace) -> Results:
    results = Results()
    progress(f"generating {args.messages:,} messages of 4,096 bytes")
    messages = [make_message(i) for i in range(args.messages)]
    with tempfile.TemporaryDirectory(prefix="ledgermail-erasure-bench-") as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        scratch.chmod(0o755)  # Dovecot's processes run as mail
        dovecot = Dovecot(scratch / "dovecot", free_port(13443), [USER], lmtp=False)
        stack.callback(dovecot.close)
        progress(f"starting Dovecot (IMAP 127.0.0.1:{dovecot.port}) in {scratch}")
        try:
            dovecot.start()
        except (BenchError, OSError) as error:
            results.failures.append(f"dovecot could not start: {error}")
        for run in range(1, args.runs + 1):
            order = ["dovecot", "ledgermail"] if run % 2 else ["ledgermail", "dovecot"]
            for name in order:
                if name == "dovecot" and dovecot.process is None:
                    continue
                progress(f"run {run}/{args.runs}: {name}, {args.messages:,} messages")
                try:
                    if name == "dovecot":
                        seconds = run_dovecot(dovecot, messages)
                        results.peer.append(seconds)
                    else:
                        seconds = run_ledgermail(scratch, run, messages)
                        results.ledgermail.append(seconds)
                    print(f"run {run}: {name:<10} {seconds:8.2f} s", flush=True)
                except (BenchError, CheckFailed, ImapError, OSError) as error:
                    text = f"run {run}: {name}: {type(error).__name__}: {error}"
                    if name == "dovecot":
                        text += f"\ndovecot log ends:\n{tail(dovecot.log)}"
                    results.failures.append(text)
                    progress(f"FAILED: {text}")
    return results


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def row(results: Results, args: argparse.Namespace, peer_name: str) -> dict:
    ours, peer = median(results.ledgermail), median(results.peer)
    ratio = peer / ours if ours and peer else None
    complete = len(results.ledgermail) == len(results.peer) == args.runs and not results.failures
    return {"figure": FIGURE.format(n=args.messages), "ledgermail": ours, "peer": peer,
            "peer_name": peer_name, "unit": "s", "ratio": ratio, "target": f"> {TARGET}x",
            "met": bool(complete and ratio is not None and ratio > TARGET),
            "runs": {"ledgermail": results.ledgermail, "peer": results.peer}}


FULL = {"messages": 10_000, "runs": 3}
QUICK = {"messages": 1000, "runs": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 messages, 1 run")
    parser.add_argument("--messages", type=int, help="the person's messages (10,000; quick 1,000)")
    parser.add_argument("--runs", type=int, help="repetitions, medians taken (3; quick 1)")
    parser.add_argument("--json", type=Path, help="write the result here (bench/all.py's contract)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if os.geteuid() != 0:
        parser.error("run as root: it runs Dovecot, which stores mail as user mail")
    if not LEDGERMAIL.exists():
        parser.error(f"{LEDGERMAIL} is missing: create the venv first (make lint)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers stopped, dirs removed
    began, load = time.perf_counter(), os.getloadavg()[0]
    try:
        ensure_dovecot("imap")
        results = bench(args)
        status = 1 if results.failures else 0
    except BenchError as error:
        results = Results(failures=[f"could not run: {error}"])
        status = 2
    version = dovecot_version()
    result = row(results, args, f"Dovecot {version}")
    if args.json:
        write_json(args.json, "bench/erasure.py", [result], results.failures)
    print(f"\nerasure bench: ledgermail (sqlite, `ledgermail erase` beside a running serve) vs Dovecot "
          f"{version} (maildir; doveadm expunge + rm -rf), {args.messages:,} x 4,096 B messages, "
          f"{os.cpu_count()} CPUs, {time.perf_counter() - began:.0f} s in all, load average {load:.1f} "
          f"at the start and {os.getloadavg()[0]:.1f} at the end")
    for text in results.failures:
        print(f"FAILED: {text}")
    ours, peer, ratio = result["ledgermail"], result["peer"], result["ratio"]

    def shown(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    runs = "; ".join(f"{name} {'/'.join(f'{v:.2f}' for v in values)}"
                     for name, values in (("ledgermail", results.ledgermail), ("dovecot", results.peer))
                     if values)
    print(f"runs (s): {runs or 'none'}")
    print(f"{result['figure']}: ledgermail {shown(ours, '.2f')} s, dovecot {shown(peer, '.2f')} s, "
          f"ratio {shown(ratio, '.2f')}x (target {result['target']}: "
          f"{'met' if result['met'] else 'NOT met'}), median of {args.runs}")
    return status


if __name__ == "__main__":
    sys.exit(main())
