"""Claiming a queued job: exactly one worker runs each attempt of a job.

A claim is the run param ``alignboard.claim.<attempt>`` = the claimant's worker id, where
``<attempt>`` is the run's ``alignboard.attempt`` tag (0 at creation, +1 on each resume).
MLflow never changes a param's value once written, so of several workers racing for the
same attempt exactly one write lands; the others are refused, read the param back and
see another id. The param key is per attempt so that a resumed job can be claimed again
(by any worker, on any host) without ever overwriting the history of who ran what.

Why this is atomic (checked against ``mlflow/store/tracking/sqlalchemy_store.py``,
MLflow 3.17): ``params`` has the primary key ``(key, run_uuid)``. ``log_param`` inserts
the row and commits inside one session; a second insert of the same key fails the
primary key (sqlite serialises writers on the database lock; PostgreSQL's unique index
blocks the second inserter until the first commits, then fails it), MLflow rolls back,
reads the stored value and raises ``INVALID_PARAMETER_VALUE`` when it differs (an
``mlflow server`` answers that as HTTP 400). Writing the same value again is a no-op, so a
claim retried after a lost reply is still the claimant's. We never trust the exception
type alone: after any failure the param is read back and compared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from core.optimization import recorder as rec

#: Tag holding the job's attempt number ("0" at creation, +1 on each resume).
TAG_ATTEMPT = rec.TAG_ATTEMPT
#: Param key prefix of a claim: ``alignboard.claim.<attempt>`` = worker id.
CLAIM_PREFIX = rec.TAG_PREFIX + "claim."

__all__ = ["CLAIM_PREFIX", "attempt_of", "claim", "claim_key", "claimant", "try_claim"]


def attempt_of(tags: Mapping[str, str]) -> int:
    """The run's current attempt (its ``alignboard.attempt`` tag; 0 when absent or bad)."""
    try:
        return max(int(str(tags.get(TAG_ATTEMPT) or "0").strip()), 0)
    except ValueError:
        return 0


def claim_key(attempt: int) -> str:
    """The param key of the claim of ``attempt``."""
    return f"{CLAIM_PREFIX}{int(attempt)}"


def claimant(run: Any) -> str | None:
    """The worker id that claimed the run's current attempt, or None (unclaimed).

    ``run`` is an ``mlflow.entities.Run`` or a :class:`core.store.run_reads.RunSnapshot`.
    """
    tags, params = _tags_params(run)
    return params.get(claim_key(attempt_of(tags))) or None


def _tags_params(run: Any) -> tuple[Mapping[str, str], Mapping[str, str]]:
    data = getattr(run, "data", None)
    if data is not None:  # an MLflow Run
        return data.tags, data.params
    return run.tags, run.params


def try_claim(client: Any, run_id: str, worker_id: str, attempt: int | None = None) -> bool:
    """Claim the run's current attempt for ``worker_id``; True when this worker got it.

    Args:
        client: An ``MlflowClient`` for the job's store.
        run_id: The job's run.
        worker_id: The claimant (a :func:`core.optimization.workers.new_worker_id`).
        attempt: The attempt to claim; default: the run's ``alignboard.attempt`` tag now.

    Returns:
        True if the claim param holds ``worker_id`` after the write (written now, or by an
        earlier try of the same worker); False if another worker holds it, or the run is
        gone or deleted.
    """
    return claim(client, run_id, worker_id, attempt)[0] == worker_id


def claim(
    client: Any, run_id: str, worker_id: str, attempt: int | None = None, *, key: str | None = None
) -> tuple[str | None, Any]:
    """Write the immutable param ``key`` (default: the claim of ``attempt``) = ``worker_id``
    and read it back: ``(who holds it, the run as read back)``; ``(None, None)`` when the
    run cannot be read. Whoever holds it won; :func:`try_claim` is the yes/no form.
    """
    if key is None:
        if attempt is None:
            try:
                attempt = attempt_of(client.get_run(run_id).data.tags)
            except Exception:
                return None, None
        key = claim_key(attempt)
    # Refused (another value is there: INVALID_PARAMETER_VALUE, HTTP 400), an
    # IntegrityError of a concurrent insert, or the store hiccupped after committing:
    # what is stored decides, so any failure is only read back.
    with contextlib.suppress(Exception):
        rec.with_retry(client.log_param, run_id, key, worker_id)
    try:
        run = client.get_run(run_id)
    except Exception:
        return None, None
    return run.data.params.get(key) or None, run
