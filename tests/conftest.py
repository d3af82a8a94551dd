"""Shared pytest fixtures."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import PostgresDatabase, PostgresServer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real chart and audio data in ../shared/data; the test skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite MLflow store for every test where the store's isolation is not the point."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL 16 server (``pgserver``) for the session; skipped if it cannot start.

    Its data folder is a fresh folder in the system's temporary folder, not pytest's: as root,
    pgserver runs the server as the user ``pgserver``, which must traverse the folders above it,
    and pytest makes its own folder private again whenever another pytest session starts.
    """
    try:
        import pgserver
    except ImportError:
        pytest.skip("pgserver is not installed (`make test` installs the dev extras)")
    root = Path(tempfile.mkdtemp(prefix="musicpop-postgres-"))
    try:
        server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
        info = server.get_postmaster_info()
    except Exception as exc:  # no useradd, no shared memory, ...: say why
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL (pgserver) did not start: {type(exc).__name__}: {exc}")
    assert info.socket_dir is not None and info.port is not None
    try:
        yield PostgresServer(info.socket_dir, info.port)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres: PostgresServer) -> PostgresDatabase:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres.create_database()
