"""Job processes: one job run to its end, or a long-lived worker that claims queued jobs.

``alignboard worker [--concurrency N] [--poll S] [--id ID] [--once RUN_ID] [--no-resume]``
(:func:`serve`) imports the heavy modules once, announces itself in the registry
(:mod:`core.optimization.workers`), polls MLflow for queued runs, claims each
(:mod:`core.optimization.claims`: exactly one worker wins) and runs it in a forked child,
at most N at once; ``--once RUN_ID`` claims and runs that one run in-process.

The single-run form below is kept as it was:

``python -m core.optimization.worker RUN_ID [--resume]`` is what
:func:`core.optimization.jobs.launch` and :func:`core.optimization.jobs.resume` start in
the background. It reads the settings the run was created with
(:func:`core.optimization.engine.load_any_settings`), runs
:func:`core.optimization.engine.run_alignment` (a judge alignment) or
:func:`core.optimization.engine.run_prompt_optimization` (a prompt optimization) in that
run, and prints the result as one
JSON object on its last line of stdout (or ``{"error": ..., "message": ...}``; exit 2 for
an alignboard error such as a failed pre-flight, 1 for a crash, which the run records as
``failed``).

The process keeps a log (``jobs.log_path``) of its stdout and stderr, so both go through
:class:`RedactingStream`; SIGTERM unwinds like Ctrl-C so the run is recorded
``interrupted`` and can be resumed. :func:`prepare_job_process` sets both up, and the CLI
uses it for an alignment or optimization it runs in the foreground.

Only the standard library is imported at module level: MLflow and the optimizers load when
:func:`run_job` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from core.optimization import stop_signal

if TYPE_CHECKING:
    from core.optimization.engine import AlignmentResult
    from core.optimization.prompt_task import PromptResult
    from core.optimization.record import ScoreResult


class RedactingStream:
    """A text stream that redacts secrets before writing (a job's log file is kept)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` with every known secret replaced."""
        from core.models.secrets import redact

        return self._stream.write(redact(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C, so the engine records the job as interrupted (resumable). Noted
    # too: raised inside a weakref callback it would be swallowed (see stop_signal).
    stop_signal.note(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def prepare_job_process() -> None:
    """Make this process fit to run a job: redacted stdout/stderr and log records, and
    SIGTERM turned into ``KeyboardInterrupt`` (the run ends ``interrupted``, resumable).

    Idempotent: streams already redacting are not wrapped again.
    """
    from core.models.secrets import install_log_redaction

    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    install_log_redaction()


def run_job(run_id: str, *, resume: bool = False) -> AlignmentResult | PromptResult | ScoreResult:
    """Run the job recorded in ``run_id`` in this process: an alignment, a prompt
    optimization or a bulk scoring, whichever its settings describe.

    Args:
        run_id: A run created as ``queued`` by :func:`core.optimization.engine.create_run`
            or :func:`core.optimization.prompt_task.create_prompt_run`, or an interrupted,
            failed or cancelled one when ``resume``.
        resume: Continue the earlier attempt (gepa picks up its saved state, the
            evaluator its cache).

    Returns:
        What the run did (:class:`AlignmentResult`, :class:`PromptResult` or
        :class:`ScoreResult`); the run records the same.

    Raises:
        NotFoundError: no such run, or it is not an alignboard run.
        ValidationError: a pre-flight error (the run is marked failed).
    """
    from core.optimization.engine import (
        load_any_settings,
        run_alignment,
        run_prompt_optimization,
    )
    from core.optimization.prompt_spec import PromptSettings
    from core.optimization.score_spec import ScoreSettings
    from core.store import config

    config.configure()
    settings = load_any_settings(run_id)
    if isinstance(settings, ScoreSettings):
        from core.optimization.bulk_scoring import run_scoring

        return run_scoring(settings, run_id=run_id, resume=resume)
    if isinstance(settings, PromptSettings):
        result: PromptResult = run_prompt_optimization(settings, run_id=run_id, resume=resume)
        return result
    return run_alignment(settings, run_id=run_id, resume=resume)


def _print_error(exc: BaseException, run_id: str) -> None:
    from core.models.secrets import redact

    message = redact(str(exc))
    print(json.dumps({"error": type(exc).__name__, "message": message, "run_id": run_id}))
    print(f"error (run {run_id}): {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one job from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m core.optimization.worker",
        description="Run one alignboard job (an alignment, prompt optimization or scoring run).",
    )
    parser.add_argument("run_id", help="the job's MLflow run")
    parser.add_argument("--resume", action="store_true", help="continue an earlier attempt")
    parser.add_argument(
        "--once", action="store_true", help="claim the run's current attempt first (one-off)"
    )
    args = parser.parse_args(argv)
    if args.once:
        return run_once(args.run_id)
    prepare_job_process()
    from core.errors import AlignboardError

    try:
        result = run_job(args.run_id, resume=args.resume)
    except AlignboardError as exc:
        _print_error(exc, args.run_id)
        return 2
    except Exception as exc:
        # The crash is already recorded as failed in the run; say so briefly.
        _print_error(exc, args.run_id)
        return 1
    print(json.dumps(result.to_dict(), default=str))
    return 0


# ---- the long-lived worker ------------------------------------------------------------

#: Modules a job needs, imported once by the worker so its forked jobs start warm.
HEAVY_MODULES = (
    "mlflow",
    "mlflow.genai",
    "litellm",
    "dspy",
    "gepa",
    "core.optimization.engine",
    "core.optimization.bulk_scoring",
    "core.optimization.prompt_task",
    "core.optimization.runners",
    "core.optimization.runners.memalign_versions",
)
CONCURRENCY_ENV = "ALIGNBOARD_WORKER_CONCURRENCY"
#: A worker requeues a job whose process died at most this many times.
MAX_AUTO_RESUMES = 2
#: Jobs interrupted longer ago than this are left for a person to resume.
AUTO_RESUME_WINDOW_ENV = "ALIGNBOARD_AUTO_RESUME_WINDOW_S"
DEFAULT_AUTO_RESUME_WINDOW_S = 3600.0
#: Seconds between scans for dead jobs to resume (each costs a few reads).
RESUME_SCAN_S = 2.0
#: Seconds the children get to end ``interrupted`` after SIGTERM before SIGKILL.
STOP_GRACE_S = 20.0
_PR_SET_PDEATHSIG = 1


def default_concurrency() -> int:
    """Jobs a worker runs at once: ``ALIGNBOARD_WORKER_CONCURRENCY``, default 1."""
    try:
        return max(int(os.environ.get(CONCURRENCY_ENV) or 1), 1)
    except ValueError:
        return 1


def warm_imports() -> list[str]:
    """Import what jobs need once (forked children inherit it); returns what failed."""
    missing = []
    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # an optional optimizer missing: its jobs report it themselves
            missing.append(name)
    return missing


def reset_inherited_connections() -> None:
    """In a forked child: forget the parent's store connections without closing them.

    SQLAlchemy engines (MLflow caches one per database URI) get fresh pools
    (``dispose(close=False)`` leaves the parent's sockets/files alone), and MLflow's cached
    HTTP session is dropped, so no connection is ever used by two processes.
    """
    with contextlib.suppress(Exception):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        for engine in list(SqlAlchemyStore._engine_map.values()):
            engine.dispose(close=False)
    for module, cls in (
        ("mlflow.store.model_registry.sqlalchemy_store", "SqlAlchemyStore"),
        ("mlflow.store.jobs.sqlalchemy_store", "SqlAlchemyJobStore"),
    ):
        with contextlib.suppress(Exception):
            mod = sys.modules.get(module)
            owner = getattr(mod, cls, None) if mod else None
            for engine in list(getattr(owner, "_engine_map", {}).values()):
                engine.dispose(close=False)
    with contextlib.suppress(Exception):
        from mlflow.utils import request_utils

        request_utils._cached_get_request_session.cache_clear()


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG=SIGKILL: a worker killed with -9 takes its jobs along (they then
    show interrupted and can be resumed), instead of leaving orphans nobody watches."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _fresh_beat(client: Any, run_id: str) -> None:
    """A heartbeat just before claiming: a run claimed after waiting long in the queue would
    otherwise look stale (claimed, no process marks yet) and be reported interrupted in the
    moment before its claimant writes them. Harmless when another worker wins the claim."""
    from core.optimization import recorder as rec

    with contextlib.suppress(Exception):  # the claim itself reports a store problem
        rec.with_retry(client.set_tag, run_id, rec.TAG_HEARTBEAT, f"{time.time():.3f}")


def _start_job_tags(client: Any, run_id: str, worker_id: str) -> None:
    """The claimant's marks: who runs it (worker, pid, host, process identity), a first
    heartbeat, and ``running`` right away (before any data is loaded)."""
    from mlflow.entities import RunTag

    from core.optimization import jobs
    from core.optimization import recorder as rec

    pid = os.getpid()
    rec.with_retry(
        client.log_batch,
        run_id,
        tags=[
            RunTag(rec.TAG_WORKER, worker_id),
            RunTag(rec.TAG_PID, str(pid)),
            RunTag(rec.TAG_HOST, socket.gethostname()),
            RunTag(jobs.TAG_PROCESS, jobs.process_identity(pid) or ""),
            RunTag(rec.TAG_HEARTBEAT, f"{time.time():.3f}"),
            RunTag(rec.TAG_STATUS, "running"),
            RunTag(rec.TAG_ERROR, ""),
        ],
    )
    rec.with_retry(client.update_run, run_id, status="RUNNING")


def _cancelled_before_start(client: Any, run: Any, run_id: str) -> bool:
    """True (and the run marked cancelled) when a cancel came before the job started."""
    from core.optimization import recorder as rec

    if run.data.tags.get(rec.TAG_CANCEL, "") in ("", "0"):
        return False
    rec.set_status(client, run_id, "cancelled")
    return True


def _run_claimed(client: Any, run: Any, run_id: str, worker_id: str) -> int:
    """Run a job this process claimed (marks it running first); returns the exit status."""
    from core.errors import AlignboardError
    from core.optimization.claims import attempt_of

    if _cancelled_before_start(client, run, run_id):
        print(json.dumps({"run_id": run_id, "status": "cancelled"}))
        return 0
    _start_job_tags(client, run_id, worker_id)
    prepare_job_process()
    try:
        result = run_job(run_id, resume=attempt_of(run.data.tags) > 0)
    except AlignboardError as exc:
        _print_error(exc, run_id)
        return 2
    except KeyboardInterrupt:
        # A signal before the engine's own handler took over (settings still loading):
        # the run is marked running, so record the interruption here.
        stop_signal.acknowledge()
        _record_signal_interrupt(client, run_id)
        print(f"run {run_id} interrupted (resumable)", file=sys.stderr)
        return 130
    except Exception as exc:
        _print_error(exc, run_id)
        return 1
    print(json.dumps(result.to_dict(), default=str))
    return 0


def _record_signal_interrupt(client: Any, run_id: str) -> None:
    """Mark ``run_id`` interrupted by a signal unless its job already recorded an end."""
    import contextlib

    from core.optimization import recorder as rec

    with contextlib.suppress(Exception):  # best effort: the process is being stopped
        if client.get_run(run_id).data.tags.get(rec.TAG_STATUS) in ("queued", "running"):
            rec.set_status(client, run_id, "interrupted", error=rec.SIGNAL_INTERRUPTED)


def run_once(run_id: str, worker_id: str | None = None) -> int:
    """Claim ``run_id``'s current attempt and run it in this process (``worker --once``).

    What :func:`core.optimization.jobs.launch` starts when no worker is alive. Exit 2 when
    another process holds the claim (it runs the job) or the run does not exist.
    """
    from mlflow import MlflowClient

    from core.errors import NotFoundError
    from core.optimization.claims import claim
    from core.optimization.workers import new_worker_id
    from core.store import config

    # A SIGTERM between the claim and "running" must end the run interrupted, not kill it.
    prepare_job_process()
    config.configure()
    client = MlflowClient()
    worker_id = worker_id or "once-" + new_worker_id()
    _fresh_beat(client, run_id)
    holder, run = claim(client, run_id, worker_id)
    if run is None:
        _print_error(NotFoundError(f"No run {run_id!r} in {config.tracking_uri()}."), run_id)
        return 2
    if holder != worker_id:
        print(json.dumps({"error": "Claimed", "message": f"claimed by {holder}", "run_id": run_id}))
        print(f"run {run_id} is already claimed by {holder}", file=sys.stderr)
        return 2
    return _run_claimed(client, run, run_id, worker_id)


class Worker:
    """The serve loop of ``alignboard worker``: poll, claim, fork, reap, beat."""

    def __init__(
        self,
        *,
        concurrency: int = 1,
        poll_s: float = 0.25,
        worker_id: str | None = None,
        auto_resume: bool = True,
        launch: Callable[[list[str]], int] | None = None,
    ) -> None:
        """Configure a worker (nothing runs until :meth:`serve`).

        ``launch`` runs a detached CLI launch handed over the launch desk (the CLI passes
        its own ``main``: core does not import the CLI); None opens no desk.
        """
        from core.optimization.workers import new_worker_id

        self.concurrency = max(int(concurrency), 1)
        self.poll_s = max(float(poll_s), 0.01)
        self.worker_id = worker_id or new_worker_id()
        self.auto_resume = auto_resume
        self.launch = launch
        self.children: dict[int, str] = {}
        self.started = time.time()
        self._stopping = False
        self._last_beat = 0.0
        self._last_scan = 0.0
        self._experiments: tuple[float, list[str]] = (0.0, [])
        self.client: Any = None

    # --- registry --------------------------------------------------------------------

    def _info(self) -> Any:
        from core.optimization.workers import WorkerInfo
        from core.store import config

        return WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            started=self.started,
            beat=time.time(),
            data_dir=str(config.data_dir()),
            running=sorted(self.children.values()),
            version=_version(),
        )

    def beat(self, force: bool = False) -> None:
        """Refresh the registry entry every :data:`workers.BEAT_INTERVAL_S` (or now)."""
        from core.optimization import workers

        now = time.monotonic()
        if not force and now - self._last_beat < workers.BEAT_INTERVAL_S:
            return
        self._last_beat = now
        try:
            workers.announce(self._info(), self.client)
        except Exception as exc:  # the store away for a moment: beat again next time
            _log(f"registry beat failed: {exc}")

    # --- finding work ----------------------------------------------------------------

    def queued(self) -> list[tuple[str, int]]:
        """(run id, attempt) of claimable runs: queued, marked for workers, unclaimed for
        their current attempt, in active experiments; oldest first."""
        rows = _sqlite_rows(_QUEUED_SQL)
        if rows is not None:
            return [(r, int(a or 0)) for r, a in rows]
        from core.optimization import recorder as rec
        from core.optimization.claims import attempt_of, claim_key

        out = []
        for run in self._search(f"tags.`{rec.TAG_STATUS}` = 'queued'"):
            tags = run.data.tags
            if rec.TAG_ATTEMPT not in tags:
                continue
            attempt = attempt_of(tags)
            if claim_key(attempt) not in run.data.params:
                out.append((run.info.run_id, attempt))
        return out

    def _experiment_ids(self) -> list[str]:
        from mlflow.entities import ViewType

        at, ids = self._experiments
        if time.monotonic() - at > 10 or not ids:
            ids = [
                e.experiment_id
                for e in self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
            ]
            self._experiments = (time.monotonic(), ids)
        return ids

    def _search(self, filter_string: str) -> list[Any]:
        ids = self._experiment_ids()
        out: list[Any] = []
        for start in range(0, len(ids), 100):
            out += self.client.search_runs(
                ids[start : start + 100],
                filter_string=filter_string,
                order_by=["attributes.start_time ASC"],
                max_results=200,
            )
        out.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        return out

    def resumable(self) -> list[str]:
        """Runs marked for workers whose status is active or interrupted and whose current
        attempt was claimed: the candidates whose process may have died."""
        rows = _sqlite_rows(_CLAIMED_SQL)
        if rows is not None:
            return [r for (r,) in rows]
        from core.optimization import recorder as rec
        from core.optimization.claims import claimant

        out = []
        for state in ("running", "queued", "interrupted"):
            for run in self._search(f"tags.`{rec.TAG_STATUS}` = '{state}'"):
                if rec.TAG_ATTEMPT in run.data.tags and claimant(run):
                    out.append(run.info.run_id)
        return out

    def scan_dead(self) -> None:
        """Requeue jobs whose process died (at most :data:`MAX_AUTO_RESUMES` times each,
        never one a person cancelled); exactly one worker requeues each."""
        from core.optimization import jobs
        from core.optimization import recorder as rec
        from core.optimization.claims import CLAIM_PREFIX, claim

        window = _float_env(AUTO_RESUME_WINDOW_ENV, DEFAULT_AUTO_RESUME_WINDOW_S)
        mine = set(self.children.values())
        for run_id in self.resumable():
            if run_id in mine:
                continue
            try:
                st = jobs.status(run_id)  # records interrupted when the process is gone
            except Exception:
                continue
            if st.status != "interrupted" or st.cancel_requested:
                continue
            if st.ended is not None and time.time() - st.ended > window:
                continue
            run = self.client.get_run(run_id)
            tags = run.data.tags
            done = _int(tags.get(rec.TAG_AUTO_RESUMES))
            if done >= MAX_AUTO_RESUMES:
                continue
            # One requeue per attempt, whoever races for it: the same immutable-param trick.
            key = f"{CLAIM_PREFIX}resume.{st.attempt}"
            holder, _ = claim(self.client, run_id, self.worker_id, key=key)
            if holder != self.worker_id:
                continue
            jobs.requeue(self.client, run_id, st.attempt + 1, {rec.TAG_AUTO_RESUMES: str(done + 1)})
            _log(f"requeued interrupted run {run_id} (attempt {st.attempt + 1})")

    # --- running -----------------------------------------------------------------------

    def start_child(self, run: Any, run_id: str) -> int:
        """Fork a child that runs the claimed ``run``; returns its pid."""
        from core.optimization import jobs

        log = jobs.log_path(run_id)  # creates the job folder in the parent, once
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = run_id
            return pid
        code = 1
        try:
            _die_with_parent(parent)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            reset_inherited_connections()
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            from mlflow import MlflowClient

            # SIGTERM must unwind into "interrupted" from here on, also before "running".
            prepare_job_process()
            print(f"worker {self.worker_id}: run {run_id} in pid {os.getpid()}", flush=True)
            code = _run_claimed(MlflowClient(), run, run_id, self.worker_id)
        except BaseException as exc:  # never return into the parent's loop
            with contextlib.suppress(Exception):
                print(f"job process crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        return 0  # pragma: no cover

    def reap(self) -> None:
        """Collect ended children (never leaves zombies)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            run_id = self.children.pop(pid, None)
            if run_id is not None:
                _log(f"run {run_id} (pid {pid}) ended: exit {os.waitstatus_to_exitcode(status)}")
                self.beat(force=True)

    def claim_some(self) -> None:
        """Claim and start queued runs while slots are free."""
        from core.optimization.claims import claim

        if len(self.children) >= self.concurrency:
            return
        for run_id, attempt in self.queued():
            if len(self.children) >= self.concurrency or self._stopping:
                return
            _fresh_beat(self.client, run_id)
            holder, run = claim(self.client, run_id, self.worker_id, attempt)
            if holder == self.worker_id and run is not None:
                pid = self.start_child(run, run_id)
                _log(f"claimed run {run_id} (attempt {attempt}), pid {pid}")
                self.beat(force=True)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; then end the jobs interrupted and withdraw; exit 0."""
        from mlflow import MlflowClient

        from core.optimization import workers
        from core.store import config

        # Handlers first: a stop asked for during the imports still ends cleanly.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        missing = warm_imports()
        config.configure()
        self.client = MlflowClient()
        with contextlib.suppress(Exception):
            workers.prune(self.client)
        self.beat(force=True)
        desk = self._open_desk() if self.launch is not None else None
        _log(
            f"worker {self.worker_id} on {config.tracking_uri()}: concurrency "
            f"{self.concurrency}, poll {self.poll_s}s"
            + (f" (not importable: {', '.join(missing)})" if missing else "")
        )
        try:
            while not self._stopping:
                self.reap()
                self.beat()
                try:
                    if self.auto_resume and time.monotonic() - self._last_scan >= RESUME_SCAN_S:
                        self._last_scan = time.monotonic()
                        self.scan_dead()
                    self.claim_some()
                except Exception as exc:  # the store away: try again at the next poll
                    _log(f"poll failed: {type(exc).__name__}: {exc}")
                self._wait(desk)
        finally:
            if desk is not None:
                desk.close()
            self.stop_children()
            workers.withdraw(self.worker_id, self.client)
            _log(f"worker {self.worker_id} stopped")
        return 0

    def _open_desk(self) -> Any:
        """The launch desk for detached CLI launches (None when it cannot be opened)."""
        from core.optimization.handoff import LaunchDesk
        from core.store import config

        try:
            return LaunchDesk(config.data_dir(), config.tracking_uri(), self.worker_id)
        except OSError as exc:
            _log(f"no launch desk ({exc}): the CLI launches by itself")
            return None

    def _wait(self, desk: Any) -> None:
        """Sleep one poll interval, answering a detached CLI launch if one comes."""
        if desk is None or self.launch is None:
            time.sleep(self.poll_s)
            return
        try:
            if desk.wait(self.poll_s, self.launch):
                _log("took a detached launch from the CLI")
        except Exception as exc:  # a bad request never stops the worker
            _log(f"launch desk: {type(exc).__name__}: {exc}")

    def stop_children(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every child (they end ``interrupted``, resumable), wait, then SIGKILL."""
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while self.children:
                pid, _ = os.waitpid(-1, 0)
                self.children.pop(pid, None)


def serve(
    *,
    concurrency: int | None = None,
    poll_s: float = 0.25,
    worker_id: str | None = None,
    once: str | None = None,
    auto_resume: bool = True,
    launch: Callable[[list[str]], int] | None = None,
) -> int:
    """``alignboard worker``: serve queued jobs until stopped, or run ``once`` and exit
    (``launch``: see :class:`Worker`)."""
    if once:
        return run_once(once, worker_id)
    worker = Worker(
        concurrency=concurrency or default_concurrency(),
        poll_s=poll_s,
        worker_id=worker_id,
        auto_resume=auto_resume,
        launch=launch,
    )
    return worker.serve()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("alignboard")
    except Exception:
        return ""


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


def _int(text: str | None) -> int:
    try:
        return int(float(text or 0))
    except ValueError:
        return 0


# Read straight from a local sqlite store (read-only, like core/store/run_reads.py): one
# cheap query per poll instead of MLflow's search per experiment.
_QUEUED_SQL = """
SELECT r.run_uuid, a.value FROM runs r
JOIN experiments e ON e.experiment_id = r.experiment_id AND e.lifecycle_stage = 'active'
JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'alignboard.status' AND s.value = 'queued'
JOIN tags a ON a.run_uuid = r.run_uuid AND a.key = 'alignboard.attempt'
WHERE r.lifecycle_stage = 'active' AND NOT EXISTS (
  SELECT 1 FROM params p WHERE p.run_uuid = r.run_uuid
  AND p.key = 'alignboard.claim.' || COALESCE(NULLIF(a.value, ''), '0'))
ORDER BY r.start_time, r.run_uuid LIMIT 100
"""
_CLAIMED_SQL = """
SELECT r.run_uuid FROM runs r
JOIN experiments e ON e.experiment_id = r.experiment_id AND e.lifecycle_stage = 'active'
JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'alignboard.status'
  AND s.value IN ('queued', 'running', 'interrupted')
JOIN tags a ON a.run_uuid = r.run_uuid AND a.key = 'alignboard.attempt'
WHERE r.lifecycle_stage = 'active' AND EXISTS (
  SELECT 1 FROM params p WHERE p.run_uuid = r.run_uuid
  AND p.key = 'alignboard.claim.' || COALESCE(NULLIF(a.value, ''), '0'))
ORDER BY r.start_time, r.run_uuid LIMIT 200
"""


def _sqlite_rows(sql: str) -> list[tuple[Any, ...]] | None:
    """Rows of ``sql`` on a local sqlite store, or None (another store: ask MLflow)."""
    import sqlite3

    from core.store import run_reads

    file = run_reads.sqlite_file()
    if file is None:
        return None
    try:
        conn = sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return list(conn.execute(sql))
        finally:
            conn.close()
    except sqlite3.Error:
        return None


if __name__ == "__main__":
    sys.exit(main())
