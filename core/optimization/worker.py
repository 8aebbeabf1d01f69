"""The job process: runs one job, already created as an MLflow run, to its end.

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
import json
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

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
    # Unwinds like Ctrl-C, so the engine records the job as interrupted (resumable).
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
