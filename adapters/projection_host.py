"""Runs the projections and answers "have the views caught up?".

One runner thread reads the log in order from the views' tracking positions and
applies up to ``BATCH`` events per view transaction (one commit, one tracking row):
erasing a person with 10,000 messages writes 10,000 markers, and a transaction per
marker would dominate the erasure. The runner wakes at once when this process commits
events. Other processes' writes wake it through PostgreSQL's LISTEN/NOTIFY (other
nodes of a cluster, docs/scaling.md); on SQLite, and as a safety net for a lost NOTIFY,
it also polls. If it fails, or its LISTEN session drops (NOTIFYs sent meanwhile are
lost for good), its supervisor restarts it with back-off from the tracking positions,
so it catches up and no event is applied twice. Only the process holding the leader
lock runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import InfrastructureFactory, Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import Environment

from adapters.storage import wakeups

if TYPE_CHECKING:  # imported on PostgreSQL only: psycopg is not loaded for SQLite (issue 9)
    from adapters.storage.listener import ListenLost, NotificationListener

log = logging.getLogger(__name__)

#: Events per view transaction.
BATCH = 500
#: How often runners look for other processes' writes (SQLite: a CLI command beside
#: ``serve``), and, when they LISTEN, the safety poll for a NOTIFY that never came.
POLL_SECONDS = 0.05
LISTENING_POLL_SECONDS = 1.0
#: How often the leader checks it still holds the leader lock (a PostgreSQL advisory
#: lock dies with its session; another node then takes over).
LEADER_CHECK_SECONDS = 2.0

#: After a partial batch of at least GATHER_AFTER events, how long to let more writes
#: gather before the next read.
GATHER_SECONDS = 0.01
GATHER_AFTER = 8


class LeadershipLost(RuntimeError):
    """The leader lock's session is gone: another node may be running the projections."""


@dataclass(frozen=True)
class ProjectionSpec:
    projection_class: type[Projection[Any]]
    view_class: type[TrackingRecorder]

    @property
    def name(self) -> str:
        return self.projection_class.name


class BatchRunner:
    """Applies the log to the projections, in batches, until stopped.

    One reader serves every projection: each event is read and decrypted once, then
    applied to each view still behind it, in one transaction per view and batch.
    """

    def __init__(self, app: Any, specs: list[ProjectionSpec], env: dict[str, str],
                 listen_dsn: str | None = None, leader_lock: Any = None) -> None:
        self.app = app
        self._listen_dsn = listen_dsn
        self._leader_lock = leader_lock
        self._wake: threading.Event | None = None
        self.parts: list[tuple[str, Any, Projection[Any]]] = []
        for spec in specs:
            view = _construct_view(spec, env)
            self.parts.append((spec.name, view, spec.projection_class(view=view)))

    def run(self, stopping: threading.Event) -> None:
        recorder, mapper, name = self.app.recorder, self.app.mapper, self.app.name
        wake = self._wake = wakeups.register(recorder.store_key)
        listening = self._listen(recorder, wake, stopping)
        poll = LISTENING_POLL_SECONDS if listening else POLL_SECONDS
        try:
            positions = {part: view.max_tracking_id(name) or 0 for part, view, _ in self.parts}
            next_leader_check = time.monotonic() + LEADER_CHECK_SECONDS
            while not stopping.is_set():
                if listening is not None and listening.lost is not None:
                    raise listening.lost
                if self._leader_lock is not None and time.monotonic() >= next_leader_check:
                    if not self._leader_lock.still_held():
                        raise LeadershipLost("the leader lock's session ended")
                    next_leader_check = time.monotonic() + LEADER_CHECK_SECONDS
                wake.clear()
                notifications = recorder.select_notifications(start=min(positions.values()) + 1,
                                                              limit=BATCH)
                if not notifications:
                    wake.wait(poll)
                    continue
                events = [(n.id, mapper.to_domain_event(n)) for n in notifications]
                for part, view, projection in self.parts:
                    behind = [(i, e) for i, e in events if i > positions[part]]
                    if behind:
                        with view.batch():
                            for notification_id, event in behind:
                                projection.process_event(event, Tracking(name, notification_id))
                    positions[part] = notifications[-1].id
                if GATHER_AFTER <= len(notifications) < BATCH:
                    # Writes are pouring in (a busy MX): let more arrive, so the views work
                    # in batches instead of a transaction per commit. A lone write (a few
                    # events) is not held up: read-your-writes stays a millisecond or two.
                    stopping.wait(GATHER_SECONDS)
        finally:
            wakeups.unregister(recorder.store_key, wake)
            if listening is not None:
                listening.stop()

    def _listen(self, recorder: Any, wake: threading.Event,
                stopping: threading.Event) -> _Listening | None:
        """On PostgreSQL, LISTEN on the events table's channel (the library's recorder
        NOTIFYs it in every insert transaction) before the first read, so nothing
        committed after that read goes unheard."""
        channel = getattr(recorder, "channel_name", None)
        if self._listen_dsn is None or channel is None:
            return None
        from adapters.storage.listener import NotificationListener

        listening = _Listening(NotificationListener(
            self._listen_dsn, [channel], lambda _channel, _payload: wake.set(),
            f"projections {getattr(recorder.datastore, 'schema', '')}".strip()))
        listening.start(stopping)
        return listening

    def interrupt(self) -> None:
        """Cut short the wait for new events (the caller has set ``stopping``)."""
        if self._wake is not None:
            self._wake.set()

    def close(self) -> None:
        for _, view, _ in self.parts:
            _close_view(view)


class _Listening:
    """The runner's LISTEN session in a thread of its own; ``lost`` is set if it failed."""

    def __init__(self, listener: NotificationListener) -> None:
        self.listener = listener
        self.lost: ListenLost | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, runner_stopping: threading.Event) -> None:
        from adapters.storage.listener import ListenLost

        def listen() -> None:
            try:
                self.listener.run(self._stopping)
            except ListenLost as error:
                self.lost = error
                if not runner_stopping.is_set():
                    log.warning("projections: LISTEN session lost (%s)", error)

        self._thread = threading.Thread(target=listen, name="projections-listen", daemon=True)
        self._thread.start()
        # Until LISTEN is in place the safety poll covers; do not hold up start-up long.
        self.listener.ready.wait(10)

    def stop(self) -> None:
        """Let the LISTEN thread end (within one wait) and close its session; not joined:
        stopping a runner must not wait for it."""
        self._stopping.set()


def _construct_view(spec: ProjectionSpec, env: dict[str, str]) -> Any:
    environment = Environment(spec.name, env)
    return InfrastructureFactory.construct(environment).tracking_recorder(spec.view_class)


def _close_view(view: Any) -> None:
    closer = getattr(getattr(view, "datastore", None), "close", None)
    if closer:
        closer()


class ProjectionHost:
    def __init__(self, application_class: type, app_name: str, env: dict[str, str],
                 specs: list[ProjectionSpec], leader_lock: Any,
                 view_env: dict[str, str] | None = None, listen_dsn: str | None = None) -> None:
        self._application_class = application_class
        self._app_name = app_name
        self._env = env
        self._specs = specs
        self._lock = leader_lock
        self._listen_dsn = listen_dsn
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._leading = threading.Event()
        #: Views for queries and waits in this process (runners write through their own).
        self.views: dict[str, Any] = {spec.name: _construct_view(spec, view_env or env)
                                      for spec in specs}
        self.last_error: str | None = None
        #: Times the runner failed (or lost its LISTEN session) and was started again.
        self.restarts = 0
        self._runner: BatchRunner | None = None

    @property
    def is_leading(self) -> bool:
        return self._leading.is_set()

    def start(self) -> None:
        thread = threading.Thread(target=self._lead, name="projections-leader", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _lead(self) -> None:
        while not self._stopping.is_set():
            if not self._lock.try_acquire():
                self._stopping.wait(0.5)  # another process runs them: stand by
                continue
            self._leading.set()
            try:
                self._supervise()
            finally:
                self._leading.clear()

    def _supervise(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            runner = None
            started = time.monotonic()
            try:
                runner = self._runner = BatchRunner(self._application_class(self._env), self._specs,
                                                    self._env, self._listen_dsn, self._lock)
                self.last_error = None
                runner.run(self._stopping)
            except LeadershipLost as error:
                # Stand by again; whoever holds the lock now runs them (tracking rows
                # make a batch this node had in flight fail rather than apply twice).
                self.last_error = None  # not a fault of this node's: it stands by, healthy
                log.warning("projections: %s; standing by", error)
                self._lock.release()
                return
            except Exception as error:  # noqa: BLE001 - supervise everything
                self.last_error = f"{type(error).__name__}: {error}"
                self.restarts += 1
                if time.monotonic() - started > 30:
                    backoff = 0.1  # it ran well for a while: this is a fresh failure
                log.error("projections stopped: %s; restarting in %.1fs", self.last_error, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if runner is not None:
                    runner.close()
                    runner.app.close()

    def stop(self) -> bool:
        """Stop the runners; False if they did not stop in time (then shared resources
        such as the key store must be left open rather than closed under them)."""
        self._stopping.set()
        runner = self._runner
        if runner is not None:
            runner.interrupt()  # it may be waiting up to a second for events
        for thread in self._threads:
            thread.join(timeout=120)
            if thread.is_alive():
                log.error("projection runners did not stop within 120 s")
                return False
        self._lock.release()
        for view in self.views.values():
            _close_view(view)
        return True

    def positions(self) -> dict[str, int]:
        return {name: view.max_tracking_id(self._app_name) or 0 for name, view in self.views.items()}

    def wait_for(self, position: int, timeout: float) -> dict[str, int]:
        if position <= 0:
            return self.positions()
        deadline = time.monotonic() + timeout
        for view in self.views.values():
            view.wait(self._app_name, position, timeout=max(0.001, deadline - time.monotonic()))
        return self.positions()
