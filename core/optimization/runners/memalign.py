"""The ``memalign`` optimizer: MLflow's ``MemAlignOptimizer`` through ``judge.align``.

Judge alignment only: it is a judge runner (:data:`core.optimization.spec.Runner`) and
refuses any other task (:func:`core.optimization.task.judge_settings`).

MemAlign gives a judge two memories: *semantic* (guidelines the reflection model distils
from the human rationales, each with the traces it came from) and *episodic* (the labeled
examples themselves, retrieved by embedding similarity at judging time). Nothing is
searched and no judge call is spent while aligning, so ``metric_calls`` stays 0.

The training traces are aligned in chunks, each a further ``judge.align`` on the judge the
previous chunk produced. MLflow's incremental align only distils the traces it has not
seen, so the result matches one big call, and the chunk boundaries give the job progress
metrics and a place to honour a cancel request.

Resuming: after each chunk the aligned judge's serialized form (``model_dump``: base
judge, guidelines, episode trace ids), the chunk layout and the number of chunks done go
to ``memalign_progress.json`` in the job folder, checkpointed to the run's ``state/``
artifacts (:mod:`core.optimization.job_state`). A run that finds it (same train traces in
the same chunks) starts from that judge after the last completed chunk; its episodic
memory is rebuilt from the stored traces on first use.

Only the train split is shown to MemAlign (it has no use for a validation set); the test
split never is.

Failures. MLflow's distillation drops a batch whose model call failed (dspy has retried
it), but a failed embedding call fails the whole ``judge.align``. A chunk whose align
failed transiently (429, 5xx, timeout, malformed reply) is aligned again, up to
``ALIGN_ATTEMPTS`` times: ``align`` returns a new judge and leaves its input untouched,
so a retry starts clean. Every failed model attempt is in ``llm_failures``; chunk retries
in ``align_retries``.

Base URLs. MLflow builds MemAlign's reflection model and embedder from bare names; the
engine routes them to ``settings.reflection_base_url``/``embedding_base_url`` for the
whole run (:func:`core.models.endpoints.openai_base_url`).

Artifacts written through the recorder:

* ``guidelines.json``: ``[{"index", "text", "source_trace_ids"}]`` in memory order;
* ``episodes.json``: ``[{"trace_id", "assessment_id", "label", "rationale", "inputs",
  "outputs"}]``, the examples held in episodic memory (long texts cut to
  ``EPISODE_TEXT_CHARS``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from core.models import demo_stats
from core.models.secrets import redact
from core.models.usage import usage_snapshot
from core.optimization import record
from core.optimization.mlflow_judge import fetch_traces, seed_judge
from core.optimization.spec import AlignmentOutcome, AlignmentSettings, Example, RunRecorder
from core.optimization.task import judge_settings

_log = logging.getLogger(__name__)

#: Smallest chunk of traces per ``judge.align`` call (MLflow distils 50 records per prompt).
MIN_CHUNK = 50
#: At most this many chunks, so re-embedding the growing memory stays cheap.
MAX_CHUNKS = 10
#: Longest text kept per episode field in ``episodes.json``.
EPISODE_TEXT_CHARS = 2000
#: Attempts at aligning one chunk when the failure is transient.
ALIGN_ATTEMPTS = 4
#: In the job folder: the judge after the last completed chunk (see :func:`_save_progress`).
PROGRESS_FILE = "memalign_progress.json"
#: First pause before aligning a chunk again, in seconds (doubled per retry).
ALIGN_BACKOFF_S = 0.5


def _optimizer(reflection_lm: str, retrieval_k: int, embedding_model: str, embedding_dim: int):
    from mlflow.genai.judges.optimizers import MemAlignOptimizer

    return MemAlignOptimizer(
        reflection_lm=reflection_lm,
        retrieval_k=retrieval_k,
        embedding_model=embedding_model,
        embedding_dim=embedding_dim,
    )


def _config(judge: Any) -> dict[str, Any]:
    """The MemAlign settings a MemoryAugmentedJudge was built with (from its public dump)."""
    data = judge.model_dump()["memory_augmented_judge_data"]
    return {
        "reflection_lm": data["reflection_lm"],
        "retrieval_k": data["retrieval_k"],
        "embedding_model": data["embedding_model"],
        "embedding_dim": data["embedding_dim"],
    }


def is_memalign(judge: Any) -> bool:
    """Whether ``judge`` is a MemAlign (memory-augmented) judge."""
    from mlflow.genai.judges.optimizers.memalign.optimizer import MemoryAugmentedJudge

    return isinstance(judge, MemoryAugmentedJudge)


def guidelines(judge: Any) -> list[dict[str, Any]]:
    """The judge's distilled guidelines with their source trace ids (JSON-ready)."""
    return [
        {"index": i, "text": g.guideline_text, "source_trace_ids": list(g.source_trace_ids or [])}
        for i, g in enumerate(judge._semantic_memory)
    ]


def _cut(value: Any) -> Any:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= EPISODE_TEXT_CHARS else text[:EPISODE_TEXT_CHARS] + "…"


def episodes(judge: Any) -> list[dict[str, Any]]:
    """The examples in the judge's episodic memory (JSON-ready, long texts cut)."""
    # A judge loaded from the registry holds only trace ids until first use; rebuild the
    # memory from the store now so what we show is what it will retrieve from.
    lazy_init = getattr(judge, "_lazy_init", None)
    if callable(lazy_init):
        lazy_init()
    out = []
    for ex in judge._episodic_memory:
        fields = {k: v for k, v in ex.items() if k != "trace"}
        out.append(
            {
                "trace_id": getattr(ex, "_trace_id", None),
                "assessment_id": getattr(ex, "_assessment_id", None),
                "label": fields.pop("result", None),
                "rationale": fields.pop("rationale", None),
                **{k: _cut(v) for k, v in fields.items()},
            }
        )
    return out


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    size = max(MIN_CHUNK, math.ceil(len(items) / MAX_CHUNKS))
    return [items[i : i + size] for i in range(0, len(items), size)]


def run(
    settings: AlignmentSettings,
    train: list[Example],
    val: list[Example],
    recorder: RunRecorder,
) -> AlignmentOutcome:
    """Align the seed judge with MemAlign on ``train`` (``val`` is not used).

    Returns:
        The outcome; ``judge`` is the MemoryAugmentedJudge (the seed judge if cancelled
        before the first chunk), ``instructions`` the base instructions plus the
        guidelines, ``extra`` the guidelines and the episode count.

    Raises:
        ValidationError: given a task that is not judge alignment (MemAlign aligns judges
            only).
    """
    settings = judge_settings(settings, "memalign")
    started = time.monotonic()
    before = (usage_snapshot(), demo_stats())
    judge: Any = seed_judge(settings.judge)
    optimizer = _optimizer(
        settings.reflection_model, settings.retrieval_k, settings.embedding_model, 512
    )
    recorder.heartbeat()
    cancelled = False
    chunks = _chunks(train)
    layout = [[e.trace_id for e in chunk] for chunk in chunks]
    work_dir = getattr(recorder, "work_dir", None)
    saved = _load_progress(work_dir, layout)
    done = 0
    align_retries = 0
    if saved is not None:
        # A resumed run: the judge the last completed chunk produced, and where to go on.
        judge, done, align_retries = saved
        _rebuild_memory(judge, [e for c in chunks[:done] for e in c], settings.judge.name)
        _log.info("MemAlign resumes after chunk %d of %d", done, len(chunks))
    for step, chunk in enumerate(chunks, start=1):
        if step <= done:
            continue
        if recorder.should_stop():
            cancelled = True
            break
        traces = fetch_traces(chunk, settings.judge.name)
        judge, retried = _align_chunk(judge, traces, optimizer)
        align_retries += retried
        done = step
        _save_progress(recorder, work_dir, layout, judge, done, align_retries)
        progress = _progress(judge, before, started)
        recorder.log_metrics({**progress, "align_retries": float(align_retries)}, step=step)
        recorder.heartbeat()

    found = guidelines(judge) if is_memalign(judge) else []
    memory = episodes(judge) if is_memalign(judge) else []
    record.write_memalign(recorder, found, memory)
    return AlignmentOutcome(
        optimizer="memalign",
        instructions=judge.instructions,
        judge=judge,
        iterations=done,
        metric_calls=0,
        cancelled=cancelled,
        extra={"guidelines": found, "episodes": len(memory), "align_retries": align_retries},
    )


def _save_progress(
    recorder: RunRecorder,
    work_dir: Any,
    layout: list[list[str]],
    judge: Any,
    done: int,
    align_retries: int,
) -> None:
    """Write what a resume needs to skip the chunks done (the aligned judge's serialized
    form: base judge, guidelines, episode trace ids; the chunk layout; how many are done)
    to the job folder, and checkpoint it to the run (one upload per chunk: chunks are
    seconds apart, so it is done in line)."""
    if work_dir is None:
        return
    path = Path(work_dir) / PROGRESS_FILE
    data = {"chunks_done": done, "layout": layout, "align_retries": align_retries}
    data["judge"] = judge.model_dump()
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    tmp.replace(path)
    fn = getattr(recorder, "checkpoint", None)
    if fn is not None:
        try:
            fn([PROGRESS_FILE])
        except Exception as exc:  # the local copy still helps a resume on this host
            _log.warning("MemAlign checkpoint failed: %s", redact(str(exc))[:300])


def _load_progress(work_dir: Any, layout: list[list[str]]) -> tuple[Any, int, int] | None:
    """The saved judge, chunks done and retries, when the saved layout matches (same train
    traces in the same chunks); else None (start over)."""
    if work_dir is None:
        return None
    try:
        data = json.loads((Path(work_dir) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    done = int(data.get("chunks_done") or 0)
    if data.get("layout") != layout or not 0 < done <= len(layout):
        return None
    from mlflow.genai.scorers.base import Scorer

    judge = Scorer.model_validate(data["judge"])
    return judge, done, int(data.get("align_retries") or 0)


def _rebuild_memory(judge: Any, done_examples: list[Example], name: str) -> None:
    """Give a judge loaded from its serialized form the episodic memory the aligned judge
    had: built from the same traces the completed chunks aligned, each with the label
    alignboard chose. (MLflow's own lazy rebuild re-reads every reviewer's label of a
    trace, which holds more, and different, episodes than the run aligned.) Costs the
    episodes' embeddings again, no distillation call."""
    from mlflow.genai.judges.optimizers.memalign import optimizer as mo

    traces = fetch_traces(done_examples, name)
    judge._base_signature = mo.create_dspy_signature(judge._base_judge)
    judge._embedder = mo._build_embedder(judge._embedding_model, judge._embedding_dim)
    judge._episodic_memory = [
        ex for trace in traces for ex in mo.trace_to_dspy_example(trace, judge._base_judge)
    ]
    if judge._episodic_memory:
        judge._build_episodic_memory()


def _align_chunk(judge: Any, traces: list[Any], optimizer: Any) -> tuple[Any, int]:
    """``judge.align`` on one chunk, again on a transient failure (see the module docstring).

    Returns:
        The aligned judge and how many times the chunk was aligned again.

    Raises:
        The last error when it is not transient (e.g. a rejected key) or attempts run out.
    """
    from core.optimization.judging import classify_failure

    for attempt in range(ALIGN_ATTEMPTS):
        try:
            return judge.align(traces=traces, optimizer=optimizer), attempt
        except Exception as exc:
            if classify_failure(exc) != "retry" or attempt == ALIGN_ATTEMPTS - 1:
                raise
            _log.warning("MemAlign chunk failed (%s); aligning it again", redact(str(exc))[:300])
            time.sleep(ALIGN_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def _progress(judge: Any, before: Any, started: float) -> dict[str, float]:
    # LLM calls come from LiteLLM's usage log (real providers too); embedding calls are
    # only counted for the demo model, whose provider tallies them itself.
    calls, demo_now = usage_snapshot(), demo_stats()
    return {
        "memalign_guidelines": float(len(judge._semantic_memory)),
        "memalign_episodes": float(len(judge._episodic_memory)),
        "llm_calls": float(calls.calls - before[0].calls),
        "llm_failures": float(calls.failures - before[0].failures),
        "demo_embedding_calls": float(demo_now.embedding_calls - before[1].embedding_calls),
        "wall_seconds": time.monotonic() - started,
    }


def realign(judge: Any, new_examples: list[Example]) -> Any:
    """Add newly labeled (or relabeled) examples to a MemAlign judge's memory.

    MLflow's align on a MemoryAugmentedJudge skips traces whose labels it already holds,
    refreshes relabeled ones and distils guidelines only from what is new. Pass train
    examples only.

    Returns:
        A new MemoryAugmentedJudge, or ``judge`` itself when nothing was new.
    """
    if not is_memalign(judge):
        raise TypeError("realign needs a MemAlign judge; run the memalign optimizer first.")
    # Send only what is new or relabeled. A judge loaded from the registry re-reads its
    # traces with every reviewer's label, so handing MLflow the unchanged ones as well
    # makes it "refresh" doubly-labeled traces, and it can drop them from memory.
    held = {e["trace_id"]: e["assessment_id"] for e in episodes(judge)}
    changed = [e for e in new_examples if held.get(e.trace_id) != e.label_version]
    if not changed:
        return judge
    traces = fetch_traces(changed, judge.name)
    return judge.align(traces=traces, optimizer=_optimizer(**_config(judge)))


def unalign(judge: Any, trace_ids: Iterable[str]) -> Any:
    """Remove traces from a MemAlign judge's memory (MLflow's ``unalign``).

    Their episodes go, and so does every guideline all of whose source traces go.
    Traces already deleted from the store can be removed too.

    Returns:
        A new MemoryAugmentedJudge, or ``judge`` itself when none of the traces was in memory.
    """
    if not is_memalign(judge):
        raise TypeError("unalign needs a MemAlign judge.")
    # MLflow's unalign reads only each trace's id, so no trace needs fetching.
    stand_ins = [
        SimpleNamespace(info=SimpleNamespace(trace_id=t)) for t in dict.fromkeys(trace_ids)
    ]
    return judge.unalign(traces=stand_ins)
