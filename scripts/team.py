"""Team mode on one machine: PostgreSQL, an MLflow server, a worker and two dashboards.

    python scripts/team.py start    # (make team) everything up, idempotent
    python scripts/team.py status   # what runs, where
    python scripts/team.py stop     # (make team-stop) everything down

What ``start`` brings up, each with a pid file and a log in ``.alignboard/team/``:

1. a PostgreSQL cluster in ``.alignboard/team/pg`` on 127.0.0.1:5439 (Debian's
   ``postgresql`` package is installed when no ``/usr/lib/postgresql/*/bin/initdb``
   exists). PostgreSQL refuses to run as root, so under root the cluster belongs to the
   user ``postgres``; otherwise to the invoking user. Password authentication
   (scram-sha-256) on loopback TCP only, no Unix socket; the generated password is in
   ``.alignboard/team/pgpass`` (mode 0600), which libpq reads via ``PGPASSFILE``: it
   never appears in a URI or on a command line. Database ``mlflow``.
2. ``mlflow server`` on 127.0.0.1:5055, backend ``postgresql+psycopg2://...:5439/mlflow``,
   artifacts proxied by the server into ``.alignboard/team/artifacts``.
3. the demo data, seeded through that server (``alignboard seed-demo``).
4. one job worker (``ALIGNBOARD_JOBS=worker alignboard worker``).
5. dashboards on 127.0.0.1:8501 and :8502 (``streamlit run app/main.py``), as two
   hosts behind a load balancer would be.

Every process runs in a session of its own (so ``stop`` ends its whole process group)
with ``MLFLOW_TRACKING_URI=http://127.0.0.1:5055`` and ``ALIGNBOARD_HOME`` in
``.alignboard/team/home``. A component whose pid file names a live process is left
alone, so ``start`` twice starts nothing twice.

Standard library only: it runs before anything is installed and calls the venv's
executables (``--bin``, default: the folder of the Python running it).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_PORT = 5439
MLFLOW_PORT = 5055
DASHBOARD_PORTS = (8501, 8502)
HOST = "127.0.0.1"
DB = "mlflow"
PG_USER = "postgres"

#: Environment of every process: no network look-ups at import (LiteLLM's price table,
#: MLflow's model catalog, telemetry), and no server-side MLflow job runner.
QUIET_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_MODEL_CATALOG_URI": "",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PYTHONUNBUFFERED": "1",
}


class TeamError(RuntimeError):
    """A step failed; the message says which and where its log is."""


class Team:
    """Paths and processes of one team-mode installation."""

    def __init__(self, directory: Path, bin_dir: Path) -> None:
        self.dir = directory
        self.bin = bin_dir
        self.pg_root = directory / "pg"
        self.pg_data = self.pg_root / "data"
        self.pgpass = directory / "pgpass"
        self.artifacts = directory / "artifacts"
        self.home = directory / "home"
        self.tracking_uri = f"http://{HOST}:{MLFLOW_PORT}"

    # ----------------------------------------------------------------- helpers

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def pidfile(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def env(self) -> dict[str, str]:
        """Environment of the team's processes."""
        env = {**os.environ, **QUIET_ENV}
        env.update(
            MLFLOW_TRACKING_URI=self.tracking_uri,
            ALIGNBOARD_HOME=str(self.home),
            ALIGNBOARD_JOBS="worker",
            PGPASSFILE=str(self.pgpass),
        )
        return env

    def running_pid(self, name: str) -> int | None:
        """The pid in ``name``'s pid file if that process is alive (not a zombie)."""
        try:
            pid = int(self.pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return None
        return pid

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> int:
        """Start ``cmd`` in its own session, output to ``name``.log; write its pid file."""
        with open(self.log(name), "ab") as log:
            log.write(f"\n--- {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pidfile(name).write_text(f"{proc.pid}\n")
        return proc.pid

    def wait_http(self, name: str, url: str, timeout: float) -> None:
        """Wait until ``url`` answers 200 while process ``name`` lives."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _http_ok(url):
                return
            if self.running_pid(name) is None:
                raise TeamError(f"{name} exited during start-up; see {self.log(name)}")
            time.sleep(0.3)
        raise TeamError(f"{name} did not answer {url} within {timeout:.0f} s; see {self.log(name)}")

    # ----------------------------------------------------------------- PostgreSQL

    def pg_bin(self) -> Path:
        """Folder of the PostgreSQL server binaries; installs Debian's package if none."""
        found = _find_pg_bin()
        if found is None:
            sudo = [] if os.geteuid() == 0 else ["sudo"]
            print("PostgreSQL not found: installing Debian's postgresql package ...")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run([*sudo, "apt-get", "update"], check=True, env=env)
            subprocess.run([*sudo, "apt-get", "install", "-y", "postgresql"], check=True, env=env)
            found = _find_pg_bin()
            if found is None:
                raise TeamError("apt-get installed postgresql but no initdb was found")
        return found

    def as_owner(self, cmd: list[str]) -> list[str]:
        """Run ``cmd`` as the cluster owner (user postgres under root)."""
        return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd

    def chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, user=PG_USER, group=PG_USER)

    def pg_env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSFILE": str(self.pgpass)}

    def pg_running(self, bin_dir: Path) -> bool:
        if not (self.pg_data / "PG_VERSION").exists():
            return False
        status = subprocess.run(
            self.as_owner([str(bin_dir / "pg_ctl"), "status", "-D", str(self.pg_data)]),
            capture_output=True,
        )
        return status.returncode == 0

    def init_cluster(self, bin_dir: Path) -> None:
        """initdb with a generated superuser password; loopback TCP only."""
        self.pg_root.mkdir(parents=True, exist_ok=True)
        self.chown(self.pg_root)
        if os.geteuid() == 0:
            probe = subprocess.run(
                ["runuser", "-u", PG_USER, "--", "test", "-w", str(self.pg_root)]
            )
            if probe.returncode != 0:
                raise TeamError(
                    f"user {PG_USER} cannot reach {self.pg_root}: a parent folder is closed "
                    "to other users (e.g. /root). Clone the repository elsewhere, or set "
                    "ALIGNBOARD_TEAM_DIR to a folder it can reach."
                )
        password = secrets.token_urlsafe(24)
        pwfile = self.pg_root / "initdb.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self.chown(pwfile)
        try:
            _run(
                self.as_owner(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.pg_data),
                        "-U",
                        PG_USER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        # libpq's password file: host:port:db:user:password, readable by us only.
        fd = os.open(self.pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{HOST}:{PG_PORT}:*:{PG_USER}:{password}\n")
        (self.pg_data / "pg_hba.conf").write_text(
            "# alignboard team mode: password login over loopback TCP only\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with open(self.pg_data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# alignboard team mode\n"
                f"listen_addresses = '{HOST}'\n"
                f"port = {PG_PORT}\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
            )

    def start_pg(self) -> str:
        bin_dir = self.pg_bin()
        if not (self.pg_data / "PG_VERSION").exists():
            print(f"creating the PostgreSQL cluster in {self.pg_root} ...")
            self.init_cluster(bin_dir)
        if self.pg_running(bin_dir):
            state = "already running"
        else:
            _run(
                self.as_owner(
                    [
                        str(bin_dir / "pg_ctl"),
                        "start",
                        "-w",
                        "-t",
                        "60",
                        "-D",
                        str(self.pg_data),
                        "-l",
                        str(self.pg_root / "postgres.log"),
                    ]
                ),
                f"pg_ctl start (log: {self.pg_root / 'postgres.log'})",
            )
            state = "started"
        psql = [str(bin_dir / "psql"), "-h", HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d"]
        exists = subprocess.run(
            [*psql, "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"],
            capture_output=True,
            text=True,
            env=self.pg_env(),
        )
        if exists.returncode != 0:
            raise TeamError(f"cannot query PostgreSQL on {HOST}:{PG_PORT}: {exists.stderr.strip()}")
        if exists.stdout.strip() != "1":
            _run(
                [*psql, "postgres", "-c", f'CREATE DATABASE "{DB}"'],
                "CREATE DATABASE",
                self.pg_env(),
            )
            (self.dir / "seeded").unlink(missing_ok=True)  # a new, empty store
        return state

    def stop_pg(self) -> str:
        bin_dir = _find_pg_bin()
        if bin_dir is None or not self.pg_running(bin_dir):
            return "not running"
        _run(
            self.as_owner([str(bin_dir / "pg_ctl"), "stop", "-D", str(self.pg_data), "-m", "fast"]),
            "pg_ctl stop",
        )
        return "stopped"

    # ----------------------------------------------------------------- the rest

    def start_mlflow(self) -> str:
        if self.running_pid("mlflow") and _http_ok(f"{self.tracking_uri}/health"):
            return "already running"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        env = self.env()
        env.pop("MLFLOW_TRACKING_URI")
        self.spawn(
            "mlflow",
            [
                str(self.bin / "mlflow"),
                "server",
                "--backend-store-uri",
                f"postgresql+psycopg2://{PG_USER}@{HOST}:{PG_PORT}/{DB}",
                "--artifacts-destination",
                str(self.artifacts),
                "--host",
                HOST,
                "--port",
                str(MLFLOW_PORT),
                "--workers",
                "2",
            ],
            env,
        )
        # The first start on an empty database runs MLflow's migrations.
        self.wait_http("mlflow", f"{self.tracking_uri}/health", timeout=240)
        return "started"

    def seed(self) -> str:
        # seed-demo is idempotent but re-checks every part over REST (~30 s): once is enough.
        marker = self.dir / "seeded"
        if marker.exists():
            return "already seeded"
        _run([str(self.bin / "alignboard"), "seed-demo"], "alignboard seed-demo", self.env())
        marker.write_text(time.strftime("%F %T\n"))
        return "seeded"

    def start_worker(self) -> str:
        if self.running_pid("worker"):
            return "already running"
        probe = subprocess.run(
            [str(self.bin / "alignboard"), "worker", "--help"], capture_output=True, env=self.env()
        )
        if probe.returncode != 0:
            return "NOT STARTED: this alignboard has no `worker` command"
        self.spawn("worker", [str(self.bin / "alignboard"), "worker"], self.env())
        time.sleep(1.0)
        if self.running_pid("worker") is None:
            raise TeamError(f"the worker exited at start; see {self.log('worker')}")
        return "started"

    def start_dashboard(self, port: int) -> str:
        name = f"dashboard-{port}"
        url = f"http://{HOST}:{port}"
        if self.running_pid(name) and _http_ok(f"{url}/_stcore/health"):
            return "already running"
        self.spawn(
            name,
            [
                str(self.bin / "streamlit"),
                "run",
                "app/main.py",
                "--server.address",
                HOST,
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            self.env(),
        )
        return "started"

    def stop_process(self, name: str, grace: float = 15.0) -> str:
        """SIGTERM the process group of ``name``, SIGKILL after ``grace`` seconds."""
        pid = self.running_pid(name)
        if pid is None:
            self.pidfile(name).unlink(missing_ok=True)
            return "not running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.running_pid(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the leader, or what it left behind
        self.pidfile(name).unlink(missing_ok=True)
        return "stopped"

    # ----------------------------------------------------------------- commands

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()

        def step(what: str, fn, *args) -> None:
            started = time.monotonic()
            result = fn(*args)
            print(f"  {what:<22} {result or 'done':<18} {time.monotonic() - started:6.1f} s")

        step(f"PostgreSQL :{PG_PORT}", self.start_pg)
        step(f"mlflow server :{MLFLOW_PORT}", self.start_mlflow)
        step("demo data", self.seed)
        step("worker", self.start_worker)
        for port in DASHBOARD_PORTS:
            step(f"dashboard :{port}", self.start_dashboard, port)
        started = time.monotonic()
        for port in DASHBOARD_PORTS:
            self.wait_http(f"dashboard-{port}", f"http://{HOST}:{port}/_stcore/health", timeout=120)
        print(f"  {'dashboards healthy':<22} {'':<18} {time.monotonic() - started:6.1f} s")
        print(f"team mode is up ({time.monotonic() - t0:.1f} s):")
        self.status()

    def stop(self) -> None:
        for port in DASHBOARD_PORTS:
            print(f"  dashboard :{port:<10} {self.stop_process(f'dashboard-{port}')}")
        print(f"  {'worker':<21} {self.stop_process('worker', grace=30)}")
        print(f"  {'mlflow server':<21} {self.stop_process('mlflow')}")
        print(f"  {'PostgreSQL':<21} {self.stop_pg()}")

    def status(self) -> None:
        bin_dir = _find_pg_bin()
        pg = bin_dir is not None and self.pg_running(bin_dir)
        rows = [
            (
                "PostgreSQL",
                pg,
                f"postgresql+psycopg2://{PG_USER}@{HOST}:{PG_PORT}/{DB} (password in {self.pgpass})",
            ),
            (
                "mlflow server",
                bool(self.running_pid("mlflow")) and _http_ok(f"{self.tracking_uri}/health"),
                f"{self.tracking_uri}  (artifacts: {self.artifacts})",
            ),
            ("worker", bool(self.running_pid("worker")), f"log: {self.log('worker')}"),
        ]
        for port in DASHBOARD_PORTS:
            url = f"http://{HOST}:{port}"
            ok = bool(self.running_pid(f"dashboard-{port}")) and _http_ok(f"{url}/_stcore/health")
            rows.append((f"dashboard :{port}", ok, url))
        for name, ok, where in rows:
            print(f"  {name:<16} {'running' if ok else 'stopped':<8} {where}")
        print(f"  logs and pid files: {self.dir}")


def _find_pg_bin() -> Path | None:
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: _version(p.parent.name),
    )
    return found[-1] if found else None


def _version(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-3000:]
        raise TeamError(f"{what} failed (exit {proc.returncode}):\n{out}")


def main(argv: list[str] | None = None) -> int:
    """Run ``team.py start|stop|status``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument(
        "--bin", type=Path, default=Path(sys.executable).parent, help="the venv's bin folder"
    )
    args = parser.parse_args(argv)
    directory = Path(os.environ.get("ALIGNBOARD_TEAM_DIR") or ROOT / ".alignboard" / "team")
    team = Team(directory.resolve(), args.bin)
    try:
        getattr(team, args.command)()
    except TeamError as exc:
        print(f"team {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
