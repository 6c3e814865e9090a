"""Runs the projections (supervised) and answers "have the views caught up?".

eventsourcing's ``ProjectionRunner`` stops at the first error (a lost PostgreSQL
LISTEN connection, a locked database); the supervisor restarts it with back-off, and
processing resumes from the view's tracking position, so nothing is applied twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, TrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import Environment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionSpec:
    projection_class: type[Projection[Any]]
    view_class: type[TrackingRecorder]

    @property
    def name(self) -> str:
        return self.projection_class.name


class ProjectionHost:
    def __init__(self, application_class: type, app_name: str, env: dict[str, str],
                 specs: list[ProjectionSpec], leader_lock: Any,
                 view_env: dict[str, str] | None = None) -> None:
        self._application_class = application_class
        self._app_name = app_name
        self._env = env
        self._specs = specs
        self._lock = leader_lock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._leading = threading.Event()
        #: Views for queries in this process (the runners have their own instances).
        self.views: dict[str, Any] = {spec.name: self._construct_view(spec, view_env or env)
                                      for spec in specs}
        self.last_error: str | None = None

    @staticmethod
    def _construct_view(spec: ProjectionSpec, env: dict[str, str]) -> Any:
        environment = Environment(spec.name, env)
        return InfrastructureFactory.construct(environment).tracking_recorder(spec.view_class)

    @property
    def is_leading(self) -> bool:
        return self._leading.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="projections", daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop the runners; False if they did not stop in time (then shared resources
        such as the key store must be left open rather than closed under them)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            if self._thread.is_alive():
                log.error("projection runners did not stop within 120 s")
                return False
        self._lock.release()
        for view in self.views.values():
            closer = getattr(getattr(view, "datastore", None), "close", None)
            if closer:
                closer()
        return True

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            if not self._lock.try_acquire():
                self._stopping.wait(0.5)  # another process runs them: stand by
                continue
            self._leading.set()
            backoff = 0.1
            while not self._stopping.is_set():
                try:
                    self._run_all()
                    backoff = 0.1
                except Exception as error:  # noqa: BLE001 - supervise everything
                    self.last_error = f"{type(error).__name__}: {error}"
                    log.error("projection runner stopped: %s; restarting in %.1fs",
                              self.last_error, backoff)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
            self._leading.clear()

    def _run_all(self) -> None:
        runners = [
            ProjectionRunner(application_class=self._application_class,
                             projection_class=spec.projection_class,
                             view_class=spec.view_class, env=self._env)
            for spec in self._specs
        ]
        try:
            for runner in runners:
                runner.__enter__()
            self.last_error = None
            while not self._stopping.is_set():
                for runner in runners:
                    runner.run_forever(timeout=0.05)
        finally:
            for runner in runners:
                try:
                    runner.__exit__(None, None, None)
                except Exception as error:  # noqa: BLE001
                    log.debug("runner exit: %s", error)

    def positions(self) -> dict[str, int]:
        return {name: view.max_tracking_id(self._app_name) or 0 for name, view in self.views.items()}

    def wait_for(self, position: int, timeout: float) -> dict[str, int]:
        if position <= 0:
            return self.positions()
        deadline = time.monotonic() + timeout
        for view in self.views.values():
            view.wait(self._app_name, position, timeout=max(0.001, deadline - time.monotonic()))
        return self.positions()
