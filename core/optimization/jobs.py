"""Optimization jobs (judge alignments and prompt optimizations): launched as their own
process, watched and steered through MLflow.

A job is an MLflow run plus a detached process running ``python -m
core.optimization.worker RUN_ID`` (:mod:`core.optimization.worker`), whatever the run
optimizes: the worker reads the run's settings and runs the matching task.
Everything the dashboard needs is in the run (status and heartbeat tags, metrics,
artifacts), so a restarted web server, or another dashboard on the same store, picks up
where it was.

- :func:`launch` creates the run (``queued``) and starts the process in its own session,
  so it outlives the process that launched it.
- :func:`status` reads the run; a ``running``/``queued`` job whose process is gone is
  reported, and recorded, as ``interrupted`` (see :func:`status` for when "gone" is
  certain at once, after a short grace, or only after the heartbeat is stale).
- :func:`cancel` sets a tag the job reads at its next iteration boundary (cooperative;
  the best candidate so far is still scored on the held-out split, and registered only
  when the run was launched with ``register_if_cancelled``).
- :func:`resume` relaunches an interrupted, failed or cancelled run; gepa continues from
  its saved state in the job folder (and the evaluator from its cache there).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import NotFoundError, ValidationError
from core.optimization import recorder as rec
from core.optimization.claims import attempt_of, claim_key
from core.optimization.preflight import Finding, refuse_on_errors
from core.optimization.prompt_spec import PromptSettings
from core.optimization.score_spec import KIND_SCORE, TAG_SCORE_VERSION, ScoreSettings
from core.optimization.spec import AlignmentSettings
from core.store import config, run_reads
from core.store.run_reads import RunSnapshot

if TYPE_CHECKING:
    from core.optimization.bulk_scoring import ScoreCheck
    from core.optimization.prompt_preflight import PromptCheck
    from core.optimization.settings import AlignmentCheck

# MLflow, the engine and the settings builder are imported by the functions that write or
# launch: :func:`status` on a local sqlite store reads without them, so ``alignboard
# status`` starts in a fraction of ``import mlflow``.

STALE_ENV = "ALIGNBOARD_HEARTBEAT_STALE_S"
DEFAULT_STALE_S = 30.0
#: ``<pid>:<start time>:<boot id>:<pid namespace>`` of the job process, written when it is
#: spawned: proves, on the same machine, whether that pid still is the job's process.
TAG_PROCESS = rec.TAG_PREFIX + "process"
LOG_FILE = "job.log"
#: The job process's entry point (``python -m``), see :func:`job_command`.
WORKER_MODULE = "core.optimization.worker"
# What a job process's command line holds: the worker, or ``alignboard align`` /
# ``alignboard resume`` running one in the foreground.
_JOB_PROGRAMS = (WORKER_MODULE.encode(), b"core.cli", b"alignboard")
_ROOT = Path(__file__).resolve().parents[2]
# Metric names runners use for progress, most specific first.
_BEST_KEYS = ("best_score", "best_val_score", "val_best", "best_so_far")
_CALL_KEYS = ("metric_calls", "metric_calls_total")
# Logged with the verdict: 1.0 when the accuracy gain's interval excludes zero.
_SIGNIFICANT_METRIC = "test_verdict_significant"
# Prompt runs: the names of core.optimization.prompt_task (KIND_PROMPT, TAG_PROMPT,
# TAG_PROMPT_VERSION), spelled here because that module loads numpy and the evaluator,
# which the status path must not; tests/optimization/test_prompt_jobs.py keeps them equal.
KIND_PROMPT = "prompt_optimization"
TAG_PROMPT = rec.TAG_PREFIX + "prompt"
TAG_PROMPT_VERSION = rec.TAG_PREFIX + "prompt_version"
_SCORE_BEFORE, _SCORE_AFTER = "test_score_before", "test_score_after"
#: Why a run registered nothing (``cancelled``, ``worse`` or ``unchanged``, see
#: :mod:`core.optimization.verdict`), written by the engine; absent when it registered one.
TAG_NOT_REGISTERED = rec.TAG_PREFIX + "not_registered_reason"
#: Why the search stopped (:data:`core.optimization.stopping.TAG_STOP_REASON`).
TAG_STOP_REASON = rec.TAG_PREFIX + "stop_reason"
#: Shortest run-id prefix the CLI resolves (:func:`resolve_run_id`).
MIN_PREFIX = 8


@dataclass(frozen=True)
class JobStatus:
    """Where an optimization job stands, as any process reading the store sees it."""

    run_id: str
    """The job's MLflow run."""
    status: str
    """queued, running, finished, failed, cancelled or interrupted."""
    heartbeat_age_s: float | None
    """Seconds since the job last said it was alive (None before its first beat)."""
    iteration: int | None
    """Highest iteration logged so far."""
    metric_calls: int | None
    """Judge evaluations spent so far."""
    budget: int | None
    """The metric-call budget in force."""
    best_score: float | None
    """Best validation score so far, when the optimizer reports one."""
    error: str | None
    """Why it failed (redacted), if it did."""
    started: float | None
    """Run start, epoch seconds."""
    ended: float | None
    """Run end, epoch seconds (None while it runs)."""
    optimizer: str | None = None
    """Which optimizer."""
    judge_name: str | None = None
    """The judge being aligned."""
    judge_version: int | None = None
    """Registered version of the aligned judge, once there is one."""
    cancel_requested: bool = False
    """A cancel was asked for and not yet honoured."""
    pid: int | None = None
    """Process id of the job (on ``host``)."""
    host: str | None = None
    """Machine running the job."""
    verdict: str | None = None
    """Held-out verdict once the run has one: ``improved``, ``no_change`` or ``worse``."""
    significant: bool | None = None
    """Whether the verdict's accuracy difference is significant (with the verdict)."""
    registered: bool | None = None
    """Whether a version (judge or prompt) was registered: None until the run decided."""
    kind: str | None = None
    """``alignment`` or ``prompt_optimization`` (the run's ``alignboard.kind``)."""
    prompt_name: str | None = None
    """Prompt runs: the optimized prompt (the first, when several are optimized)."""
    base_version: int | None = None
    """Prompt runs: the version the optimization started from."""
    prompt_version: int | None = None
    """Prompt runs: the new version registered, once there is one."""
    test_score_before: float | None = None
    """Prompt runs: the seed prompt's mean held-out score, once scored."""
    test_score_after: float | None = None
    """Prompt runs: the best prompt's mean held-out score, once scored."""
    n_total: int | None = None
    """Scoring runs: traces selected (None for other kinds, and before the first batch)."""
    n_scored: int | None = None
    """Scoring runs: verdicts written so far."""
    n_skipped: int | None = None
    """Scoring runs: traces that already carried the version's verdict."""
    n_failed: int | None = None
    """Scoring runs: traces whose judge call failed after retries."""
    not_registered_reason: str | None = None
    """Why the run registered nothing (``cancelled``, ``worse``, ``unchanged``), once it
    decided; None when it registered a version or has not decided yet."""
    register_if_cancelled: bool | None = None
    """The run's "Register if cancelled" choice (its ``register_if_cancelled`` param)."""
    worker: str | None = None
    """Id of the worker that claimed the current attempt (None while unclaimed)."""
    attempt: int = 0
    """The job's attempt: 0 for the first, +1 on each resume."""
    stop_reason: str | None = None
    """Why the search stopped (the ``alignboard.stop_reason`` tag: ``budget``,
    ``perfect_score``, ``no_improvement``...; :mod:`core.optimization.stopping`), once the
    run ended; None before, and for runs that do not say."""

    @property
    def is_prompt(self) -> bool:
        """True for a prompt optimization run."""
        return self.kind == KIND_PROMPT

    @property
    def is_score(self) -> bool:
        """True for a bulk scoring run."""
        return self.kind == KIND_SCORE

    @property
    def active(self) -> bool:
        """True while the job is queued or running."""
        return self.status in ("queued", "running")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def stale_after_s() -> float:
    """Heartbeat age beyond which a job is presumed dead."""
    try:
        return float(os.environ.get(STALE_ENV) or DEFAULT_STALE_S)
    except ValueError:
        return DEFAULT_STALE_S


def grace_s() -> float:
    """Heartbeat age beyond which a job on this machine whose pid has no process left (or
    a zombie) is presumed dead: two heartbeat intervals, never more than
    :func:`stale_after_s`. Shorter than the stale rule because the pid was checked too."""
    try:
        interval = float(
            os.environ.get(rec.HEARTBEAT_INTERVAL_ENV) or rec.DEFAULT_HEARTBEAT_INTERVAL_S
        )
    except ValueError:
        interval = rec.DEFAULT_HEARTBEAT_INTERVAL_S
    return min(2 * max(interval, rec.HEARTBEAT_MIN_INTERVAL_S), stale_after_s())


def log_path(run_id: str) -> Path:
    """The job process's log file (stdout and stderr, secrets redacted)."""
    return rec.job_dir(run_id) / LOG_FILE


def job_command(run_id: str, *, resume: bool = False) -> list[str]:
    """The command line of a job process: the worker entry point, on this interpreter."""
    cmd = [sys.executable, "-m", WORKER_MODULE, run_id]
    return [*cmd, "--resume"] if resume else cmd


def once_command(run_id: str) -> list[str]:
    """The command line of a one-off job process: a worker that claims ``run_id``'s current
    attempt, runs it in the same process and exits (``worker --once``)."""
    return [sys.executable, "-m", WORKER_MODULE, "--once", run_id]


def _dispatch(run_id: str, *, resume: bool) -> None:
    """Hand a queued run to whoever will run it, by :func:`workers.jobs_mode`: a live
    worker (only queued), or a one-off ``worker --once`` process when none is alive
    (``auto``) or always (``spawn``); ``worker`` mode only queues."""
    from core.optimization import workers

    mode = workers.jobs_mode()
    if mode == "worker":
        return
    if mode == "auto":
        try:
            if workers.alive_workers():
                return
        except Exception:
            pass  # the registry unreadable: start the job here rather than leave it waiting
    _spawn(run_id, resume=resume, once=True)


def _spawn(run_id: str, *, resume: bool, once: bool = False) -> int:
    log = log_path(run_id)
    env = {
        **os.environ,
        # The child must write to the very store (and data folder) this process uses.
        "MLFLOW_TRACKING_URI": config.tracking_uri(),
        config.HOME_ENV: str(config.data_dir()),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            once_command(run_id) if once else job_command(run_id, resume=resume),
            cwd=_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the launcher (and its Ctrl-C / restart)
            close_fds=True,
        )
    # Read before the reaper may run: a child that already ended has no identity to record.
    identity = process_identity(proc.pid)
    # Reap the child when it ends so it never lingers as a zombie of a long-lived server.
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    client = MlflowClient()
    rec.with_retry(
        client.log_batch,
        run_id,
        tags=[
            RunTag(rec.TAG_PID, str(proc.pid)),
            RunTag(rec.TAG_HOST, socket.gethostname()),
            RunTag(TAG_PROCESS, identity or ""),
            # The first beat: a job that dies before starting still goes stale in time.
            RunTag(rec.TAG_HEARTBEAT, f"{time.time():.3f}"),
        ],
    )
    return proc.pid


def launch(
    settings: AlignmentSettings | PromptSettings | ScoreSettings,
    *,
    check: bool | AlignmentCheck | PromptCheck | ScoreCheck | Sequence[Finding] = True,
    allow_concurrent: bool = False,
) -> str:
    """Start an alignment, a prompt optimization or a bulk scoring as a background process.

    Args:
        settings: What to align (:class:`AlignmentSettings`) or which prompt to optimize
            (:class:`PromptSettings`), and how.
        check: What pre-flight this launch has: the :class:`AlignmentCheck` or
            :class:`PromptCheck` (or its findings) the caller just computed for exactly
            these settings, handed on so the data is not scanned again here nor in the job;
            True runs the checks here first, so mistakes are reported at once instead of
            as a failed job; False leaves them to the job process. The findings are
            recorded in the run.
        allow_concurrent: Alignments: start even while a run for the same experiment and
            judge is queued or running (refused otherwise: one click, one run). Prompt
            optimizations never collide (each registers its own version), so it is
            ignored for them. Scoring: start even while another scoring of the same
            judge version is active (refused otherwise: both would judge the same traces).
            A :class:`ScoreCheck` for ``check`` also hands on the selected traces.

    Returns:
        The run id; follow it with :func:`status`.

    Raises:
        ValidationError: a pre-flight error, or another run of this judge is active
            (nothing was created).
    """
    config.configure()
    if isinstance(settings, ScoreSettings):
        run_id = _create_score_run(settings, check, allow_concurrent)
    elif isinstance(settings, PromptSettings):
        run_id = _create_prompt_run(settings, check)
    else:
        run_id = _create_alignment_run(settings, check, allow_concurrent)
    _mark_for_workers(run_id)
    _dispatch(run_id, resume=False)
    return run_id


def _mark_for_workers(run_id: str) -> None:
    """Make a queued run claimable: its ``alignboard.attempt`` tag ("0").

    Workers only pick up queued runs that carry the tag, so a run the CLI creates and runs
    in the foreground (``alignboard align`` without ``--detach``) is never taken over.
    """
    from mlflow import MlflowClient

    rec.with_retry(MlflowClient().set_tag, run_id, rec.TAG_ATTEMPT, "0")


def _given_findings(check: Any) -> list[Finding]:
    """The findings of a check handed to :func:`launch`."""
    return list(getattr(check, "findings", check))


def _create_alignment_run(
    settings: AlignmentSettings,
    check: Any,
    allow_concurrent: bool,
) -> str:
    from core.optimization.engine import create_run, load_and_check

    findings: list[Finding] | None = None
    if check is True:
        findings = load_and_check(settings)[3]
    elif check is not False:
        findings = _given_findings(check)
        refuse_on_errors(findings)
    return create_run(
        settings, status="queued", findings=findings, allow_concurrent=allow_concurrent
    )


def _create_score_run(settings: ScoreSettings, check: Any, allow_concurrent: bool) -> str:
    from core.optimization.bulk_scoring import ScoreCheck, check_scoring, create_score_run

    if check is True:
        check = check_scoring(settings)
    elif check is not False and not isinstance(check, ScoreCheck):
        # Findings alone: the job selects the traces itself.
        refuse_on_errors(_given_findings(check), "Scoring")
        check = None
    return create_score_run(
        settings,
        "queued",
        check=check if isinstance(check, ScoreCheck) else None,
        allow_concurrent=allow_concurrent,
    )


def _create_prompt_run(settings: PromptSettings, check: Any) -> str:
    from core.optimization.prompt_preflight import preflight_prompt
    from core.optimization.prompt_task import create_prompt_run

    findings: list[Finding] | None = None
    if check is True:
        findings = preflight_prompt(settings)[1]
    elif check is not False:
        findings = _given_findings(check)
    if findings is not None:
        refuse_on_errors(findings, "Prompt optimization")
    return create_prompt_run(settings, "queued", findings=findings)


def active_runs(
    experiment_id: str,
    judge_name: str,
    *,
    kind: str = rec.KIND_ALIGNMENT,
    tags: Mapping[str, str] | None = None,
) -> list[JobStatus]:
    """The runs of ``kind`` (alignments by default) for ``judge_name`` that are queued or
    running, oldest first; ``tags`` narrows them further (e.g. a scoring run's version).

    Dead ones (their process is gone) are recorded ``interrupted`` and left out.
    """
    from mlflow import MlflowClient

    config.configure()
    client = MlflowClient()
    found: list[Any] = []
    extra = "".join(f" AND tags.`{k}` = '{v}'" for k, v in sorted((tags or {}).items()))
    for state in ("queued", "running"):
        found += client.search_runs(
            [str(experiment_id)],
            filter_string=(
                f"tags.`{rec.TAG_KIND}` = '{kind}' AND "
                f"tags.`{rec.TAG_JUDGE}` = '{judge_name}' AND "
                f"tags.`{rec.TAG_STATUS}` = '{state}'" + extra
            ),
            max_results=100,
        )
    found.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
    out = []
    for run in found:
        now = _status_of(RunSnapshot.from_mlflow(run), check=True)
        if now.active:
            out.append(now)
    return out


def refuse_if_active(experiment_id: str, judge_name: str, *, created: Any = None) -> None:
    """Refuse a launch while another run of the same judge is queued or running.

    Args:
        experiment_id: The experiment.
        judge_name: The judge (= criterion) name.
        created: The run this launch just created (an MLflow ``Run``), checked after
            its creation: runs that started before it, or less than
            :data:`RACE_WINDOW_MS` after it, count. Two launches that raced past the
            first check then never both go ahead: the later one always sees the earlier
            (or the earlier sees the later, when the store made it visible first); when
            both see each other both back out, and a click again starts one.

    Raises:
        ValidationError: says which run is active and what to do.
    """
    others = active_runs(experiment_id, judge_name)
    if created is not None:
        mine = created.info.start_time or 0
        others = [
            j
            for j in others
            if j.run_id != created.info.run_id and _start_ms(j) < mine + RACE_WINDOW_MS
        ]
    if not others:
        return
    first = others[0]
    raise ValidationError(
        f"A {first.optimizer or 'alignment'} run for judge {judge_name!r} is already "
        f"{first.status} (run {first.run_id}). Wait for it to finish, cancel it with "
        f"`alignboard cancel {first.run_id}`, or start another alongside it on purpose: "
        "tick 'Run another alongside it' on the Align page, or pass --allow-concurrent to "
        "alignboard align."
    )


#: A run another launch created this soon after ours may have raced ours (its start time
#: is taken before it is written): both back out rather than both go ahead.
RACE_WINDOW_MS = 2000


def _start_ms(job: JobStatus) -> int:
    return round((job.started or 0) * 1000)


# ---- is the job's process still there? ------------------------------------------------
# Verdicts of _probe, strongest first.
_GONE = "gone"  # proven: no process, a zombie, or another process under a reused pid
_NO_PROCESS = "no-process"  # no process (or a zombie) with that pid, identity unproven
_NOT_OURS = "not-ours"  # a process lives under that pid but runs another program
_UNSEEN = "unseen"  # the job's pid namespace is not this one: its pid says nothing here
_ALIVE = "alive"


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) from ``/proc/<pid>/stat``, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces and parentheses: split after its end.
        fields = text.rsplit(")", 1)[1].split()
        return fields[0], fields[19]  # fields 3 (state) and 22 (starttime)
    except (OSError, IndexError):
        return None


def _read(path: str) -> str:
    try:
        return os.readlink(path) if path.startswith("/proc/self/ns/") else Path(path).read_text()
    except OSError:
        return ""


def _machine() -> tuple[str, str]:
    """(boot id, pid namespace) of this process: where its pids mean the same thing."""
    return _read("/proc/sys/kernel/random/boot_id").strip(), _read("/proc/self/ns/pid")


def process_identity(pid: int) -> str | None:
    """``<pid>:<start ticks>:<boot id>:<pid namespace>`` of a live process, or None.

    Recorded as ``alignboard.process`` when a job is spawned; a later process under the
    same pid has another start time, so a recycled pid is told from the job. None where
    ``/proc`` is not available (not Linux) or the process is already gone.
    """
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    boot, namespace = _machine()
    return f"{pid}:{stat[1]}:{boot}:{namespace}"


def _probe(pid: int, identity: str | None) -> str:
    """What became of the job process ``pid``, run on this host (by its host tag).

    With an ``identity`` recorded for this very pid in this boot and pid namespace the
    answer is certain (``_GONE`` or ``_ALIVE``). Without one it is only as good as the pid:
    ``_NO_PROCESS`` (nothing, or a zombie, has it) or ``_NOT_OURS`` (a program other than
    alignboard's worker or CLI has it, likely a recycled pid).
    """
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return _ALIVE
    parts = (identity or "").split(":", 3)
    proven = len(parts) == 4 and parts[0] == str(pid) and bool(parts[1])
    if proven and tuple(parts[2:]) != _machine():
        # Same host name, another boot or pid namespace (a restarted machine, a container
        # sharing its host's name): this pid cannot be checked from here.
        return _UNSEEN
    dead = _GONE if proven else _NO_PROCESS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return dead
    except PermissionError:
        pass  # it exists, under another user: only its /proc entry can tell if it is ours
    except OSError:
        return _ALIVE  # cannot tell: never report a live job dead on a guess
    stat = _proc_stat(pid)
    if stat is None:
        # No /proc (not Linux): the pid exists, which is all that can be known. With /proc,
        # the process ended between the two checks.
        return dead if Path("/proc/self/stat").exists() else _ALIVE
    state, started = stat
    if state in ("Z", "X"):
        # Killed but not yet reaped by its parent (a zombie): dead for our purpose.
        return dead
    if proven:
        return _ALIVE if started == parts[1] else _GONE  # another start time: pid reused
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _ALIVE
    return _ALIVE if any(p in cmdline for p in _JOB_PROGRAMS) else _NOT_OURS


def _verdict(tags: Mapping[str, str], age: float) -> str | None:
    """Why a queued/running job whose heartbeat is ``age`` s old is dead, or None."""
    pid, host = _int(tags.get(rec.TAG_PID)), tags.get(rec.TAG_HOST)
    stale = age > stale_after_s()
    if not (pid and host == socket.gethostname()):
        return "heartbeat" if stale else None
    probe = _probe(pid, tags.get(TAG_PROCESS) or None)
    if probe == _GONE or (probe == _NO_PROCESS and age > grace_s()):
        return "process"
    if probe in (_NOT_OURS, _UNSEEN) and stale:
        return "heartbeat"
    return None


def _interrupted_message(run_id: str, why: str, tags: Mapping[str, str], age: float) -> str:
    if why == "process":
        what = (
            f"The job process (pid {tags.get(rec.TAG_PID)} on {tags.get(rec.TAG_HOST)}) "
            f"ended without finishing: it was killed or crashed (last heartbeat {age:.0f} s "
            "ago)."
        )
        log = config.data_dir() / "jobs" / run_id / LOG_FILE
        if log.is_file():
            what += f" Its log: {log}."
    else:
        what = (
            f"The job process stopped sending heartbeats {age:.0f} s ago (it was killed "
            "or its machine restarted)."
        )
    return f"{what} Continue it with: alignboard resume {run_id}"


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _int(text: Any) -> int | None:
    value = _float(None if text is None else str(text))
    return None if value is None else int(value)


def _first(metrics: Mapping[str, float], keys: tuple[str, ...]) -> float | None:
    return next((metrics[k] for k in keys if k in metrics), None)


def status(run_id: str) -> JobStatus:
    """Read where a job stands; record ``interrupted`` if its process died.

    A ``queued``/``running`` job is interrupted when

    - it ran on this machine (its host tag is this host name) and its process is provably
      gone: the recorded pid has no process, only a zombie, or a process with another start
      time than the one recorded at spawn (a recycled pid). Reported at once, so a
      ``kill -9`` shows within one poll of the dashboard;
    - it ran on this machine without a recorded start time (run in the foreground, not
      spawned by :func:`launch`/:func:`resume`) and its pid has no process or a zombie,
      once the heartbeat is older than :func:`grace_s` (two heartbeat intervals);
    - otherwise (another machine, another pid namespace, or a pid now held by some other
      program), once its heartbeat is older than ``ALIGNBOARD_HEARTBEAT_STALE_S``
      (default 30 s). A live process of the job on this machine is never interrupted.

    Before recording ``interrupted`` the run is read again, so a job that finished (or was
    resumed elsewhere) in the meantime keeps its own status.

    Reads go straight to the sqlite file of a local store (:mod:`core.store.run_reads`,
    read-only, no MLflow import), through ``MlflowClient`` otherwise; the one write
    (``interrupted``) always goes through ``MlflowClient``.

    Raises:
        NotFoundError: no such run.
    """
    return _status_of(_read_run(run_id), check=True)


def _read_run(run_id: str) -> RunSnapshot:
    """The run as the store holds it now, by the cheapest read that gives MLflow's answer."""
    try:
        snapshot = run_reads.read_run(run_id, config.tracking_uri())
        if snapshot is None:
            from mlflow import MlflowClient

            config.configure()
            snapshot = RunSnapshot.from_mlflow(MlflowClient().get_run(run_id))
    except Exception as exc:
        raise NotFoundError(
            f"No run {run_id!r} in {config.tracking_uri()}; list the experiment's runs in "
            "the Run explorer, or check MLFLOW_TRACKING_URI."
        ) from exc
    return snapshot


def _watched_tags(tags: Mapping[str, str]) -> tuple[str | None, ...]:
    keys = (rec.TAG_STATUS, rec.TAG_HEARTBEAT, rec.TAG_PID, TAG_PROCESS, rec.TAG_ATTEMPT)
    return tuple(tags.get(k) for k in keys)


def _status_of(run: RunSnapshot, *, check: bool, now: float | None = None) -> JobStatus:
    """The job status of ``run`` at time ``now`` (default: now); with ``check``, a dead
    job is recorded ``interrupted`` (read again first, written through MLflow)."""
    run_id = run.run_id
    tags, metrics = run.tags, run.metrics
    state = tags.get(rec.TAG_STATUS, "queued")
    beat = _float(tags.get(rec.TAG_HEARTBEAT))
    if beat is None and run.start_time:
        beat = run.start_time / 1000
    now = time.time() if now is None else now
    age = None if beat is None else max(now - beat, 0.0)
    pid, host = _int(tags.get(rec.TAG_PID)), tags.get(rec.TAG_HOST)
    error = tags.get(rec.TAG_ERROR) or None
    ended = run.end_time / 1000 if run.end_time else None
    attempt = attempt_of(tags)
    worker = run.params.get(claim_key(attempt)) or None
    # A queued run no process took yet waits for a worker: it is not dead. (A run handed to
    # a one-off process has that process's pid, which is checked as before.)
    waiting = state == "queued" and worker is None and not tags.get(rec.TAG_PID)
    why = (
        _verdict(tags, age)
        if state in ("queued", "running") and age is not None and not waiting
        else None
    )
    if why is not None and age is not None and check:
        # The process was seen dead, so it can write nothing more: what the store holds now
        # is final. If it finished, or a resume started a new process, keep that instead.
        fresh = _read_run(run_id)
        if _watched_tags(fresh.tags) != _watched_tags(tags):
            return _status_of(fresh, check=False, now=now)
        state = "interrupted"
        error = _interrupted_message(run_id, why, tags, age)
        from mlflow import MlflowClient

        config.configure()
        rec.set_status(MlflowClient(), run_id, "interrupted", error=error)
        ended = now
    kind = tags.get(rec.TAG_KIND) or None
    prompt = kind == KIND_PROMPT
    score = kind == KIND_SCORE
    # A scoring run names the version it scores; it registers none.
    version = _int(tags.get(TAG_SCORE_VERSION if score else rec.TAG_JUDGE_VERSION))
    prompt_version = _int(tags.get(TAG_PROMPT_VERSION)) if prompt else None
    verdict = tags.get(rec.TAG_VERDICT) or None
    return JobStatus(
        run_id=run_id,
        status=state,
        heartbeat_age_s=None if age is None else round(age, 3),
        iteration=_int(tags.get(rec.TAG_ITERATION)),
        metric_calls=_int(_first(metrics, _CALL_KEYS)),
        budget=_int(tags.get(rec.TAG_BUDGET)),
        best_score=_first(metrics, _BEST_KEYS),
        error=error,
        started=run.start_time / 1000 if run.start_time else None,
        ended=ended,
        optimizer=tags.get(rec.TAG_OPTIMIZER),
        judge_name=tags.get(rec.TAG_JUDGE),
        judge_version=version,
        cancel_requested=tags.get(rec.TAG_CANCEL, "") not in ("", "0"),
        pid=pid,
        host=host,
        verdict=verdict,
        significant=_significant(metrics) if verdict else None,
        registered=None
        if score
        else _registered(prompt_version if prompt else version, verdict, state),
        kind=kind,
        prompt_name=(tags.get(TAG_PROMPT) or None) if prompt else None,
        base_version=_base_version(run.params, tags.get(TAG_PROMPT)) if prompt else None,
        prompt_version=prompt_version,
        test_score_before=metrics.get(_SCORE_BEFORE) if prompt else None,
        test_score_after=metrics.get(_SCORE_AFTER) if prompt else None,
        **(_score_counts(metrics) if score else {}),
        not_registered_reason=tags.get(TAG_NOT_REGISTERED) or None,
        register_if_cancelled=_flag(run.params.get("register_if_cancelled")),
        worker=worker,
        attempt=attempt,
        stop_reason=tags.get(TAG_STOP_REASON) or None,
    )


def _flag(text: str | None) -> bool | None:
    """A boolean run param (``true``/``false``), None when the run has none."""
    return None if text in (None, "") else str(text).lower() == "true"


def _score_counts(metrics: Mapping[str, float]) -> dict[str, int | None]:
    """A scoring run's progress, from its cumulative per-batch metrics."""
    return {k: _int(metrics.get(k)) for k in ("n_total", "n_scored", "n_skipped", "n_failed")}


def _base_version(params: Mapping[str, str], name: str | None) -> int | None:
    """The starting version of prompt ``name`` from the run's ``prompt`` param
    (``name@3[,other@1]``, :meth:`PromptSettings.to_params`)."""
    for item in (params.get("prompt") or "").split(","):
        got, _, version = item.rpartition("@")
        if got and got == name:
            return _int(version)
    return None


def _significant(metrics: Mapping[str, float]) -> bool | None:
    flag = metrics.get(_SIGNIFICANT_METRIC)
    return None if flag is None else flag >= 0.5


def _registered(version: int | None, verdict: str | None, state: str) -> bool | None:
    """True once a version is registered; False when the run decided (its verdict is
    written) and ended without one; None while that is still open."""
    if version is not None:
        return True
    if verdict is not None and state in rec.TERMINAL:
        return False
    return None


def cancel(run_id: str) -> JobStatus:
    """Ask a job to stop at its next iteration boundary.

    Cooperative: the job keeps its best candidate so far, scores it on the held-out split,
    registers it only when launched with ``register_if_cancelled`` (the tag
    ``alignboard.not_registered_reason`` says ``cancelled`` otherwise), and ends
    ``cancelled``. A job that is not running any more (interrupted, failed) is marked
    cancelled at once so it is not resumed by mistake; a finished job is left alone.

    Returns:
        The job's status after the request.
    """
    from mlflow import MlflowClient

    current = status(run_id)
    config.configure()  # status may have read the store without MLflow
    client = MlflowClient()
    if current.status == "finished" or current.status == "cancelled":
        return current
    rec.with_retry(client.set_tag, run_id, rec.TAG_CANCEL, f"{time.time():.3f}")
    if current.status == "queued" and current.worker is None and current.pid is None:
        # Nobody runs it yet: claim its attempt ourselves so no worker can start it, then
        # it is cancelled at once. Lost the race: a worker has it, the tag reaches it.
        from core.optimization.claims import try_claim

        if try_claim(client, run_id, f"cancel-{socket.gethostname()}-{os.getpid()}"):
            rec.set_status(client, run_id, "cancelled")
    elif not current.active:
        rec.set_status(client, run_id, "cancelled")
    return status(run_id)


def load_settings(run_id: str) -> AlignmentSettings | PromptSettings | ScoreSettings:
    """The settings a job's run was created with: an alignment's, a prompt
    optimization's or a bulk scoring run's (:func:`core.optimization.engine.load_any_settings`, the engine imported
    on first use).

    Raises:
        NotFoundError: no such run, or it is not an alignboard run.
    """
    from core.optimization import engine

    settings: AlignmentSettings | PromptSettings | ScoreSettings = engine.load_any_settings(run_id)
    return settings


def resume(run_id: str, *, detach: bool = True) -> str:
    """Continue an interrupted, failed or cancelled alignment or prompt optimization in
    the same run.

    gepa picks up from the state saved in the job folder, so completed iterations are not
    redone, and the evaluator's cache (verdicts; for prompts, application outputs too)
    answers what was already paid for; the other optimizers start over (their metrics
    continue in the same run).

    Args:
        run_id: The run to continue.
        detach: Start a background process (True) or leave it to the caller to run
            :func:`core.optimization.worker.run_job` with ``resume=True`` (False).

    Returns:
        The run id.

    Raises:
        ValidationError: the job is still running, or already finished.
    """
    current = status(run_id)
    if current.active:
        raise ValidationError(
            f"Run {run_id} is still {current.status} (heartbeat {current.heartbeat_age_s} s "
            f"ago); cancel it first with: alignboard cancel {run_id}"
        )
    if current.status == "finished":
        if current.is_score:
            made = f"{current.n_scored} verdicts written; start a new scoring run"
        elif current.is_prompt:
            made = f"prompt version {current.prompt_version}; start a new optimization"
        else:
            made = f"judge version {current.judge_version}; start a new alignment"
        raise ValidationError(f"Run {run_id} already finished ({made} instead).")
    load_settings(run_id)  # refuse early if the run is not an alignboard run
    from mlflow import MlflowClient

    config.configure()  # status may have read the store without MLflow
    client = MlflowClient()
    requeue(client, run_id, current.attempt + 1)
    if detach:
        _dispatch(run_id, resume=True)
    else:
        # The caller runs it here: claim the new attempt so no worker takes it meanwhile.
        from core.optimization.claims import try_claim

        try_claim(client, run_id, f"foreground-{socket.gethostname()}-{os.getpid()}")
    return run_id


def requeue(client: Any, run_id: str, attempt: int, extra: Mapping[str, str] | None = None) -> None:
    """Put a run back in the queue as attempt ``attempt`` (unclaimed, no process, a fresh
    beat, no cancel request or error): what :func:`resume` and a worker's auto-resume do."""
    from mlflow.entities import RunTag

    # A fresh start: forget the old cancel request and error.
    rec.with_retry(
        client.log_batch,
        run_id,
        tags=[
            RunTag(rec.TAG_CANCEL, ""),
            # A fresh beat, or the old stale one would get the job reported interrupted
            # again before its new process has started.
            RunTag(rec.TAG_HEARTBEAT, f"{time.time():.3f}"),
            # Forget the dead process too: until the new one is recorded, its pid would
            # prove the job gone at once.
            RunTag(rec.TAG_PID, ""),
            RunTag(TAG_PROCESS, ""),
            RunTag(rec.TAG_WORKER, ""),
            RunTag(rec.TAG_ATTEMPT, str(int(attempt))),
            # In the same write as the attempt: a reader must never see the new attempt
            # with the old attempt's end (it would take the new attempt as over).
            RunTag(rec.TAG_STATUS, "queued"),
            RunTag(rec.TAG_ERROR, ""),
            *(RunTag(k, str(v)) for k, v in (extra or {}).items()),
        ],
    )
    rec.set_status(client, run_id, "queued", error="")  # and MLflow's own run status


def list_jobs(
    experiment_id: str, max_results: int = 100, *, kind: str = rec.KIND_ALIGNMENT
) -> list[JobStatus]:
    """The experiment's jobs of one ``kind`` (alignments by default; :data:`KIND_PROMPT`
    for prompt optimizations, :data:`KIND_SCORE` for bulk scoring), newest first (dead
    ones reported interrupted)."""
    from mlflow import MlflowClient

    config.configure()
    runs = MlflowClient().search_runs(
        [str(experiment_id)],
        filter_string=f"tags.`{rec.TAG_KIND}` = '{kind}'",
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )
    return [status(r.info.run_id) for r in runs]


def wait(run_id: str, timeout_s: float = 600, poll_s: float = 0.5) -> JobStatus:
    """Poll until a job is no longer queued or running (or ``timeout_s`` passes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = status(run_id)
        if not current.active or time.monotonic() > deadline:
            return current
        time.sleep(poll_s)


def launch_comparison(
    experiment_id: str,
    prompt: str,
    version_a: int,
    version_b: int,
    *,
    dataset: str,
    task_model: str,
    judges: Sequence[str],
    scorers: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    task_base_url: str | None = None,
) -> str:
    """Score two versions of a prompt on the held-out rows of ``dataset`` as a background
    job (the Versions page's "score them together"); nothing is optimized or registered.

    Returns:
        The comparison run's id (optimizer ``compare``).

    Raises:
        ValidationError: pre-flight refused it (every finding is in the message).
        NotFoundError: the prompt, a version or a judge does not exist.
    """
    from core.optimization.prompt_preflight import build_comparison_settings

    settings = build_comparison_settings(
        experiment_id,
        prompt,
        version_a,
        version_b,
        dataset=dataset,
        task_model=task_model,
        judges=judges,
        scorers=scorers,
        mapping=mapping,
        task_base_url=task_base_url,
    )
    return launch(settings)


def resolve_run_id(prefix: str, experiment_id: str | None = None) -> str:
    """The full id of the alignboard run whose id starts with ``prefix``.

    The dashboard shows short ids (the first 8 characters); every CLI command that takes
    a run id accepts any unique prefix of at least :data:`MIN_PREFIX` characters. A full
    32-character id is returned as given (no search), so a missing run still reports
    "No run ..." from the command itself.

    Args:
        prefix: A run id or its start (case-insensitive).
        experiment_id: Search this experiment only; None searches every experiment's
            alignboard runs (those with an ``alignboard.kind`` tag).

    Raises:
        ValidationError: the prefix is shorter than :data:`MIN_PREFIX`, matches several
            runs (they are listed), or is not hexadecimal.
        NotFoundError: no alignboard run id starts with it.
    """
    text = (prefix or "").strip().lower()
    if len(text) == 32 and _is_hex(text):
        return text
    if not _is_hex(text):
        raise ValidationError(f"{prefix!r} is not a run id (run ids are hexadecimal).")
    if len(text) < MIN_PREFIX:
        raise ValidationError(
            f"Run id prefix {prefix!r} is too short: give at least {MIN_PREFIX} characters "
            "(the Run explorer and the Align page show them)."
        )
    found = _runs_with_prefix(text, experiment_id)
    if not found:
        raise NotFoundError(
            f"No alignboard run id starts with {prefix!r} in {config.tracking_uri()}; list the "
            "experiment's runs in the Run explorer, or check MLFLOW_TRACKING_URI."
        )
    if len(found) > 1:
        listed = ", ".join(sorted(found)[:10]) + (" ..." if len(found) > 10 else "")
        raise ValidationError(
            f"Run id prefix {prefix!r} matches {len(found)} runs ({listed}); give more characters."
        )
    return found[0]


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)


def _runs_with_prefix(prefix: str, experiment_id: str | None) -> list[str]:
    """Ids of the active alignboard runs starting with ``prefix`` (a local sqlite store is
    read directly; any other store through MLflow's search, every page of it)."""
    import sqlite3

    file = run_reads.sqlite_file()
    if file is not None:
        sql = (
            "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE r.run_uuid LIKE ? AND r.lifecycle_stage = 'active' AND t.key = ?"
        )
        args: list[Any] = [prefix + "%", rec.TAG_KIND]
        if experiment_id is not None:
            sql += " AND r.experiment_id = ?"
            args.append(int(experiment_id))
        try:
            conn = sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                return [row[0] for row in conn.execute(sql, args)]
            finally:
                conn.close()
        except (sqlite3.Error, ValueError):
            pass  # another schema: ask MLflow
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    config.configure()
    client = MlflowClient()
    if experiment_id is not None:
        ids = [str(experiment_id)]
    else:
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    out: list[str] = []
    for start in range(0, len(ids), 100):  # MLflow caps experiments per search
        token = None
        while True:
            page = client.search_runs(
                ids[start : start + 100],
                filter_string=f"tags.`{rec.TAG_KIND}` LIKE '%'",
                max_results=1000,
                page_token=token,
            )
            out += [r.info.run_id for r in page if r.info.run_id.startswith(prefix)]
            token = page.token
            if not token:
                break
    return out
