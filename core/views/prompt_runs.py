"""What a prompt optimization run shows beyond an alignment run: outputs side by side.

A prompt optimization ends by scoring the seed prompt and the best prompt on the held-out
rows (:func:`core.optimization.prompt_task.score_prompts`); the test-metrics record keeps
both outputs of every row with each scorer's verdict and rationale
(``TestMetrics.outputs``) and the per-scorer means with bootstrap intervals
(``TestMetrics.scores``). This module turns that record into what the Run explorer and
the Versions page show:

- :func:`build_scores`: per-scorer held-out score before/after with 95% intervals;
- :func:`build_outputs`: for a chosen candidate, its output next to the seed prompt's on
  every held-out input. Only the seed and the best were run on the test split, so any
  other candidate gets an explanation instead of rows;
- :func:`list_prompt_runs` / :func:`prompt_label`: the experiment's optimization runs,
  for the Optimize page and the Run explorer's run picker; :func:`same_active_run`: an
  active run a launch would merely repeat;
- :func:`compare_prompt_versions`: the scores and outputs of two prompt versions when a
  finished run compared exactly those two (the optimization that made one from the other,
  found through the version tags the registrar writes, or a comparison run of the two),
  or why there are none.

Everything is built from the record, never from HTML: pages show outputs as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import NotFoundError
from core.optimization import record
from core.optimization import recorder as rec
from core.optimization.jobs import KIND_PROMPT, TAG_PROMPT
from core.optimization.prompt_spec import COMPARE
from core.store import config
from core.views.formatting import interval

#: Tags a registered prompt version carries (``core.optimization.prompt_task``'s, which
#: this light module does not import; tests/views/test_prompt_runs.py keeps them equal).
VERSION_TAG_RUN = "alignboard.run_id"
VERSION_TAG_BASE = "alignboard.base_version"
#: The aggregated score's key in ``TestMetrics.scores``.
OVERALL = "overall"
#: How many optimization runs a picker lists.
MAX_RUNS = 30


# --- views ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorerVerdict:
    """One scorer's verdict on one output, as text."""

    scorer: str
    """The scorer's display name (``support_quality v1``, ``correctness``)."""
    value: str
    """The verdict as shown: ``pass``/``fail``, a category, a number, or ``-``."""
    score: float | None
    """The verdict mapped to [0, 1] (None when the scorer failed or was skipped)."""
    rationale: str
    """The scorer's rationale (empty when none)."""
    error: str | None = None
    """Why the scorer failed on this output, if it did."""
    skipped: bool = False
    """The scorer did not apply (e.g. Correctness on a row without expectations)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class OutputPair:
    """One held-out input: the seed prompt's output next to the candidate's."""

    row_id: str
    """The dataset row."""
    inputs: str
    """The template values the row supplied, as ``name: value`` lines."""
    seed_output: str | None
    """The seed prompt's output (None when the application call failed)."""
    output: str | None
    """The candidate's output (None when the call failed)."""
    seed_score: float | None
    """The seed output's aggregated score in [0, 1]."""
    score: float | None
    """The candidate output's aggregated score in [0, 1]."""
    seed_verdicts: tuple[ScorerVerdict, ...] = ()
    """Every scorer's verdict on the seed output."""
    verdicts: tuple[ScorerVerdict, ...] = ()
    """Every scorer's verdict on the candidate's output."""

    @property
    def change(self) -> float | None:
        """``score - seed_score`` when both are known."""
        if self.score is None or self.seed_score is None:
            return None
        return self.score - self.seed_score

    @property
    def outcome(self) -> str:
        """``better``, ``worse``, ``same`` or ``failed`` (an application call failed)."""
        if self.change is None:
            return "failed"
        if abs(self.change) < 1e-9:
            return "same"
        return "better" if self.change > 0 else "worse"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["change"], d["outcome"] = self.change, self.outcome
        return d


@dataclass(frozen=True)
class SideBySide:
    """A candidate's held-out outputs next to the seed prompt's, or why there are none."""

    candidate_id: int | None
    """The candidate shown (None: the best, in a record without candidate ids)."""
    label: str
    """How to name it (``#3 (best)``, ``v2``)."""
    seed_label: str
    """How to name the seed (``#0 seed``, ``v1``)."""
    rows: tuple[OutputPair, ...] = ()
    """One per held-out input, in the record's order."""
    scorers: tuple[str, ...] = ()
    """Scorer names, in scoring order."""
    note: str | None = None
    """Why there are no rows (a candidate other than the best, no held-out scores yet)."""

    @property
    def available(self) -> bool:
        """True when there are outputs to show."""
        return bool(self.rows)

    def counts(self) -> dict[str, int]:
        """How many inputs the candidate did better, worse, the same, or failed on."""
        out = {"better": 0, "worse": 0, "same": 0, "failed": 0}
        for r in self.rows:
            out[r.outcome] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "candidate_id": self.candidate_id,
            "label": self.label,
            "seed_label": self.seed_label,
            "rows": [r.to_dict() for r in self.rows],
            "scorers": list(self.scorers),
            "note": self.note,
            "counts": self.counts(),
        }


@dataclass(frozen=True)
class ScorerScore:
    """One scorer's mean held-out score, seed prompt vs best, with 95% intervals."""

    scorer: str
    """The scorer's name, or ``overall`` for the aggregated score."""
    before: float | None
    """The seed prompt's mean score in [0, 1]."""
    after: float | None
    """The best prompt's mean score."""
    before_ci: tuple[float, float] | None = None
    """Bootstrap 95% interval of ``before``."""
    after_ci: tuple[float, float] | None = None
    """Bootstrap 95% interval of ``after``."""
    n: int = 0
    """Held-out rows both outputs were scored on."""

    @property
    def change(self) -> float | None:
        """``after - before`` when both are known."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def is_overall(self) -> bool:
        """True for the aggregated score."""
        return self.scorer == OVERALL

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["change"] = self.change
        return d


@dataclass(frozen=True)
class PromptPair:
    """Two prompt versions as one finished optimization run scored them, or why not."""

    name: str
    """The prompt."""
    version_a: int
    """Left-hand version (what the page calls A)."""
    version_b: int
    """Right-hand version (B)."""
    run_id: str | None = None
    """The run that scored exactly these two versions on the same held-out inputs."""
    scores: tuple[ScorerScore, ...] = ()
    """Per scorer (and overall): ``before`` is version A, ``after`` version B."""
    outputs: SideBySide | None = None
    """B's outputs next to A's on the run's held-out inputs (``seed`` = A)."""
    note: str | None = None
    """Why there are no scores (never scored together, run not finished...)."""
    task_model: str | None = None
    """The application model that run called (``demo:/app`` is the stand-in)."""

    @property
    def scored(self) -> bool:
        """True when the two versions were scored together."""
        return bool(self.scores)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "version_a": self.version_a,
            "version_b": self.version_b,
            "run_id": self.run_id,
            "scores": [s.to_dict() for s in self.scores],
            "outputs": self.outputs.to_dict() if self.outputs else None,
            "note": self.note,
            "task_model": self.task_model,
        }


# --- pure builders ----------------------------------------------------------------------


def _test(test: record.TestMetrics | Mapping[str, Any] | None) -> record.TestMetrics | None:
    if test is None or isinstance(test, record.TestMetrics):
        return test
    return record.TestMetrics.from_dict(test)


def _ci(value: Any) -> tuple[float, float] | None:
    if not value or len(value) != 2 or value[0] is None or value[1] is None:
        return None
    return float(value[0]), float(value[1])


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def show_value(value: Any) -> str:
    """A verdict value as text: ``pass``/``fail`` for booleans, ``-`` when missing."""
    if isinstance(value, bool):
        return "pass" if value else "fail"
    if isinstance(value, str) and value.lower() in ("yes", "no", "true", "false"):
        return "pass" if value.lower() in ("yes", "true") else "fail"
    return "-" if value is None else str(value)


def _verdicts(raw: Mapping[str, Mapping[str, Any]]) -> tuple[ScorerVerdict, ...]:
    return tuple(
        ScorerVerdict(
            scorer=str(name),
            value="failed" if v.get("error") else show_value(v.get("value")),
            score=_float(v.get("score")),
            rationale=str(v.get("rationale") or ""),
            error=v.get("error") or None,
            skipped=bool(v.get("skipped")),
        )
        for name, v in raw.items()
    )


def inputs_text(values: Mapping[str, Any]) -> str:
    """Template values as ``name: value`` lines (what the application was asked)."""
    return "\n".join(f"{k}: {v}" for k, v in values.items())


def build_scores(
    test: record.TestMetrics | Mapping[str, Any] | None, *, swap: bool = False
) -> tuple[ScorerScore, ...]:
    """Per-scorer held-out scores (judges and built-ins first, ``overall`` last).

    Args:
        test: The run's test-metrics record (or its dict).
        swap: Exchange before and after (the Versions page with the newer version left).
    """
    tm = _test(test)
    if tm is None or not tm.scores:
        return ()
    names = [k for k in tm.scores if k != OVERALL] + ([OVERALL] if OVERALL in tm.scores else [])
    out = []
    for name in names:
        s = tm.scores[name]
        before, after = _float(s.get("before")), _float(s.get("after"))
        bci, aci = _ci(s.get("before_ci")), _ci(s.get("after_ci"))
        if swap:
            before, after, bci, aci = after, before, aci, bci
        out.append(ScorerScore(name, before, after, bci, aci, int(s.get("n") or 0)))
    return tuple(out)


def build_outputs(
    test: record.TestMetrics | Mapping[str, Any] | None,
    *,
    candidate_id: int | None = None,
    best_id: int | None = None,
    seed_id: int | None = 0,
    label: str | None = None,
    seed_label: str | None = None,
    swap: bool = False,
) -> SideBySide:
    """A candidate's held-out outputs next to the seed prompt's, with every verdict.

    Args:
        test: The run's test-metrics record (or its dict).
        candidate_id: The candidate to show; None means the best.
        best_id: The run's best candidate (the one scored on the test split).
        seed_id: The seed candidate.
        label: How to name the candidate (default ``#<id>``).
        seed_label: How to name the seed (default ``#<seed_id> seed``).
        swap: Show the seed's outputs as the candidate's and the other way round (the
            Versions page when the newer version is on the left).
    """
    chosen = best_id if candidate_id is None else candidate_id
    name = label or (f"#{chosen}" if chosen is not None else "best")
    seed_name = seed_label or (f"#{seed_id} seed" if seed_id is not None else "seed")
    tm = _test(test)
    if chosen is not None and seed_id is not None and chosen == seed_id:
        return SideBySide(
            chosen,
            name,
            seed_name,
            note="This is the seed prompt: pick another candidate to compare its outputs.",
        )
    if chosen is not None and best_id is not None and chosen != best_id:
        return SideBySide(
            chosen,
            name,
            seed_name,
            note=(
                f"Held-out outputs exist only for the seed and the best candidate (#{best_id}): "
                f"the run scored just those two on the test split, so candidate #{chosen} has "
                "validation scores only."
            ),
        )
    if tm is None or not tm.outputs:
        why = (tm.note if tm is not None else None) or (
            "No held-out outputs yet: they are recorded when the run ends."
        )
        return SideBySide(chosen, name, seed_name, note=why)
    scorers: list[str] = []
    rows = []
    for o in tm.outputs:
        for k in [*o.before_verdicts, *o.after_verdicts]:
            if k not in scorers:
                scorers.append(k)
        before = (o.before, _float(o.before_score), _verdicts(o.before_verdicts))
        after = (o.after, _float(o.after_score), _verdicts(o.after_verdicts))
        if swap:
            before, after = after, before
        rows.append(
            OutputPair(
                row_id=o.row_id,
                inputs=inputs_text(o.values),
                seed_output=before[0],
                output=after[0],
                seed_score=before[1],
                score=after[1],
                seed_verdicts=before[2],
                verdicts=after[2],
            )
        )
    return SideBySide(chosen, name, seed_name, tuple(rows), tuple(scorers))


def output_rows(side: SideBySide) -> list[dict[str, Any]]:
    """One table row per held-out input: both outputs, both scores, every verdict."""
    out = []
    for r in side.rows:
        row: dict[str, Any] = {
            "row": r.row_id,
            "input": r.inputs,
            f"{side.seed_label} output": r.seed_output if r.seed_output is not None else "(failed)",
            f"{side.label} output": r.output if r.output is not None else "(failed)",
            f"{side.seed_label} score": r.seed_score,
            f"{side.label} score": r.score,
            "outcome": r.outcome,
        }
        for who, verdicts in ((side.seed_label, r.seed_verdicts), (side.label, r.verdicts)):
            for v in verdicts:
                row[f"{v.scorer} on {who}"] = v.value
        out.append(row)
    return out


# --- reading runs -----------------------------------------------------------------------


def _client():
    from mlflow import MlflowClient

    config.configure()
    return MlflowClient()


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(float(value))
    except (TypeError, ValueError):
        return None


def prompt_label(job: Any) -> str:
    """``northwind-support v1 -> v2`` for a prompt run's ``JobStatus`` (``v1`` until a
    version is registered)."""
    name = getattr(job, "prompt_name", None) or "prompt"
    base, new = getattr(job, "base_version", None), getattr(job, "prompt_version", None)
    return name + (f" v{base}" if base is not None else "") + (f" -> v{new}" if new else "")


def list_prompt_runs(experiment_id: str, max_results: int = MAX_RUNS) -> list[Any]:
    """The experiment's prompt optimization runs (``JobStatus``), newest first."""
    from core.optimization import jobs

    return jobs.list_jobs(experiment_id, max_results, kind=KIND_PROMPT)


def same_active_run(settings: Any) -> str | None:
    """The newest queued or running prompt run with exactly these settings, if any.

    Launching the same prompt, data, scorers, budget and seed again repeats that run (the
    second click of a double click does exactly that): the Optimize page asks first.
    """
    from core.optimization.engine import load_any_settings

    for job in list_prompt_runs(settings.experiment_id):
        if not job.active:
            continue
        try:
            if load_any_settings(job.run_id) == settings:
                return str(job.run_id)
        except NotFoundError:
            continue
    return None


# --- two prompt versions ------------------------------------------------------------------


def _version_tags(name: str, version: int) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        pv = _client().get_prompt_version(name, int(version))
    except MlflowException as exc:
        raise NotFoundError(f"Prompt {name!r} has no version {version}.") from exc
    return dict(getattr(pv, "tags", None) or {})


def _scoring_run(name: str, a: int, b: int) -> tuple[str | None, bool]:
    """The run that optimized one of the two versions into the other, and whether the
    newer one is ``a`` (so the run's before/after must be swapped for A/B)."""
    for newer, older, swap in ((b, a, False), (a, b, True)):
        tags = _version_tags(name, newer)
        if tags.get(VERSION_TAG_RUN) and _int(tags.get(VERSION_TAG_BASE)) == older:
            return tags[VERSION_TAG_RUN], swap
    return None, False


def _compare_run(experiment_id: str, name: str, a: int, b: int) -> tuple[str | None, bool]:
    """The newest finished comparison run (optimizer ``compare``: two existing versions
    scored on the held-out rows, nothing optimized) of exactly ``a`` and ``b``."""
    if "'" in name:
        return None, False  # not a name the filter can quote (the registry refuses them)
    runs = _client().search_runs(
        [str(experiment_id)],
        filter_string=(
            f"tags.`{rec.TAG_KIND}` = '{KIND_PROMPT}' AND tags.`{TAG_PROMPT}` = '{name}' "
            f"AND params.optimizer = '{COMPARE}' AND tags.`{rec.TAG_STATUS}` = 'finished'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=MAX_RUNS,
    )
    for run in runs:
        params = run.data.params
        pair = (params.get("prompt"), params.get("compare_version"))
        if pair == (f"{name}@{a}", str(b)):
            return run.info.run_id, False
        if pair == (f"{name}@{b}", str(a)):
            return run.info.run_id, True
    return None, False


@dataclass(frozen=True)
class ComparisonDefaults:
    """What an on-demand comparison of two versions of a prompt runs on: the dataset,
    application model and judges of the prompt's newest finished optimization."""

    dataset: str
    task_model: str
    judges: tuple[str, ...]
    scorers: tuple[str, ...] = ()
    mapping: tuple[tuple[str, str], ...] = ()
    task_base_url: str | None = None
    run_id: str | None = None
    """The run these come from."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def comparison_defaults(experiment_id: str, name: str) -> ComparisonDefaults | None:
    """The settings of ``name``'s newest finished optimization in the experiment, as the
    defaults of a comparison (None when it was never optimized here)."""
    from core.optimization.engine import load_any_settings
    from core.optimization.prompt_spec import PromptSettings

    for job in list_prompt_runs(experiment_id):
        if job.status != "finished" or getattr(job, "prompt_name", None) != name:
            continue
        try:
            s = load_any_settings(job.run_id)
        except NotFoundError:
            continue
        if not isinstance(s, PromptSettings):
            continue
        return ComparisonDefaults(
            dataset=s.dataset,
            task_model=s.task_model,
            judges=tuple(f"{j.name}@{j.version}" for j in s.judges),
            scorers=s.scorers,
            mapping=s.mapping,
            task_base_url=s.task_base_url,
            run_id=job.run_id,
        )
    return None


def compare_prompt_versions(
    name: str, version_a: int, version_b: int, experiment_id: str | None = None
) -> PromptPair:
    """Held-out scores and outputs of two prompt versions, when a finished run compared
    exactly those two: the optimization that made one from the other (the newer version's
    ``alignboard.run_id`` and ``alignboard.base_version`` tags), else, in
    ``experiment_id``, a comparison run of the two (optimizer ``compare``).

    Raises:
        NotFoundError: either version does not exist.
    """
    a, b = int(version_a), int(version_b)
    never = (
        f"v{a} and v{b} were never scored together: no finished optimization run compared "
        "exactly these two versions on the same held-out inputs. Score them together below."
    )
    if a == b:
        _version_tags(name, a)
        return PromptPair(name, a, b, note="The same version on both sides.")
    run_id, swap = _scoring_run(name, a, b)
    if run_id is None and experiment_id is not None:
        run_id, swap = _compare_run(experiment_id, name, a, b)
    if run_id is None:
        return PromptPair(name, a, b, note=never)
    client = _client()
    try:
        run = client.get_run(run_id)
    except Exception:
        return PromptPair(name, a, b, run_id, note=f"{never} (Run {run_id} is gone.)")
    status = run.data.tags.get(rec.TAG_STATUS) or run.info.status.lower()
    test = record.read_test_metrics(client, run_id)
    if test is None or not test.scores:
        return PromptPair(
            name,
            a,
            b,
            run_id,
            note=f"Run {run_id} ({status}) recorded no held-out scores for these versions.",
        )
    outputs = build_outputs(
        test,
        candidate_id=None,
        best_id=None,
        seed_id=None,
        label=f"v{b}",
        seed_label=f"v{a}",
        swap=swap,
    )
    return PromptPair(
        name,
        a,
        b,
        run_id,
        build_scores(test, swap=swap),
        outputs,
        task_model=run.data.params.get("task_model"),
    )


def score_rows(scores: Sequence[ScorerScore], before: str, after: str) -> list[dict[str, Any]]:
    """A table of per-scorer scores: ``before``/``after`` name the two columns."""
    return [
        {
            "scorer": "overall (aggregated)" if s.is_overall else s.scorer,
            f"{before} score": s.before,
            f"{before} 95% CI": interval(s.before_ci, label=False),
            f"{after} score": s.after,
            f"{after} 95% CI": interval(s.after_ci, label=False),
            "change": s.change,
            "held-out inputs": s.n,
        }
        for s in scores
    ]
