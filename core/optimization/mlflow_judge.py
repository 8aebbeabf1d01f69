"""What MLflow's own ``judge.align`` needs from alignboard: the seed judge and the traces.

MLflow's optimizers (MemAlign, GEPA, SIMBA) read the human label from the trace's own
``HUMAN`` feedback named after the judge. Our :class:`~core.optimization.spec.Example` has
already decided which label counts (reviewer filter, relabels, majority of reviewers), so
the traces handed to ``align`` carry exactly that label: every other human feedback with
the judge's name is left off the in-memory copy (the store is not touched). Without this
MLflow would also learn from overridden labels and from reviewers the user excluded.

Only the examples passed in are fetched, so callers decide what the optimizer may see
(train, and val where an optimizer validates on it; never test).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, TypeGuard

from mlflow.entities import Feedback, Trace
from mlflow.entities.assessment import Assessment
from mlflow.entities.assessment_source import AssessmentSourceType

from core.errors import NotFoundError
from core.optimization.spec import Example, JudgeSpec

#: Traces fetched per store call (MLflow's sqlite store answers one query per batch).
FETCH_BATCH = 100


def seed_judge(spec: JudgeSpec) -> Any:
    """Build the MLflow judge a :class:`JudgeSpec` describes (``make_judge``).

    pass_fail judges return bool feedback, categorical ones one of ``spec.options``,
    numeric ones a float, so MLflow's label comparison (``str(value).lower()``) lines up
    with the human labels.
    """
    from mlflow.genai.judges import make_judge

    return make_judge(
        name=spec.name,
        instructions=spec.instructions,
        model=spec.model,
        feedback_value_type=feedback_type(spec),
        base_url=spec.base_url,
    )


def feedback_type(spec: JudgeSpec) -> Any:
    """The ``feedback_value_type`` MLflow judges use for ``spec.value_type``."""
    if spec.value_type == "pass_fail":
        return bool
    if spec.value_type == "numeric":
        return float
    if not spec.options:
        return str
    return Literal[tuple(spec.options)]


def _is_human(a: Assessment, name: str) -> TypeGuard[Feedback]:
    return (
        isinstance(a, Feedback)
        and a.name == name
        and a.source is not None
        and a.source.source_type == AssessmentSourceType.HUMAN
    )


def _keep_only_label(trace: Trace, example: Example, judge_name: str) -> Trace:
    """A copy of ``trace`` whose human feedback for the judge is the example's label only."""
    human = [a for a in trace.info.assessments if _is_human(a, judge_name) and a.valid is not False]
    chosen = [a for a in human if a.assessment_id == example.label_version]
    if not chosen:
        # The label was consolidated from several reviewers without a single source
        # assessment: keep the current human labels that agree with it.
        chosen = [a for a in human if str(a.value).lower() == str(example.label).lower()]
    if not chosen:
        raise NotFoundError(
            f"Trace {example.trace_id} has no current human label {judge_name!r} matching "
            f"{example.label!r}; reload the examples (was the label deleted?)."
        )
    others = [a for a in trace.info.assessments if not _is_human(a, judge_name)]
    info = copy.copy(trace.info)
    info.assessments = [*others, *chosen]
    return Trace(info=info, data=trace.data)


def fetch_traces(
    examples: Sequence[Example], judge_name: str, *, client: Any = None
) -> list[Trace]:
    """Fetch the MLflow traces of ``examples``, in order, for ``judge.align(traces=...)``.

    Batched (``FETCH_BATCH`` per store call) instead of one ``get_trace`` per example.
    Each trace carries, among human feedback named ``judge_name``, only the example's
    label (see the module docstring).

    Args:
        examples: The examples the optimizer may learn from.
        judge_name: The judge (criterion) name whose labels the optimizer reads.
        client: A ``TracingClient`` (default: a new one on the configured store).

    Raises:
        NotFoundError: a trace is no longer in the store.
    """
    if client is None:
        from mlflow.tracing.client import TracingClient

        from core.store import config

        config.configure()
        client = TracingClient()
    ids = list(dict.fromkeys(e.trace_id for e in examples))
    found: dict[str, Trace] = {}
    for i in range(0, len(ids), FETCH_BATCH):
        for trace in client.batch_get_traces(ids[i : i + FETCH_BATCH]):
            found[trace.info.trace_id] = trace
    missing = [tid for tid in ids if tid not in found]
    if missing:
        raise NotFoundError(
            f"{len(missing)} labeled trace(s) are no longer in the store "
            f"(e.g. {missing[0]}); reload the examples before aligning."
        )
    return [_keep_only_label(found[e.trace_id], e, judge_name) for e in examples]


def trace_ids(examples: Iterable[Example]) -> list[str]:
    """Trace ids of ``examples``, deduplicated, in order."""
    return list(dict.fromkeys(e.trace_id for e in examples))


@contextlib.contextmanager
def served_judge_route(spec: JudgeSpec, probe: Example | None) -> Iterator[None]:
    """Let MLflow's own ``judge.align`` optimizers (GEPA, SIMBA) reach a judge's server.

    They evaluate each candidate with a judge rebuilt from the judge's model name alone
    (``make_judge(model=...)`` in MLflow 3.17's ``DSPyAlignmentOptimizer``), which drops
    its ``base_url``; and MLflow's gateway client falls back from ``json_schema`` only on
    HTTP 400, while llama-cpp-python refuses it with a 500 that MLflow retries with
    backoff (every candidate evaluation failed). For a judge on a base URL, the block:

    * sends ``openai:/`` calls that name no URL to it (:func:`core.models.endpoints.
      openai_base_url`; pre-flight has checked nothing else needs another one);
    * asks the server once through our evaluator, which finds the structured-output mode
      it accepts (:mod:`core.models.structured`), and when that is not ``json_schema``
      tells MLflow's gateway client so in the memo it keeps for exactly that (its
      ``_MODEL_RESPONSE_FORMAT_CAPABILITIES``; MLflow then parses the plain reply).

    Nothing changes for a judge without a base URL.
    """
    if not spec.base_url:
        yield
        return
    from core.models.endpoints import openai_base_url
    from core.models.structured import MODES, endpoint_mode
    from core.models.uris import parse_model
    from core.optimization.judging import JudgeEvaluator

    if probe is not None:
        JudgeEvaluator(spec, workers=1).evaluate(spec.instructions, [probe])
    model = parse_model(spec.model, spec.base_url)
    if endpoint_mode(model.model, model.base_url) != MODES[0]:
        _tell_mlflow_no_structured_output(spec.model)
    with openai_base_url(spec.base_url):
        yield


def _tell_mlflow_no_structured_output(model_uri: str) -> None:
    from mlflow.genai.judges.adapters import gateway_adapter

    caps = getattr(gateway_adapter, "_MODEL_RESPONSE_FORMAT_CAPABILITIES", None)
    if isinstance(caps, dict):  # MLflow's memo: "provider/model" -> sends response_format
        provider, _, name = model_uri.partition(":/")
        caps[f"{provider}/{name}"] = False
