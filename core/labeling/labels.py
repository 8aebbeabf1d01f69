"""Human labels: MLflow ``Feedback`` assessments with a ``HUMAN`` source.

A label is the assessment named after its criterion, given by one reviewer
(``source_id``) on one trace. There is exactly one *current* label per
(trace, criterion, reviewer); relabeling writes a new assessment whose ``overrides``
points at the previous one, and MLflow marks the previous one ``valid = False``. The
whole history therefore stays readable, by alignboard and by MLflow's own API and UI.

LLM judges write feedback with the same name (the criterion) but an ``LLM_JUDGE`` or
``CODE`` source; everything here looks only at ``HUMAN`` sources.

**Gold labels** (adjudication, :mod:`core.labeling.adjudication`) are HUMAN feedback too,
with metadata ``alignboard.adjudication = "true"`` and the adjudicator as source id. They
form a chain of their own per (trace, criterion, adjudicator), chained under the key
``adjudication:<name>`` (:func:`chain_key`), so a gold label never overrides the
adjudicator's own reviewer label. Readers see reviewer labels only unless they pass
``gold=True``: every count of "who labeled what" (work lists, queues, progress, reviewer
agreement) stays about reviewers; the consolidation reads gold on purpose.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard, overload

from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback
from mlflow.entities.assessment import Assessment
from mlflow.exceptions import MlflowException
from mlflow.protos.service_pb2 import CreateAssessment
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracing.client import TracingClient
from mlflow.utils.proto_json_utils import message_to_json, parse_dict
from mlflow.utils.rest_utils import http_request, verify_rest_response

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import Criterion, normalize_value
from core.store import config

#: Longest rationale accepted, in characters (a rationale is prose, not a document).
MAX_RATIONALE_CHARS = 20_000
#: Longest reviewer name (MLflow's ``source_id`` column holds 250 characters).
MAX_REVIEWER_CHARS = 250
#: Trace infos fetched per search call when scanning an experiment.
SCAN_PAGE = 500
_WRITE_ATTEMPTS = 30
_HUMAN = AssessmentSourceType.HUMAN
#: HTTP statuses a label write retries at the HTTP level behind an ``mlflow server``:
#: MLflow's default set without 500 (see :func:`_log_assessment`).
_REST_RETRY_CODES = frozenset({408, 429, 502, 503, 504})
#: Feedback metadata key marking a gold label (an adjudication), value ``"true"``.
ADJUDICATION_KEY = "alignboard.adjudication"
#: Prefix of the chain key of an adjudicator's gold labels (see :func:`chain_key`).
ADJUDICATION_CHAIN_PREFIX = "adjudication:"


@dataclass(frozen=True)
class Label:
    """One version of one reviewer's label on one trace for one criterion."""

    trace_id: str
    """The labeled trace."""
    criterion: str
    """Criterion name (the assessment's name)."""
    reviewer: str
    """Who labeled (the assessment source id)."""
    value: Any
    """Canonical value: bool (pass/fail), str (categorical) or float (numeric)."""
    rationale: str | None
    """Why, in the reviewer's words."""
    assessment_id: str
    """MLflow's assessment id."""
    created_ms: int
    """When this version was written, epoch milliseconds."""
    updated_ms: int
    """Last in-place update of this version, epoch milliseconds."""
    overrides: str | None
    """Assessment id of the version this one replaced, if any."""
    valid: bool = True
    """False once a newer version overrides this one."""
    adjudication: bool = False
    """True for a gold label: an adjudicator's decision on a disagreement (its own chain,
    never the adjudicator's reviewer label)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _client() -> TracingClient:
    config.configure()
    return TracingClient()


def is_human_feedback(a: Assessment) -> TypeGuard[Feedback]:
    """Whether ``a`` is a human label (feedback with a HUMAN source), not judge output."""
    return isinstance(a, Feedback) and a.source is not None and a.source.source_type == _HUMAN


def is_adjudication(a: Assessment) -> bool:
    """Whether ``a`` is a gold label (its metadata marks it as an adjudication)."""
    return str((getattr(a, "metadata", None) or {}).get(ADJUDICATION_KEY, "")).lower() == "true"


def chain_key(reviewer: str, adjudication: bool = False) -> str:
    """The key a label chain is derived from: the reviewer, or ``adjudication:<name>`` for
    an adjudicator's gold labels (so the two chains never collide)."""
    return ADJUDICATION_CHAIN_PREFIX + reviewer if adjudication else reviewer


def to_label(a: Assessment) -> Label:
    """Convert a stored human feedback assessment into a Label."""
    # A stored feedback has all of these; only one not yet written lacks them.
    assert isinstance(a, Feedback)
    assert a.trace_id is not None and a.assessment_id is not None
    assert a.source.source_id is not None and a.create_time_ms is not None
    return Label(
        trace_id=a.trace_id,
        criterion=a.name,
        reviewer=a.source.source_id,
        value=a.value,
        rationale=a.rationale,
        assessment_id=a.assessment_id,
        created_ms=a.create_time_ms,
        updated_ms=a.last_update_time_ms or a.create_time_ms,
        overrides=a.overrides,
        valid=bool(a.valid) if a.valid is not None else True,
        adjudication=is_adjudication(a),
    )


def _sort_key(a: Assessment) -> tuple[int, str]:
    return (a.create_time_ms or 0, a.assessment_id or "")


def current_from_assessments(
    assessments: Iterable[Assessment],
    criterion: str | None = None,
    reviewer: str | None = None,
    *,
    gold: bool = False,
) -> list[Label]:
    """Pick the current human labels out of one trace's assessments.

    If several valid versions exist for one (criterion, reviewer) - possible only when
    something other than alignboard wrote them without ``overrides`` - the newest one
    (by creation time, then id) is current, so every reader picks the same one.

    Args:
        assessments: One trace's assessments.
        criterion: Only this criterion's labels.
        reviewer: Only this reviewer's (or adjudicator's) labels.
        gold: Also return the current gold labels (adjudications, ``Label.adjudication``);
            by default only reviewer labels, so counts of who labeled what ignore them.
    """
    best: dict[tuple[str, str, bool], Feedback] = {}
    for a in assessments:
        if not is_human_feedback(a) or a.valid is False:
            continue
        if criterion is not None and a.name != criterion:
            continue
        if reviewer is not None and a.source.source_id != reviewer:
            continue
        adjudication = is_adjudication(a)
        if adjudication and not gold:
            continue
        key = (a.name, a.source.source_id or "", adjudication)
        if key not in best or _sort_key(a) > _sort_key(best[key]):
            best[key] = a
    return [to_label(a) for _, a in sorted(best.items())]


def _check_reviewer(reviewer: Any) -> str:
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ValidationError("A reviewer name is required to label (who is labeling?).")
    reviewer = reviewer.strip()
    if len(reviewer) > MAX_REVIEWER_CHARS:
        raise ValidationError(
            f"Reviewer name is {len(reviewer)} characters; the limit is {MAX_REVIEWER_CHARS}."
        )
    return reviewer


def check_rationale(rationale: Any) -> str | None:
    """Return the rationale cleaned up (None when blank), or raise ValidationError."""
    if rationale is None:
        return None
    if not isinstance(rationale, str):
        raise ValidationError(f"A rationale must be text, got {type(rationale).__name__}.")
    rationale = rationale.strip()
    if len(rationale) > MAX_RATIONALE_CHARS:
        raise ValidationError(
            f"Rationale is {len(rationale)} characters; the limit is {MAX_RATIONALE_CHARS}. "
            "Quote the decisive part rather than the whole text."
        )
    return rationale or None


def chain_assessment_id(trace_id: str, criterion: str, reviewer: str, prev_id: str | None) -> str:
    """Deterministic id of the label version that replaces ``prev_id`` (None: the first).

    Used as an optimistic lock: see :func:`set_label`. ``reviewer`` is the chain's key
    (:func:`chain_key`): a gold label's chain is ``adjudication:<name>``.
    """
    digest = hashlib.sha256(
        f"{trace_id}\x1f{criterion}\x1f{reviewer}\x1f{prev_id or ''}".encode()
    ).hexdigest()
    return "a-" + digest[:32]


def new_label_assessment(
    trace_id: str,
    criterion: str,
    reviewer: str,
    value: Any,
    rationale: str | None,
    prev_id: str | None,
    *,
    adjudication: bool = False,
) -> Feedback:
    """Build (not write) the Feedback for a label version replacing ``prev_id``.

    With ``adjudication``, a gold label: marked in its metadata and chained under
    ``adjudication:<reviewer>`` (:func:`chain_key`).
    """
    fb = Feedback(
        name=criterion,
        value=value,
        source=AssessmentSource(source_type=_HUMAN, source_id=reviewer),
        trace_id=trace_id,
        rationale=rationale,
        overrides=prev_id,
        metadata={ADJUDICATION_KEY: "true"} if adjudication else None,
    )
    fb.assessment_id = chain_assessment_id(
        trace_id, criterion, chain_key(reviewer, adjudication), prev_id
    )
    return fb


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return "constraint" in text or "unique" in text or "already exists" in text


def _is_transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "deadlock" in text or "busy" in text


def _log_assessment(client: TracingClient, trace_id: str, fb: Feedback) -> Assessment:
    """Write one label version; a taken id fails at once, so set_label can re-chain.

    Behind an ``mlflow server`` a taken assessment id (our optimistic-lock conflict)
    comes back as HTTP 500 "... due to a constraint violation". MLflow's client retries
    every 500 with exponential backoff (about four minutes with its defaults) and then
    reports only "too many 500 error responses", without the server's message: the
    reviewer would wait minutes and then get an error instead of a re-chained label.
    So post the assessment here with the same request MLflow builds, retrying at the
    HTTP level only the statuses of an overloaded server or a proxy, and leave any 500
    (with the server's message) to set_label's own loop.
    """
    store = client.store
    if type(store) is not RestStore:  # sqlite/SQL stores raise the conflict directly
        return client.log_assessment(trace_id, fb)
    fb.trace_id = trace_id
    endpoint = f"/api/3.0/mlflow/traces/{trace_id}/assessments"
    body = json.loads(message_to_json(CreateAssessment(assessment=fb.to_proto())))
    response = http_request(
        store.get_host_creds(), endpoint, "POST", json=body, retry_codes=_REST_RETRY_CODES
    )
    response = verify_rest_response(response, endpoint)
    proto = CreateAssessment.Response()
    parse_dict(response.json(), proto)
    return Assessment.from_proto(proto.assessment)


def _trace_info(client: TracingClient, trace_id: str):
    try:
        return client.get_trace_info(trace_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(f"No trace with id {trace_id!r}.") from exc
        raise


def set_label(
    trace_id: str,
    criterion: Criterion,
    reviewer: str,
    value: Any,
    rationale: str | None = None,
    *,
    adjudication: bool = False,
) -> Label:
    """Record ``reviewer``'s label on a trace, replacing their previous one if any.

    Args:
        trace_id: The trace.
        criterion: The criterion (its name becomes the assessment name).
        reviewer: Who labels; becomes the HUMAN source id.
        value: Any spelling :func:`core.labeling.criteria.normalize_value` accepts.
        rationale: Why (optional, at most ``MAX_RATIONALE_CHARS`` characters).
        adjudication: Write a gold label (its own chain; the checks of a gold label are
            :func:`core.labeling.adjudication.adjudicate`'s, which calls this).

    Returns:
        The new current label.

    Raises:
        ValidationError: bad value, reviewer or rationale.
        NotFoundError: no such trace.
    """
    reviewer = _check_reviewer(reviewer)
    canonical = normalize_value(criterion, value)
    rationale = check_rationale(rationale)
    client = _client()
    # Concurrency. Two processes may relabel the same (trace, criterion, reviewer) at
    # once. Each version's assessment id is derived from the id it overrides
    # (chain_assessment_id), and assessment_id is the table's primary key. Writers that
    # read the same current version therefore try to insert the *same* new id: the
    # database lets exactly one win (the override and the insert are one transaction),
    # the others get a constraint error, re-read the new current version and chain onto
    # it. History stays a single linear chain and there is never more than one valid
    # version, on sqlite and behind an MLflow server alike, with no locks of our own.
    for attempt in range(_WRITE_ATTEMPTS):
        info = _trace_info(client, trace_id)
        current = [
            lab
            for lab in current_from_assessments(
                info.assessments, criterion.name, reviewer, gold=adjudication
            )
            if lab.adjudication == adjudication
        ]
        prev_id = current[0].assessment_id if current else None
        fb = new_label_assessment(
            trace_id,
            criterion.name,
            reviewer,
            canonical,
            rationale,
            prev_id,
            adjudication=adjudication,
        )
        if attempt and any(a.assessment_id == fb.assessment_id for a in info.assessments):
            # The chained id exists but is not current (a chain edited outside alignboard):
            # fall back to a fresh id so we still make progress.
            salted = f"{fb.assessment_id}{attempt}".encode()
            fb.assessment_id = "a-" + hashlib.sha256(salted).hexdigest()[:32]
        try:
            return to_label(_log_assessment(client, trace_id, fb))
        except MlflowException as exc:
            # "Assessment ... not found": the version we override was deleted meanwhile.
            lost_prev = "assessment with id" in str(exc).lower()
            if not (_is_conflict(exc) or _is_transient(exc) or lost_prev):
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise NotFoundError(f"No trace with id {trace_id!r}.") from exc
                raise
        except Exception as exc:  # sqlalchemy errors that MLflow does not wrap
            if not _is_transient(exc):
                raise
        time.sleep(random.uniform(0.005, 0.05) * (1 + attempt))
    raise ValidationError(
        f"Could not save the label on {trace_id} after {_WRITE_ATTEMPTS} attempts: too many "
        "concurrent writers. Try again."
    )


def get_label(
    trace_id: str, criterion_name: str, reviewer: str, *, adjudication: bool = False
) -> Label | None:
    """Return ``reviewer``'s current label on a trace for a criterion, or None.

    With ``adjudication``, their current gold label instead of their reviewer label.
    """
    info = _trace_info(_client(), trace_id)
    found = [
        lab
        for lab in current_from_assessments(
            info.assessments, criterion_name, reviewer, gold=adjudication
        )
        if lab.adjudication == adjudication
    ]
    return found[0] if found else None


def label_history(trace_id: str, criterion_name: str, reviewer: str | None = None) -> list[Label]:
    """Return every version of the human labels on a trace for a criterion, oldest first.

    Args:
        trace_id: The trace.
        criterion_name: The criterion.
        reviewer: Only this reviewer's versions (default: everyone's).
    """
    info = _trace_info(_client(), trace_id)
    versions = [
        a
        for a in info.assessments
        if is_human_feedback(a)
        and a.name == criterion_name
        and (reviewer is None or a.source.source_id == reviewer)
    ]
    return [to_label(a) for a in sorted(versions, key=_sort_key)]


def delete_label(trace_id: str, criterion_name: str, reviewer: str) -> bool:
    """Withdraw ``reviewer``'s current label; the version it replaced becomes current again.

    This is MLflow's own semantics for deleting an overriding assessment.

    Returns:
        Whether there was a label to delete.
    """
    client = _client()
    label = get_label(trace_id, criterion_name, reviewer)
    if label is None:
        return False
    client.delete_assessment(trace_id, label.assessment_id)
    return True


def iter_trace_infos(
    experiment_id: str,
    filter_string: str | None = None,
    trace_ids: Iterable[str] | None = None,
    page_size: int = SCAN_PAGE,
) -> Iterator[Any]:
    """Yield the experiment's trace infos (with assessments, never spans), oldest first.

    With ``trace_ids``, fetch just those (in batches) instead of scanning.
    """
    client = _client()
    if trace_ids is not None:
        ids = list(dict.fromkeys(trace_ids))
        for i in range(0, len(ids), 100):
            yield from client.store.batch_get_trace_infos(
                ids[i : i + 100], experiment_ids=[str(experiment_id)]
            )
        return
    token = None
    while True:
        infos, token = client.store.search_traces(
            locations=[str(experiment_id)],
            filter_string=filter_string,
            max_results=page_size,
            order_by=["timestamp_ms ASC", "request_id ASC"],
            page_token=token,
        )
        yield from infos
        if not token or not infos:
            return


@overload
def label_filter(criterion: str) -> str: ...


@overload
def label_filter(criterion: None) -> None: ...


def label_filter(criterion: str | None) -> str | None:
    """MLflow filter keeping traces that have a valid feedback named ``criterion``.

    A superset of the humanly labeled ones (judges' feedback shares the name).
    """
    return None if criterion is None else f"feedback.`{criterion}` IS NOT NULL"


def current_labels(
    experiment_id: str,
    criterion: str | None = None,
    reviewer: str | None = None,
    trace_ids: Iterable[str] | None = None,
    *,
    gold: bool = False,
) -> list[Label]:
    """Return the current human labels in an experiment.

    Reads trace infos (which carry their assessments) page by page and never loads spans.
    When a criterion is given, MLflow's ``feedback.<name> IS NOT NULL`` filter skips
    traces without any such feedback in the database.

    Args:
        experiment_id: The experiment.
        criterion: Only this criterion's labels.
        reviewer: Only this reviewer's labels.
        trace_ids: Only labels on these traces.
        gold: Also return the current gold labels (``Label.adjudication``).
    """
    infos = iter_trace_infos(
        experiment_id,
        filter_string=None if trace_ids is not None else label_filter(criterion),
        trace_ids=trace_ids,
    )
    out: list[Label] = []
    for info in infos:
        out.extend(current_from_assessments(info.assessments, criterion, reviewer, gold=gold))
    return out
