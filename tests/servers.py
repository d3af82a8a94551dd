"""Real servers for the scale-out tests: a PostgreSQL 16 started by ``pgserver``, its databases.

``pgserver`` runs the PostgreSQL binaries of its wheel. It listens on a Unix socket only (no TCP
port is opened). As root it runs the server as a dedicated system user ``pgserver``, which it
creates with ``useradd`` when missing, and opens read and traverse rights on the folders above
the data folder so that user can reach it: the fixture puts the data folder in pytest's temporary
folder for that reason.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PostgresDatabase:
    """One database of the test server, and the ways each client spells it."""

    host: str  # the folder of the server's Unix socket (libpq takes it as a host)
    port: int
    name: str
    user: str = "postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL (MLflow, Optuna, the Feast registry): ``postgresql+psycopg://``."""
        return f"postgresql+psycopg://{self.user}:@/{self.name}?host={self.host}&port={self.port}"

    @property
    def conninfo(self) -> str:
        """libpq connection string (psycopg)."""
        return f"host={self.host} port={self.port} dbname={self.name} user={self.user}"

    @property
    def env(self) -> dict[str, str]:
        """The standard libpq variables, as docs/scale-out/feature_store.yaml reads them."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.name,
            "PGUSER": self.user,
            "PGPASSWORD": "",
        }

    def count(self, sql: str) -> int:
        """The first column of the first row of ``sql``, as an int."""
        import psycopg

        with psycopg.connect(self.conninfo) as conn:
            row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server reached through its Unix socket."""

    socket_dir: Path
    port: int
    user: str = "postgres"

    def create_database(self, prefix: str = "test") -> PostgresDatabase:
        """A new, empty database with a unique name."""
        import psycopg

        name = f"{prefix}_{secrets.token_hex(4)}"
        admin = PostgresDatabase(str(self.socket_dir), self.port, "postgres", self.user)
        with psycopg.connect(admin.conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return PostgresDatabase(str(self.socket_dir), self.port, name, self.user)
