"""Shared fixtures: a real store per test, on SQLite and (when reachable) PostgreSQL.

PostgreSQL comes from ``LEDGERMAIL_TEST_PG`` (default the local test database). When it
is unreachable its tests skip with a loud reason, except under ``CI=true``, where they
fail (DESIGN §7). Each PostgreSQL test gets its own schemas, dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import Container, build, schemas_for
from adapters.config import Settings, load_settings
from api.main import create_app
from domain.application.context import acting

# Hundreds of tests start ``ledgermail`` as a subprocess. With PYTHONDONTWRITEBYTECODE set
# (this machine sets it), each of them would compile every module of ours again, about
# half a second apiece: let them cache bytecode, outside the source tree.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "ledgermail-test-pycache"))

PG_DSN = os.environ.get("LEDGERMAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgres"]


def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
    return None


_PG_PROBLEM = _postgres_problem()


def require_postgres() -> None:
    if _PG_PROBLEM is None:
        return
    message = f"PostgreSQL at {PG_DSN} is unreachable ({_PG_PROBLEM})"
    if IN_CI:
        pytest.fail(message + " and CI=true makes PostgreSQL tests mandatory")
    pytest.skip("SKIPPING POSTGRESQL TESTS: " + message)


def make_settings(data_dir: Path, backend: str, schema: str | None = None, **extra: object) -> Settings:
    store: dict[str, object] = {}
    if backend == "postgres":
        require_postgres()
        store = {"url": PG_DSN, "schema": schema or "t" + uuid.uuid4().hex[:12]}
    # The spam scorer adds header fields and asks the DNS; tests of everything else see
    # the bytes the client sent. Tests of the scorer turn it on (test_sender_auth.py).
    extra.setdefault("antiabuse", {"enabled": False})
    return load_settings(
        None,
        data_dir=data_dir,
        store=store or None,
        crypto={"password_memory_kib": 1024, "password_time_cost": 1},
        **extra,
    )


def drop_schemas(settings: Settings) -> None:
    if not settings.is_postgres:
        return
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for schema in schemas_for(settings).values():
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_postgres()
    return request.param


@pytest.fixture
def settings(tmp_path: Path, backend: str) -> Iterator[Settings]:
    current = make_settings(tmp_path / "data", backend)
    yield current
    drop_schemas(current)


@pytest.fixture
def store(settings: Settings) -> Iterator[Container]:
    """An open store with one local domain, acting as a test administrator."""
    container = build(settings)
    try:
        with acting("admin:test", protocol="test", purpose="testing"):
            container.app.add_domain("example.test")
            yield container
    finally:
        container.close()


@pytest.fixture
def client(store: Container) -> TestClient:
    """The HTTP application over ``store``, for the API tests."""
    return TestClient(create_app(store))
