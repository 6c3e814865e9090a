"""Real scanning daemons for the tests: clamd, spamd and rspamd from the distribution's
packages, each started here in its own directory, on a free loopback port, with a
configuration of our own (never the system service or its databases).

- clamd gets a signature database we write: one ``.hdb`` entry (MD5 and size of the
  EICAR test file, ClamAV's hash signature format), since signatures cannot be
  downloaded here; ``AlertExceedsMax`` and small limits make a zip bomb
  ``Heuristics.Limits.Exceeded``.
- spamd gets a rules directory with the Check plugin and the GTUBE rule only, and a
  site config with no Bayes, no DNS and no network tests, so it starts in a second.
- rspamd loads the packaged rules with hyperscan off (its compile takes minutes), no
  redis, DNS pointed at a closed port, and only a normal worker.

A missing binary skips the tests with a loud reason, except under ``CI=true``, where it
fails (as PostgreSQL does in conftest.py). A daemon that does not come up fails with
its log.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI

#: Seconds a daemon may take to answer its first ping.
START_TIMEOUT = 90.0
#: The EICAR anti-virus test file, assembled so this source file is not itself flagged.
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!" + b"$H+H*")
EICAR_SIGNATURE = "Ledgermail-Test-EICAR"
#: clamd limits for the tests: an archive member over this is Heuristics.Limits.Exceeded.
CLAMD_MAX_FILE = 1024 * 1024
CLAMD_STREAM_MAX = 2 * 1024 * 1024

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (f"{d}/{name}" for d in _SBIN if os.access(f"{d}/{name}", os.X_OK)), None)
    if path is not None:
        return path
    message = f"{name} is not installed (apt-get install clamav-daemon spamd rspamd)"
    if IN_CI:
        pytest.fail(message + " and CI=true makes the daemon scanner tests mandatory")
    pytest.skip(f"SKIPPING {name.upper()} TESTS: {message}")


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    name: str
    address: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log: Path

    @property
    def unix_socket(self) -> str:
        """clamd listens here too (``LocalSocket``)."""
        return str(self.workdir / f"{self.name}.sock")

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _workdir(name: str) -> Path:
    """A directory the daemons' unprivileged children can read (pytest's tmp dirs are
    0700, and spamd and rspamd drop root to ``nobody``)."""
    path = Path(tempfile.mkdtemp(prefix=f"ledgermail-{name}-"))
    path.chmod(0o777)
    return path


def _wait(daemon: Daemon, ready: Callable[[Daemon], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            break
        try:
            if ready(daemon):
                return
        except OSError:
            pass
        time.sleep(0.1)
    daemon.stop()
    pytest.fail(f"{daemon.name} did not come up (exit {daemon.process.returncode}):\n{daemon.log_tail()}")


def _host_port(daemon: Daemon) -> tuple[str, int]:
    host, _, port = daemon.address.rpartition(":")
    return host, int(port)


@contextmanager
def running(daemon: Daemon, ready: Callable[[Daemon], bool]) -> Iterator[Daemon]:
    try:
        _wait(daemon, ready)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(daemon.workdir, ignore_errors=True)


# -- clamd -----------------------------------------------------------------------------


def _clamd_ready(daemon: Daemon) -> bool:
    with socket.create_connection(_host_port(daemon), timeout=2) as sock:
        sock.sendall(b"zPING\0")
        return sock.recv(16) == b"PONG\0"


def start_clamd() -> Daemon:
    binary = require_binary("clamd")
    workdir = _workdir("clamd")
    (workdir / "db").mkdir()
    # ClamAV hash signature: MD5:size:name (docs.clamav.net, "Hash-based signatures").
    signature = f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{EICAR_SIGNATURE}\n"
    (workdir / "db" / "test.hdb").write_text(signature)
    port = free_port()
    log = workdir / "clamd.log"
    (workdir / "clamd.conf").write_text(
        f"DatabaseDirectory {workdir / 'db'}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nForeground yes\n"
        f"LogFile {log}\nPidFile {workdir / 'clamd.pid'}\nTemporaryDirectory {workdir}\n"
        f"AlertExceedsMax yes\nMaxScanSize {CLAMD_MAX_FILE}\nMaxFileSize {CLAMD_MAX_FILE}\n"
        f"MaxRecursion 5\nStreamMaxLength {CLAMD_STREAM_MAX}\nSelfCheck 0\n"
        f"LocalSocket {workdir / 'clamd.sock'}\n")
    process = subprocess.Popen([binary, "--foreground", f"--config-file={workdir / 'clamd.conf'}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Daemon("clamd", f"127.0.0.1:{port}", process, workdir, log)


@contextmanager
def clamd() -> Iterator[Daemon]:
    with running(start_clamd(), _clamd_ready) as daemon:
        yield daemon


# -- spamd -----------------------------------------------------------------------------

GTUBE_RULE = r"""body GTUBE /^XJS\*C4JDBQADN1\.NSBN3\*2IDNEN\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\*C\.34X/
describe GTUBE Generic Test for Unsolicited Bulk Email
tflags GTUBE userconf noautolearn
score GTUBE 1000
"""


def _spamd_ready(daemon: Daemon) -> bool:
    with socket.create_connection(_host_port(daemon), timeout=2) as sock:
        sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
        return b" 0 PONG" in sock.recv(64)


@contextmanager
def spamd() -> Iterator[Daemon]:
    binary = require_binary("spamd")
    workdir = _workdir("spamd")
    rules, site = workdir / "rules", workdir / "site"
    rules.mkdir(mode=0o755)
    site.mkdir(mode=0o755)
    (rules / "init.pre").write_text("loadplugin Mail::SpamAssassin::Plugin::Check\n")
    (rules / "10_gtube.cf").write_text(GTUBE_RULE)
    (site / "local.cf").write_text("required_score 5.0\nuse_bayes 0\nskip_rbl_checks 1\ndns_available no\n")
    for path in (*rules.iterdir(), *site.iterdir()):
        path.chmod(0o644)
    port = free_port()
    log = workdir / "spamd.log"
    command = [binary, "--listen", f"127.0.0.1:{port}", "--configpath", str(rules),
               "--siteconfigpath", str(site), "--nouser-config", "--max-children", "2",
               "--pidfile", str(workdir / "spamd.pid"), "--syslog", str(log)]
    if os.geteuid() == 0:
        command += ["--username", "nobody"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with running(Daemon("spamd", f"127.0.0.1:{port}", process, workdir, log), _spamd_ready) as daemon:
        yield daemon


# -- rspamd ----------------------------------------------------------------------------


def _rspamd_ready(daemon: Daemon) -> bool:
    host, port = _host_port(daemon)
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().read().strip() == b"pong"
    finally:
        connection.close()


@contextmanager
def rspamd() -> Iterator[Daemon]:
    binary = require_binary("rspamd")
    workdir = _workdir("rspamd")
    port, dead = free_port(), free_port()
    log = workdir / "rspamd.log"
    (workdir / "rspamd.conf").write_text(f"""
.include "$CONFDIR/common.conf"
options {{
    pidfile = "{workdir}/rspamd.pid";
    filters = "regexp";
    cache_file = "{workdir}/symbols.cache";
    dynamic_conf = "{workdir}/dynamic";
    history_file = "{workdir}/history";
    control_socket = "{workdir}/rspamd.sock mode=0600";
    tempdir = "{workdir}";
    allow_raw_input = true;
    disable_hyperscan = true;
    dns {{ nameserver = ["127.0.0.1:{dead}"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "{log}"; level = "notice"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; mime = true; count = 1; }}
""")
    command = [binary, "-f", "-c", str(workdir / "rspamd.conf"), f"--var=DBDIR={workdir}",
               f"--var=RUNDIR={workdir}", f"--var=LOGDIR={workdir}"]
    if os.geteuid() == 0:
        command.append("--insecure")  # the test's own throwaway instance
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with running(Daemon("rspamd", f"127.0.0.1:{port}", process, workdir, log), _rspamd_ready) as daemon:
        yield daemon


@contextmanager
def silent_listener() -> Iterator[str]:
    """A port that accepts connections and never answers: a hung daemon."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> str:
    """An address nothing listens on: a stopped daemon."""
    return f"127.0.0.1:{free_port()}"
