"""Evaluating a prompt candidate on dataset rows: render, call the application, score.

One :class:`PromptEvaluator` serves a whole prompt optimization run (the gepa adapter's
rounds and the held-out scoring):

1. **Render** each (candidate, row): the candidate's template(s) with the row's values
   (:func:`core.io.prompt_data.values_for` under the run's variable mapping), as chat
   messages; several prompts of one app are rendered in order, all but the last as system
   messages.
2. **Call the application model** for every pair not already answered, in parallel
   (``workers`` threads), with the bounded retries of :func:`core.models.completion.complete`.
   Outputs are cached by (candidate sha, row id): a candidate's output on a row is paid for
   once per run (and once per resumed run: the cache is part of the resumable state).
3. **Score** every output with every scorer (:class:`Scorer`): registered judge versions
   through :class:`core.optimization.judging.JudgeEvaluator` (MLflow's own judge call,
   parallel, cached by judge, row and output sha), MLflow's built-in ``Correctness`` on
   rows with expectations, and an exact-match code scorer. Each verdict is mapped to
   [0, 1] (:meth:`Scorer.normalise`); the row's score is their aggregation (mean by
   default); the per-scorer scores are kept too (gepa's objective scores, the per-judge
   held-out figures).

A failed application call is a failed row (score 0, counted); a failed scorer call leaves
that scorer out of the row's aggregate (score 0 when every scorer failed). Missing or
rejected credentials stop the run (``CredentialsError``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import CredentialsError, ModelError, ValidationError
from core.io.prompt_data import DatasetRow, values_for
from core.optimization.judging import JudgeEvaluator, Verdict, VerdictCache, instructions_key
from core.optimization.prompt_spec import JudgeChoice, PromptSettings
from core.optimization.spec import Example, JudgeSpec

#: Cached application outputs kept at most.
MAX_OUTPUTS = 50_000


def text_sha(text: str) -> str:
    """Short stable hash of a text (cache keys, trace tags)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def candidate_sha(candidate: Mapping[str, str]) -> str:
    """Short stable hash of a candidate's components."""
    return text_sha(json.dumps(dict(candidate), sort_keys=True))


# --- scorers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """One way of scoring an application output, mapped to [0, 1]."""

    name: str
    """Display name: ``support_quality v2``, ``correctness`` or ``exact_match``."""
    kind: str
    """``judge`` (a registered judge version), ``correctness`` or ``exact_match``."""
    value_type: str = "pass_fail"
    """pass_fail, categorical or numeric (what the scorer answers)."""
    spec: JudgeSpec | None = None
    """The judge as an evaluator runs it (None for exact_match)."""
    judge: Any = None
    """The scorer object when it is not a plain instructions judge (MemAlign, Correctness)."""
    value_map: Mapping[str, float] = field(default_factory=dict)
    """category -> score, or ``min``/``max`` of a numeric scale."""
    choice: JudgeChoice | None = None
    """The registered judge version, for judge scorers."""

    @property
    def key(self) -> str:
        """The scorer's cache identity."""
        if self.spec is not None and self.judge is None:
            return instructions_key(self.spec.instructions)
        return f"{self.kind}:{self.name}"

    def applies(self, row: DatasetRow) -> bool:
        """Whether the scorer scores this row (built-ins need the expectations they use)."""
        e = row.expectations or {}
        if self.kind == "exact_match":
            return e.get("expected_response") not in (None, "")
        if self.kind == "correctness":
            return bool(e.get("expected_facts")) or e.get("expected_response") not in (None, "")
        return True

    def normalise(self, value: Any) -> float | None:
        """A verdict's value in [0, 1] (None when it cannot be read)."""
        if value is None:
            return None
        if self.value_type == "pass_fail" or isinstance(value, bool):
            if isinstance(value, bool):
                return 1.0 if value else 0.0
            return 1.0 if str(value).strip().lower() in {"yes", "true", "pass", "1"} else 0.0
        if self.value_type == "numeric":
            try:
                v = float(value)
            except (TypeError, ValueError):
                return None
            lo = float(self.value_map.get("min", 0.0 if 0 <= v <= 1 else 1.0))
            hi = float(self.value_map.get("max", 1.0 if 0 <= v <= 1 else 5.0))
            return min(1.0, max(0.0, (v - lo) / (hi - lo))) if hi > lo else None
        text = str(value).strip()
        lowered = {k.lower(): v for k, v in self.value_map.items()}
        if text.lower() in lowered:
            return float(lowered[text.lower()])
        options = list(self.spec.options) if self.spec else []
        if text in options and len(options) > 1:
            # Without a mapping, options count as ordered worst to best.
            return options.index(text) / (len(options) - 1)
        return None


@dataclass(frozen=True)
class ScoredVerdict:
    """What one scorer said about one output."""

    value: Any
    """The scorer's value (None when it failed or did not apply)."""
    score: float | None
    """The value in [0, 1] (None when it failed or did not apply)."""
    rationale: str | None = None
    """The scorer's reasoning."""
    error: str | None = None
    """Why it failed (None on success)."""
    skipped: bool = False
    """True when the scorer does not apply to the row (no expectations)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class RowResult:
    """One candidate on one row: the application's output and how it scored."""

    row_id: str
    """The dataset row."""
    output: str | None
    """The application's reply (None when the call failed)."""
    score: float
    """The aggregated score in [0, 1] (0 when the call or every scorer failed)."""
    verdicts: Mapping[str, ScoredVerdict] = field(default_factory=dict)
    """Scorer name -> its verdict."""
    error: str | None = None
    """Why the application call failed."""
    values: Mapping[str, str] = field(default_factory=dict)
    """The template values the row supplied."""

    @property
    def scores(self) -> dict[str, float | None]:
        """Scorer name -> score in [0, 1] (None: failed or skipped)."""
        return {k: v.score for k, v in self.verdicts.items()}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "row_id": self.row_id,
            "output": self.output,
            "score": self.score,
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "error": self.error,
            "values": dict(self.values),
        }


def aggregate(scores: Sequence[float | None], how: str = "mean") -> float:
    """The row's score from its scorers' scores (failed or skipped ones left out)."""
    known = [s for s in scores if s is not None]
    if not known:
        return 0.0
    if how == "min":
        return min(known)
    return sum(known) / len(known)


def build_scorers(settings: PromptSettings) -> list[Scorer]:
    """The run's scorers: each registered judge version, then the built-ins.

    Raises:
        NotFoundError: a judge version is not registered.
    """
    from core.labeling.criteria import get_criterion
    from core.optimization.registry import list_versions, load_version

    out: list[Scorer] = []
    for choice in settings.judges:
        meta = next(
            (
                v
                for v in list_versions(settings.experiment_id, choice.name)
                if v.version == choice.version
            ),
            None,
        )
        judge = load_version(settings.experiment_id, choice.name, choice.version)
        try:
            criterion = get_criterion(settings.experiment_id, choice.name)
            value_type, options = criterion.kind, tuple(criterion.options or ())
        except Exception:
            value_type, options = "pass_fail", ()
        spec = JudgeSpec(
            name=choice.name,
            instructions=(meta.instructions if meta else getattr(judge, "instructions", "")) or "",
            value_type=value_type,
            model=getattr(judge, "model", None) or "demo:/judge",
            options=options,
            # The server the version was registered with (MLflow does not keep it).
            base_url=meta.base_url if meta else None,
        )
        memalign = bool(meta and meta.is_memalign)
        out.append(
            Scorer(
                name=choice.label,
                kind="judge",
                value_type=value_type,
                spec=spec,
                judge=judge if memalign else None,
                value_map=settings.value_map(choice.name),
                choice=choice,
            )
        )
    model = settings.scorer_model or (out[0].spec.model if out and out[0].spec else "demo:/judge")
    for name in settings.scorers:
        if name == "correctness":
            from mlflow.genai.scorers import Correctness

            spec = JudgeSpec("correctness", "", "pass_fail", model)
            out.append(
                Scorer("correctness", "correctness", "pass_fail", spec, Correctness(model=model))
            )
        elif name == "exact_match":
            out.append(Scorer("exact_match", "exact_match"))
    return out


# --- the evaluator --------------------------------------------------------------------


@dataclass
class EvalStats:
    """Counters of one evaluator."""

    app_calls: int = 0
    """Application calls made (cache misses)."""
    app_failures: int = 0
    """Application calls that failed after retries."""
    output_hits: int = 0
    """Outputs answered from the cache."""
    failed_rows: set[str] = field(default_factory=set)
    """Rows whose application call failed at least once."""


class PromptEvaluator:
    """Renders, calls the application and scores, in parallel, cached (see module doc)."""

    def __init__(
        self,
        settings: PromptSettings,
        scorers: Sequence[Scorer],
        *,
        variables: Sequence[str] = (),
        state: Mapping[str, Any] | None = None,
        app_retries: int = 3,
        cache_verdicts: bool = True,
    ) -> None:
        """Create an evaluator.

        Args:
            settings: The run (application model, mapping, workers, aggregation).
            scorers: What scores each output (:func:`build_scorers`).
            variables: The seed templates' variables; each is filled from the field the
                run's mapping names, else the same-named field.
            state: What :meth:`state` saved in an earlier attempt of the same run.
            app_retries: Retries of a transient application failure.
            cache_verdicts: False pays for every verdict (a baseline that must not get
                our cache for free).
        """
        from core.models.uris import parse_model

        self.settings = settings
        self.scorers = list(scorers)
        explicit = settings.mapping_dict
        self.mapping = {v: explicit.get(v) or v for v in variables}
        self.workers = max(1, int(settings.workers))
        self.app_retries = app_retries
        self.app = parse_model(settings.task_model, settings.task_base_url)
        self.cache = VerdictCache() if cache_verdicts else VerdictCache(max_entries=0)
        self.outputs: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.stats = EvalStats()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._judges: dict[str, JudgeEvaluator] = {}
        for s in self.scorers:
            if s.spec is not None:
                self._judges[s.name] = JudgeEvaluator(
                    s.spec, workers=self.workers, cache=self.cache
                )
        if state:
            self.load_state(state)

    # --- state ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Outputs and verdicts seen so far, JSON-ready (a resumed run reuses them)."""
        with self._lock:
            outputs = [[c, r, o] for (c, r), o in self.outputs.items()]
        return {"outputs": outputs, "verdicts": self.cache.to_json()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Add what :meth:`state` wrote."""
        for row in state.get("outputs") or ():
            if isinstance(row, list) and len(row) == 3:
                self.outputs[(str(row[0]), str(row[1]))] = str(row[2])
        self.cache.load_json(list(state.get("verdicts") or ()))

    def close(self) -> None:
        """Stop worker threads."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        for ev in self._judges.values():
            ev.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="app-call")
            return self._pool

    # --- rendering and the application ------------------------------------------------

    def messages(self, candidate: Mapping[str, str], row: DatasetRow) -> list[dict[str, str]]:
        """The chat messages the application gets for ``row`` under ``candidate``."""
        from core.store.prompts import render, to_messages

        values = values_for(row, self.mapping)
        texts = list(candidate.values())
        out: list[dict[str, str]] = []
        for i, template in enumerate(texts):
            messages = to_messages(render(template, values))
            if len(texts) > 1 and i < len(texts) - 1:
                messages = [{**m, "role": "system"} for m in messages]
            out += messages
        return out

    def _answer(
        self, candidate: Mapping[str, str], row: DatasetRow
    ) -> tuple[str | None, str | None]:
        from core.models.completion import complete

        try:
            messages = self.messages(candidate, row)
        except ValidationError as exc:
            return None, str(exc)
        try:
            text = complete(
                self.app,
                messages,
                retries=self.app_retries,
                backoff=0.25,
                **self.settings.task_params,
            )
            return text, None
        except CredentialsError:
            raise
        except ModelError as exc:
            return None, str(exc)[:500]

    def _outputs(
        self, pairs: Sequence[tuple[Mapping[str, str], DatasetRow]]
    ) -> list[tuple[str | None, str | None]]:
        keys = [(candidate_sha(c), r.id) for c, r in pairs]
        results: list[tuple[str | None, str | None] | None] = []
        todo: list[int] = []
        with self._lock:
            for i, key in enumerate(keys):
                hit = self.outputs.get(key)
                results.append((hit, None) if hit is not None else None)
                if hit is None:
                    todo.append(i)
                else:
                    self.stats.output_hits += 1
        # One call per distinct (candidate, row) even when a round asks twice.
        first: dict[tuple[str, str], int] = {}
        for i in todo:
            first.setdefault(keys[i], i)
        futures = {i: self._executor().submit(self._answer, *pairs[i]) for i in first.values()}
        error: BaseException | None = None
        answers: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        for i, fut in futures.items():
            try:
                answers[keys[i]] = fut.result()
            except CredentialsError as exc:
                error = error or exc
        if error is not None:
            raise error
        with self._lock:
            self.stats.app_calls += len(futures)
            for key, (text, _err) in answers.items():
                if text is not None:
                    self.outputs[key] = text
                    while len(self.outputs) > MAX_OUTPUTS:
                        self.outputs.popitem(last=False)
                else:
                    self.stats.app_failures += 1
                    self.stats.failed_rows.add(key[1])
        return [r if r is not None else answers[keys[i]] for i, r in enumerate(results)]

    # --- scoring ----------------------------------------------------------------------

    def _examples(self, rows: Sequence[DatasetRow], outputs: Sequence[str]) -> list[Example]:
        return [
            Example(
                trace_id=row.id,
                inputs=dict(row.inputs),
                outputs=output,
                expectations=dict(row.expectations or {}),
                label=None,
                rationale=None,
                reviewer="",
                split=row.split,
                label_version=text_sha(output),
            )
            for row, output in zip(rows, outputs, strict=True)
        ]

    def score_outputs(
        self, scorer: Scorer, rows: Sequence[DatasetRow], outputs: Sequence[str]
    ) -> list[ScoredVerdict]:
        """One scorer's verdicts on given outputs of given rows (cached like any other)."""
        return self._score(scorer, self._examples(rows, outputs))

    def _score(self, scorer: Scorer, examples: Sequence[Example]) -> list[ScoredVerdict]:
        if scorer.kind == "exact_match":
            return [_exact(ex) for ex in examples]
        evaluator = self._judges[scorer.name]
        if scorer.judge is None:
            assert scorer.spec is not None
            verdicts = evaluator.evaluate(scorer.spec.instructions, examples)
        else:
            # Not a function of its instructions (MemAlign, Correctness): cached here by
            # the scorer's name instead.
            keys = [(scorer.key, ex.trace_id, ex.label_version) for ex in examples]
            got: list[Verdict | None] = [self.cache.get(k) for k in keys]
            misses = [i for i, v in enumerate(got) if v is None]
            if misses:
                fresh = evaluator.evaluate(scorer.judge, [examples[i] for i in misses])
                for i, v in zip(misses, fresh, strict=True):
                    got[i] = v
                    self.cache.put(keys[i], v)
            verdicts = [v for v in got if v is not None]
        return [
            ScoredVerdict(
                v.value, scorer.normalise(v.value) if v.ok else None, v.rationale, v.error
            )
            for v in verdicts
        ]

    def evaluate(
        self, items: Sequence[tuple[Mapping[str, str], Sequence[DatasetRow]]]
    ) -> list[list[RowResult]]:
        """Run several (candidate, rows) pairs as one round.

        Returns:
            Per item, one :class:`RowResult` per row, in order.

        Raises:
            CredentialsError: a model's key is missing or rejected.
        """
        pairs = [(cand, row) for cand, rows in items for row in rows]
        outputs = self._outputs(pairs)
        verdicts: list[dict[str, ScoredVerdict]] = [{} for _ in pairs]
        answered = [i for i, (text, _) in enumerate(outputs) if text is not None]
        for scorer in self.scorers:
            idx = [i for i in answered if scorer.applies(pairs[i][1])]
            for i in answered:
                if i not in idx:
                    verdicts[i][scorer.name] = ScoredVerdict(None, None, skipped=True)
            if not idx:
                continue
            examples = self._examples(
                [pairs[i][1] for i in idx], [outputs[i][0] or "" for i in idx]
            )
            for i, v in zip(idx, self._score(scorer, examples), strict=True):
                verdicts[i][scorer.name] = v
        results = []
        for i, ((_, row), (text, err)) in enumerate(zip(pairs, outputs, strict=True)):
            score = aggregate([v.score for v in verdicts[i].values()], self.settings.aggregation)
            results.append(
                RowResult(
                    row_id=row.id,
                    output=text,
                    score=score if text is not None else 0.0,
                    verdicts=verdicts[i],
                    error=err,
                    values=self._values(row),
                )
            )
        out: list[list[RowResult]] = []
        pos = 0
        for _, rows in items:
            out.append(results[pos : pos + len(rows)])
            pos += len(rows)
        return out

    def _values(self, row: DatasetRow) -> dict[str, str]:
        try:
            return values_for(row, self.mapping)
        except ValidationError:
            return {}

    # --- counters ---------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Counters for the run's metrics."""
        cache = self.cache.stats()
        judge_failed = sum(ev.stats.failed for ev in self._judges.values())
        judge_retries = sum(ev.stats.retries for ev in self._judges.values())
        return {
            "app_calls": float(self.stats.app_calls),
            "app_failures": float(self.stats.app_failures),
            "output_cache_hits": float(self.stats.output_hits),
            "cache_hits": float(cache["hits"]),
            "judge_failures": float(judge_failed),
            "judge_retries": float(judge_retries),
        }


def _exact(ex: Example) -> ScoredVerdict:
    expected = str((ex.expectations or {}).get("expected_response") or "").strip()
    got = str(ex.outputs or "").strip()
    ok = got == expected
    return ScoredVerdict(
        ok,
        1.0 if ok else 0.0,
        "The output equals the expected response."
        if ok
        else "The output differs from the expected response.",
    )
