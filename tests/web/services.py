"""The real outside services of a scaled-out deployment, started on loopback for the tests.

- `PostgresServer`: a private PostgreSQL from Debian's packages (initdb + pg_ctl in a temporary
  folder; as root, it runs as the `postgres` user, as PostgreSQL insists). Each test that needs
  a database gets a fresh one from `new_database()`. With DP_TEST_POSTGRES_URL set (an admin
  URL), that server is used instead.
- `RayCluster`: a Ray head and one worker node, one CPU each, started with the `ray` command
  of this virtualenv, so a task really can land on either node.

Either is skipped when missing, unless REQUIRE_POSTGRES=1 / REQUIRE_RAY=1 (CI sets both), in
which case it fails: CI must never pass by skipping.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def _missing(what: str, flag: str, why: str):
    if os.environ.get(flag) == "1":
        pytest.fail(f"{what} is required here ({flag}=1) but {why}")
    pytest.skip(f"{what}: {why}")


class PostgresServer:
    def __init__(self, port: int, durable: bool = False):
        self.port = port
        self.durable = durable  # fsync on, as in production (tests need no durability)
        self.admin_url = os.environ.get("DP_TEST_POSTGRES_URL")
        self.root: Path | None = None

    def start(self) -> PostgresServer:
        if self.admin_url:
            return self
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            _missing("PostgreSQL", "REQUIRE_POSTGRES",
                     "its server is not installed (apt-get install -y postgresql)")
        bindir = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="dp-pg-"))
        as_user = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        data = self.root / "data"
        subprocess.run([*as_user, bindir / "initdb", "-D", data, "-A", "trust", "-U", "dp",
                        "--no-sync", "-E", "UTF8", "--locale=C"], check=True,
                       stdout=subprocess.DEVNULL)
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=300")
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off"
        subprocess.run([*as_user, bindir / "pg_ctl", "-D", data, "-o", options,
                        "-l", self.root / "log", "-w", "start"], check=True,
                       stdout=subprocess.DEVNULL)
        self._as_user, self._bindir = as_user, bindir
        self.admin_url = f"postgresql://dp@127.0.0.1:{self.port}/postgres"
        return self

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self.root is None:
            return
        subprocess.run([*self._as_user, self._bindir / "pg_ctl", "-D", self.root / "data",
                        "-m", "immediate", "stop"], stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class RayCluster:
    def __init__(self, port: int):
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.ray = Path(sys.executable).parent / "ray"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

    def start(self) -> RayCluster:
        try:
            import ray  # noqa: F401
        except ImportError:
            _missing("Ray", "REQUIRE_RAY", "it is not installed (pip install -e '.[ray]')")
        self.temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths
        common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                  "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]
        self._ray("start", "--head", "--port", str(self.port), "--include-dashboard=false",
                  "--temp-dir", self.temp, *common)
        self._ray("start", "--address", self.address, *common)
        return self

    def _ray(self, *args: str) -> None:
        subprocess.run([self.ray, *args], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def stop(self) -> None:
        subprocess.run([self.ray, "stop", "--force"], env=self.env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(self.temp, ignore_errors=True)
