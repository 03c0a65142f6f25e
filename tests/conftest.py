"""Fixtures for the tests of app/'s top-level modules (jobs, bus, events, cli).

- `postgres`: a private PostgreSQL server for the session (tests/web/services.py), skipped
  when PostgreSQL is missing unless REQUIRE_POSTGRES=1; the web tests share it.
- `store`: a fresh SQLite store in the test's tmp_path.

Test modules here import nothing from this file (`from conftest import ...` may find
tests/ml's or tests/web's conftest, which share the module name): they use fixtures only.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from web.services import PostgresServer

from app.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer(_free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield store
    store.close()
