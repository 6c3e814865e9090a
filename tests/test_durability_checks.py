"""The store refuses settings that could lose an acknowledged message (DESIGN §2)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from adapters.bootstrap import StartupError, build, check_durability, eventsourcing_env
from adapters.config import Settings
from domain.application.service import LedgerMail
from tests.conftest import make_settings


def test_sqlite_below_synchronous_full_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", "sqlite")
    settings.data_dir.mkdir(parents=True)
    env = eventsourcing_env(settings, os.urandom(32))
    app = LedgerMail(env={**env, "SQLITE_SYNCHRONOUS": "NORMAL"})
    try:
        with pytest.raises(StartupError, match="below FULL"):
            check_durability(app)
    finally:
        app.close()
    durable = LedgerMail(env=env)
    try:
        check_durability(durable)  # FULL passes
    finally:
        durable.close()


def test_postgresql_with_synchronous_commit_off_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: Settings = make_settings(tmp_path / "data", "postgres",
                                       master_key=base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("PGOPTIONS", "-c synchronous_commit=off")
    with pytest.raises(StartupError, match="synchronous_commit=off"):
        build(settings)
