"""Real PostgreSQL for tests: a throw-away cluster and ``mlflow server`` on top of it.

Fixtures (import them into a ``conftest.py``, as ``tests/team/conftest.py`` does)::

    from tests.support.postgres import pg_cluster, pg_mlflow_server  # noqa: F401

* ``pg_cluster`` (session): ``initdb`` in a fresh folder, listening on 127.0.0.1 on a free
  port with ``trust`` authentication for loopback TCP only (no Unix socket), started
  once per session and stopped at its end. Yields a :class:`PgCluster`
  (``uri(dbname)``, ``create_database(name)``, ``create_mlflow_database(name)``).
* ``pg_mlflow_server`` (module): ``mlflow server`` on a fresh database of that cluster,
  with proxied artifacts (``--artifacts-destination``), on a free loopback port. Yields
  its ``http://127.0.0.1:PORT`` URI. One server per test module: tests in a module share
  its store, so they use their own experiment names.
* ``pg_mlflow_server_factory`` (function): ``with pg_mlflow_server_factory() as uri:``
  for a test that needs a store of its own.

Both skip (with the reason) when the PostgreSQL server binaries or psycopg2 are missing:
``apt-get install postgresql`` and ``pip install -e '.[postgres]'``.

Two details matter:

* PostgreSQL refuses to run as root. Under root the cluster belongs to the unprivileged
  user ``postgres`` (commands run via ``runuser -u postgres --``) and lives in a folder
  under ``/tmp`` of its own: pytest's ``tmp_path`` is inside ``/tmp/pytest-of-root``,
  which only root may enter.
* MLflow migrates an empty database at start-up (about 10 s on PostgreSQL here). The
  cluster migrates one template database once per session and every MLflow database is
  a ``CREATE DATABASE ... TEMPLATE`` copy of it (a fraction of a second).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.mlflow_server import (
    SERVER_ENV,
    MlflowServerError,
    _healthy,
    _log_tail,
    _stop,
    free_port,
)

#: Where Debian puts the server binaries (``initdb``, ``pg_ctl``, ``postgres``).
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"

#: Settings for a disposable test cluster: durability off (the data dies with the test),
#: enough connections for the concurrency tests (8 processes + the server's pool).
_TEST_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``, if any."""
    found = [
        Path(d)
        for d in glob.glob(PG_BIN_GLOB)
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file()
    ]

    def version(path: Path) -> float:
        try:
            return float(path.parent.name)
        except ValueError:
            return 0.0

    return max(found, key=version) if found else None


def _as_owner(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the cluster owner: user ``postgres`` under root, else ourselves."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _chown_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")


@dataclass
class PgCluster:
    """A running PostgreSQL cluster on 127.0.0.1 (superuser ``postgres``, trust auth)."""

    bin_dir: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"
    #: Seconds the template migration took (0 until the first MLflow database).
    migration_s: float = 0.0
    _template: str | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        """The server log (``pg_ctl -l``)."""
        return self.root / "postgres.log"

    def uri(self, dbname: str = "postgres") -> str:
        """The SQLAlchemy/MLflow URI of database ``dbname`` on this cluster.

        The driver is spelled out: SQLAlchemy 2.1 maps a bare ``postgresql://`` to
        psycopg 3, while the ``postgres`` extra installs psycopg2.
        """
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres"):
        """A psycopg2 connection in autocommit mode (CREATE DATABASE needs it)."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname)
        conn.autocommit = True
        return conn

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (optionally as a copy of ``template``); return its URI."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            sql = f'CREATE DATABASE "{name}"'
            if template:
                sql += f' TEMPLATE "{template}"'
            cur.execute(sql)
        return self.uri(name)

    def create_mlflow_database(self, name: str) -> str:
        """Create database ``name`` with MLflow's schema already migrated; return its URI.

        The first call migrates a template database (in a subprocess, so no connection
        to it stays open: PostgreSQL copies a template only while nobody is connected).
        """
        if self._template is None:
            template = "mlflow_template"
            uri = self.create_database(template)
            started = time.monotonic()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from mlflow.store.tracking.sqlalchemy_store import "
                    "SqlAlchemyStore; SqlAlchemyStore(sys.argv[1], sys.argv[2])",
                    uri,
                    str(self.root / "template-artifacts"),
                ],
                env={**os.environ, **SERVER_ENV},
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"migrating {uri} failed:\n{proc.stderr[-4000:]}")
            self.migration_s = time.monotonic() - started
            self._template = template
        return self.create_database(name, template=self._template)

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: running transactions are rolled back)."""
        subprocess.run(
            _as_owner(
                [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast"]
            ),
            check=False,
            capture_output=True,
            timeout=60,
        )


def start_cluster(root: Path, port: int | None = None, bin_dir: Path | None = None) -> PgCluster:
    """``initdb`` a new cluster in ``root/data`` and start it on 127.0.0.1:``port``.

    ``root`` must not exist yet or be empty; under root it is handed to user ``postgres``.

    Raises:
        RuntimeError: no PostgreSQL binaries, or initdb/pg_ctl failed (with their output).
    """
    bin_dir = bin_dir or find_pg_bin()
    if bin_dir is None:
        raise RuntimeError(f"no PostgreSQL server binaries ({PG_BIN_GLOB}/initdb)")
    root.mkdir(parents=True, exist_ok=True)
    _chown_to_owner(root)
    cluster = PgCluster(bin_dir=bin_dir, root=root, port=port or free_port())
    data = cluster.data_dir

    def run(cmd: list[str]) -> None:
        proc = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                f"{_log_tail(cluster.log_path, 3000) if cluster.log_path.exists() else ''}"
            )

    run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
    )
    # Loopback TCP only: replace initdb's pg_hba.conf (which also trusts local sockets).
    (data / "pg_hba.conf").write_text(
        "# alignboard test cluster: trust loopback TCP only\nhost all all 127.0.0.1/32 trust\n"
    )
    settings = {**_TEST_SETTINGS, "port": str(cluster.port)}
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n# alignboard test cluster\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    _chown_to_owner(data / "pg_hba.conf")
    run(
        [
            str(bin_dir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(data),
            "-l",
            str(cluster.log_path),
        ]
    )
    return cluster


@contextlib.contextmanager
def running_cluster() -> Iterator[PgCluster]:
    """A new cluster in a fresh folder under the system temp dir, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="alignboard-pg-"))
    _chown_to_owner(root)  # mkdtemp makes it 0700: the owner must be able to enter it
    cluster = None
    try:
        cluster = start_cluster(root / "cluster")
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def pg_mlflow(
    cluster: PgCluster,
    directory: Path,
    *,
    dbname: str | None = None,
    workers: int = 1,
    startup_timeout: float = 120.0,
) -> Iterator[str]:
    """Run ``mlflow server`` on a new database of ``cluster`` for the ``with`` block.

    Artifacts are proxied (``--artifacts-destination directory/artifacts``); the log is
    ``directory/server.log``. Yields ``http://127.0.0.1:PORT``.

    Raises:
        MlflowServerError: the server exited or did not answer ``/health`` in time.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dbname = dbname or f"mlflow_{os.getpid()}_{free_port()}"
    backend = cluster.create_mlflow_database(dbname)
    artifacts = directory / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log_path = directory / "server.log"
    env = {**os.environ, **SERVER_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts.as_uri(),
        "--workers",
        str(workers),
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.monotonic()
        while not _healthy(uri):
            code = proc.poll()
            if code is not None or time.monotonic() - started > startup_timeout:
                what = (
                    f"exited with code {code}"
                    if code is not None
                    else f"did not answer GET {uri}/health within {startup_timeout:.0f} s"
                )
                raise MlflowServerError(
                    f"mlflow server on PostgreSQL {what}.\ncommand: {' '.join(cmd)}\n"
                    f"log ({log_path}):\n{_log_tail(log_path)}"
                )
            time.sleep(0.2)
        yield uri
    finally:
        _stop(proc)


def _skip_reason() -> str | None:
    if find_pg_bin() is None:
        return (
            f"PostgreSQL server binaries not found ({PG_BIN_GLOB}/initdb): "
            "apt-get install postgresql"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as user postgres"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed: pip install -e '.[postgres]'"
    return None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the session (see the module docstring); skips if unavailable."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pg_mlflow_server(
    pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An ``mlflow server`` on a fresh PostgreSQL database, shared by the test module."""
    with pg_mlflow(pg_cluster, tmp_path_factory.mktemp("pg-mlflow")) as uri:
        yield uri


@pytest.fixture
def pg_mlflow_server_factory(
    pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., contextlib.AbstractContextManager[str]]:
    """``with pg_mlflow_server_factory() as uri:`` — a server with a store of its own."""

    def factory(**kwargs) -> contextlib.AbstractContextManager[str]:
        return pg_mlflow(pg_cluster, tmp_path_factory.mktemp("pg-mlflow"), **kwargs)

    return factory
