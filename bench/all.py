"""Every benchmark that compares ledgermail with a peer, and one table of the results.

Why: each bench script prints its own report, but the question "does ledgermail meet
its targets on this machine?" needs every figure side by side, with the verdict counted.
This file runs each script in a subprocess, one after the other (never two at once: they
would skew each other's figures, and two of them configure Postfix), and prints one table
whose last line is ``targets met: N of M`` (M rows have a target, N of them are met).

The contract between them: run with ``--json FILE``, a script writes there (besides its
own report) one JSON object::

    {"script": "bench/smtp.py",
     "rows": [{"figure": "SMTP intake to mailbox, 20 sessions, 4 KiB",  # unique
               "ledgermail": 653.2, "peer": 870.1,   # medians, or null if not measured
               "peer_name": "Postfix 3.7.11",         # or null
               "unit": "msg/s",
               "ratio": 0.75,        # times as good as the peer: ledgermail/peer for a
                                     # throughput, peer/ledgermail for a time or a size
               "target": ">= 1.0x",  # text, or null: the row is shown, not counted
               "met": false,         # null when there is no target
               "runs": {"ledgermail": [...], "peer": [...]}}],   # every run's value
     "failures": ["text", ...]}      # bad counts, servers that failed; [] if none

An absolute target (``"<= 150 MB"``) is decided by the ledgermail value alone. A failed
run (a bad count, a crash) makes ``met`` false, never true.

The peers (Postfix; Dovecot's IMAP, POP3 and LMTP servers) are installed with apt-get
first when missing, with a policy-rc.d that keeps the packages' services from starting
(unless the machine already has one, which is left as it is): the scripts start their
own instances on loopback ports.

A script that is missing, exits without writing its JSON, or crashes is shown as a
``FAILED:`` line and counts nothing (no rows, so no targets); the others still run.

Run from the repository root, as root (the peers are system packages)::

    python3 bench/all.py                      # every script, 3 runs each (about 15 minutes on 2 cores)
    python3 bench/all.py --quick --runs 1     # smaller sizes where a script has --quick
    python3 bench/all.py --only smtp,imap

Exit status 0 when every script ran (missed targets are in the table), 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
SCRIPTS = ("smtp", "imap", "pop3", "end_to_end", "erasure")
POLICY = Path("/usr/sbin/policy-rc.d")
#: package -> a file it installs (present: the package is there).
PEERS = {
    "postfix": "/usr/sbin/postfix",
    "dovecot-imapd": "/usr/lib/dovecot/imap",
    "dovecot-pop3d": "/usr/lib/dovecot/pop3",
    "dovecot-lmtpd": "/usr/lib/dovecot/lmtp",
}


def progress(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


# -- peers ------------------------------------------------------------------------------


def apt_install(packages: list[str]) -> None:
    """apt-get install, with apt-get update first only when the install fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", *packages]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"apt-get install {' '.join(packages)} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-1500:]}")


def install_peers() -> None:
    """Install the peers that are missing; no service may start from the install."""
    missing = [package for package, path in PEERS.items() if not Path(path).exists()]
    if not missing:
        return
    progress(f"installing {' '.join(missing)} with apt-get")
    own_policy = not POLICY.exists()
    if own_policy:
        POLICY.write_text("#!/bin/sh\n# bench/all.py: no service starts from its apt-get install\n"
                          "exit 101\n")
        POLICY.chmod(0o755)
    try:
        apt_install(missing)
    finally:
        if own_policy:
            POLICY.unlink(missing_ok=True)
    # A package whose maintainer script started its daemon anyway (no invoke-rc.d)
    # would hold the ports and state the scripts expect free.
    if shutil.which("postfix", path="/usr/sbin:/usr/bin"):
        subprocess.run(["postfix", "stop"], capture_output=True)
    if shutil.which("doveadm", path="/usr/sbin:/usr/bin"):
        subprocess.run(["doveadm", "stop"], capture_output=True)


# -- running the scripts ----------------------------------------------------------------


def options(script: Path) -> str:
    """The script's --help text (which options it has)."""
    done = subprocess.run([str(PYTHON), str(script), "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    return done.stdout


def run_script(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    """Run bench/NAME.py with --json; its JSON object, or {"failed": reason}."""
    script = REPO / "bench" / f"{name}.py"
    label = f"bench/{name}.py"
    if not script.exists():
        return {"script": label, "failed": "missing"}
    try:
        helptext = options(script)
    except subprocess.TimeoutExpired:
        return {"script": label, "failed": "--help did not answer in 120 s"}
    if "--json" not in helptext:
        return {"script": label, "failed": "has no --json option"}
    out = tmp / f"{name}.json"
    command = [str(PYTHON), str(script), "--json", str(out)]
    if "--runs" in helptext:
        command += ["--runs", str(args.runs)]
    if args.quick and "--quick" in helptext:
        command.append("--quick")
    progress(f"{' '.join(command[1:])}")
    began = time.perf_counter()
    # Its report goes to stderr here: stdout is for the one table.
    code = subprocess.run(command, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr).returncode
    progress(f"{label} exited {code} after {time.perf_counter() - began:.0f} s")
    try:
        result = json.loads(out.read_text())
        if not isinstance(result.get("rows"), list):
            raise ValueError("no list of rows")
    except (OSError, ValueError, AttributeError) as error:
        return {"script": label, "failed": f"exited {code}, no usable JSON ({error})"}
    result["script"] = label
    result["exit"] = code
    return result


# -- the table ---------------------------------------------------------------------------


def number(value: object) -> str:
    """Thousands separators, three significant digits (every digit from 100 up)."""
    if value is None:
        return "-"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return str(value)
    size = abs(float(f"{value:.3g}"))  # rounded first: 9.999 has the digits of 10.0
    digits = 0 if size >= 100 or value == 0 else 2 - math.floor(math.log10(size))
    return f"{value:,.{digits}f}"


def verdict(row: dict) -> str:
    if row.get("target") is None:
        return "-"
    return "yes" if row.get("met") is True else "no"


def table(results: list[dict]) -> tuple[list[str], int, int]:
    """The table's lines, N (targets met) and M (rows with a target)."""
    header = ("figure", "ledgermail", "peer", "unit", "ratio", "target", "met", "peer is")
    rows: list[tuple[str, ...] | str] = []
    met = targets = 0
    for result in results:
        if "failed" in result:
            rows.append(f"FAILED: {result['script']}: {result['failed']}")
            continue
        for row in result["rows"]:
            ratio = row.get("ratio")
            rows.append((str(row.get("figure", "?")), number(row.get("ledgermail")),
                         number(row.get("peer")), str(row.get("unit") or ""),
                         "-" if ratio is None else f"{ratio:,.2f}x", str(row.get("target") or "-"),
                         verdict(row), str(row.get("peer_name") or "-")))
            if row.get("target") is not None:
                targets += 1
                met += row.get("met") is True
        for failure in result.get("failures") or []:
            rows.append(f"FAILED: {result['script']}: {failure}")
        if result.get("exit") and not result.get("failures"):
            rows.append(f"FAILED: {result['script']}: exited {result['exit']}")
    cells = [r for r in rows if isinstance(r, tuple)]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    right = {1, 2, 4}  # numbers

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    lines = [line(header), line(tuple("-" * w for w in widths))]
    lines += [r if isinstance(r, str) else line(r) for r in rows]
    return lines, met, targets


def failed(result: dict) -> bool:
    return "failed" in result or bool(result.get("exit")) or bool(result.get("failures"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure, passed to each script (3)")
    parser.add_argument("--quick", action="store_true", help="passed to the scripts that have it")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCRIPTS)}")
    args = parser.parse_args(argv)
    chosen = list(SCRIPTS)
    if args.only:
        chosen = [s.strip().replace("-", "_") for s in args.only.split(",") if s.strip()]
        if unknown := [s for s in chosen if s not in SCRIPTS]:
            parser.error(f"unknown script(s): {', '.join(unknown)} (known: {', '.join(SCRIPTS)})")
    if os.geteuid() != 0:
        parser.error("run as root: it installs and runs Postfix and Dovecot")
    if not PYTHON.exists():
        parser.error(f"{PYTHON} is missing: create the venv first (make lint)")
    began = time.perf_counter()
    results = []
    try:
        install_peers()
    except (OSError, RuntimeError) as error:
        # The scripts say what they lack; some may still run.
        progress(f"installing the peers failed: {error}")
    with tempfile.TemporaryDirectory(prefix="ledgermail-bench-all-") as tmp:
        for name in chosen:
            try:
                results.append(run_script(name, args, Path(tmp)))
            except (OSError, subprocess.SubprocessError) as error:
                results.append({"script": f"bench/{name}.py", "failed": f"{type(error).__name__}: {error}"})
    lines, met, targets = table(results)
    print(f"\nledgermail benchmarks on {os.cpu_count()} CPUs, {args.runs} run(s) each, medians"
          f"{', --quick' if args.quick else ''}; {time.perf_counter() - began:,.0f} s in all; ratio: "
          "how many times as good as the peer")
    for text in lines:
        print(text)
    print(f"targets met: {met} of {targets}", flush=True)
    return 1 if any(failed(r) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
