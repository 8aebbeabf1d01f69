"""The Score page's views: verdicts from the store, distribution, drift, the traces table.

Drift figures are checked against ``core.agreement.compare`` called directly on the same
pairs, so a regrouping or a swapped reference/prediction shows up as a mismatch.
"""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow
import pytest
from mlflow.entities import AssessmentSource

from core.agreement import compare
from core.errors import ValidationError
from core.labeling.consolidation import consolidate
from core.labeling.criteria import Criterion, get_criterion
from core.labeling.labels import current_labels, iter_trace_infos
from core.labeling.splits import assign_split
from core.views.scores import (
    BEFORE_BULK,
    Verdict,
    Verdicts,
    distribution,
    drift,
    load_verdicts,
    parse_source_id,
    trace_rows,
    week_of,
)

CRIT = "support_quality"


def _log(trace_id: str, value, version: int, run_id: str | None = None, name: str = CRIT):
    meta = {"alignboard.run_id": run_id, "alignboard.judge_version": str(version)}
    mlflow.log_feedback(
        trace_id=trace_id,
        name=name,
        value=value,
        rationale=f"v{version} says {value}",
        source=AssessmentSource(source_type="LLM_JUDGE", source_id=f"{name}/v{version}"),
        metadata=meta if run_id else None,
    )


def _humans(eid: str) -> dict[str, bool]:
    return {t: lab.value for t, lab in consolidate(current_labels(eid, CRIT)).items()}


def _arrival(eid: str) -> list[str]:
    return [i.trace_id for i in iter_trace_infos(eid)]


def test_parse_source_id():
    assert parse_source_id("support_quality/v12", CRIT) == 12
    assert parse_source_id("other/v1", CRIT) is None
    assert parse_source_id("support_quality-judge", CRIT) is None
    assert parse_source_id(None, CRIT) is None


def test_load_verdicts_reads_versions_runs_and_the_consolidated_label(demo_store):
    crit = get_criterion(demo_store, CRIT)
    ids = _arrival(demo_store)
    humans = _humans(demo_store)
    unlabeled = [t for t in ids if t not in humans][:5]
    labeled = [t for t in ids if t in humans][:20]
    for t in labeled[:10]:
        _log(t, "pass", 1)  # before bulk scoring: no run id
    for t in labeled[10:] + unlabeled:
        _log(t, "fail", 1, run_id="run-b")
    for t in labeled[:4]:
        _log(t, "fail", 2, run_id="run-c")
    # Not verdicts of this judge's versions: another source id, another judge's name.
    _log(labeled[0], "pass", 1, name="politeness")
    mlflow.log_feedback(
        trace_id=labeled[1],
        name=CRIT,
        value=True,
        source=AssessmentSource(source_type="LLM_JUDGE", source_id="some-judge"),
    )

    got = load_verdicts(demo_store, crit)
    assert got.versions == [1, 2]
    assert got.n_labeled == len(humans) == 63
    v1 = {v.trace_id: v for v in got.of_version(1)}
    assert set(v1) == set(labeled) | set(unlabeled)
    assert v1[labeled[0]].value is True and v1[labeled[0]].run_id is None
    assert v1[labeled[12]].value is False and v1[labeled[12]].run_id == "run-b"
    assert v1[labeled[12]].rationale == "v1 says fail"
    for t in labeled:
        assert v1[t].human == humans[t]
        assert v1[t].agrees == (v1[t].value == humans[t])
    assert all(v1[t].human is None and v1[t].agrees is None for t in unlabeled)
    assert {v.trace_id for v in got.of_version(2)} == set(labeled[:4])
    assert all(v.request_ms > 0 and v.scored_ms >= v.request_ms for v in got.verdicts)


def test_drift_per_batch_equals_compare_on_the_same_pairs(demo_store):
    crit = get_criterion(demo_store, CRIT)
    ids = _arrival(demo_store)
    humans = _humans(demo_store)
    # A judge that passes every trace in the first half of the labeled ones, then fails
    # every one: its agreement with the humans changes between batches.
    labeled = [t for t in ids if t in humans]
    pred = {t: i < len(labeled) // 2 for i, t in enumerate(labeled)}
    for t, value in pred.items():
        _log(t, value, 3, run_id="run-x")
    for t in [t for t in ids if t not in humans][:6]:
        _log(t, True, 3, run_id="run-x")  # unlabeled: not in the drift
    got = drift(load_verdicts(demo_store, crit), 3, "batch", batch_size=25, n_bootstrap=200)

    assert [p.n for p in got.points] == [25, 25, 13]
    assert [p.period for p in got.points] == ["traces 1-25", "traces 26-50", "traces 51-63"]
    assert got.n_verdicts == 63 + 6 and got.n_pairs == 63
    chunks = [labeled[0:25], labeled[25:50], labeled[50:]]
    for point, chunk in zip(got.points, chunks, strict=True):
        want = compare(
            {t: humans[t] for t in chunk},
            {t: pred[t] for t in chunk},
            "pass_fail",
            n_bootstrap=200,
            seed=0,
        )
        assert point.accuracy == pytest.approx(want.accuracy)
        assert point.kappa == want.cohen_kappa
        assert point.report.accuracy_ci == want.accuracy_ci
        assert point.report.cohen_kappa_ci == want.cohen_kappa_ci
        assert not point.too_few
    whole = compare(humans, pred, "pass_fail", n_bootstrap=200, seed=0)
    assert got.overall is not None
    assert got.overall.accuracy == pytest.approx(whole.accuracy)
    assert got.overall.report.cohen_kappa_ci == whole.cohen_kappa_ci
    # Human as reference: the judge's TPR is over the humans' passes.
    assert got.overall.report.tpr == whole.tpr

    by_run = drift(load_verdicts(demo_store, crit), 3, "run", n_bootstrap=0)
    assert [p.period for p in by_run.points] == ["run-x"] and by_run.points[0].n == 63

    # Held out: only the test split's labeled traces, with compare's figures on them.
    test = [t for t in labeled if assign_split(t) == "test"]
    assert 0 < len(test) < len(labeled)
    held = drift(load_verdicts(demo_store, crit), 3, "batch", n_bootstrap=200, held_out=True)
    assert held.n_pairs == len(test) and held.overall is not None
    want = compare(
        {t: humans[t] for t in test}, {t: pred[t] for t in test}, "pass_fail", n_bootstrap=200
    )
    assert held.overall.accuracy == pytest.approx(want.accuracy)
    assert held.overall.report.accuracy_ci == want.accuracy_ci


# ---- pure: synthetic verdicts at chosen times ------------------------------------------

PF = Criterion(name=CRIT, kind="pass_fail", instructions="Is the reply helpful?")


def _ms(y, m, d, h=12):
    return int(datetime(y, m, d, h, tzinfo=UTC).timestamp() * 1000)


def _v(i, value, human, when, version=1, run=None, scored=None):
    return Verdict(
        trace_id=f"tr-{i:03d}",
        version=version,
        value=value,
        rationale=f"because {i}",
        request_ms=when,
        scored_ms=scored if scored is not None else when + 1000,
        run_id=run,
        human=human,
    )


def _synthetic() -> Verdicts:
    out = []
    i = 0
    # Week of 2026-11-02 (Mon) to Sun 2026-11-08: 12 pairs, judge right on 9.
    for k in range(12):
        day = 2 + k % 7
        out.append(_v(i, True, k < 9, _ms(2026, 11, day), run="r1"))
        i += 1
    # Week of 2026-11-09: only 3 pairs (too few) and 2 unlabeled verdicts.
    for k in range(3):
        out.append(_v(i, False, False, _ms(2026, 11, 9 + k), run="r2"))
        i += 1
    for _ in range(2):
        out.append(_v(i, True, None, _ms(2026, 11, 10), run="r2"))
        i += 1
    # Week of 2026-11-16: 10 pairs, judge right on 5; written before bulk scoring.
    for k in range(10):
        out.append(_v(i, k % 2 == 0, True, _ms(2026, 11, 16), run=None, scored=_ms(2026, 11, 1)))
        i += 1
    # Version 2 on a few traces.
    out += [_v(100 + k, False, True, _ms(2026, 11, 16), version=2, run="r3") for k in range(4)]
    return Verdicts("1", PF, tuple(out), n_labeled=29)


def test_week_of_starts_on_monday_utc():
    assert week_of(_ms(2026, 11, 8, 23)) == "week of 2026-11-02"  # a Sunday
    assert week_of(_ms(2026, 11, 9, 0)) == "week of 2026-11-09"  # the Monday after


def test_drift_per_week_marks_small_weeks_and_keeps_them():
    got = drift(_synthetic(), 1, "week", n_bootstrap=100)
    assert [p.period for p in got.points] == [
        "week of 2026-11-02",
        "week of 2026-11-09",
        "week of 2026-11-16",
    ]
    assert [p.n for p in got.points] == [12, 3, 10]
    assert [p.too_few for p in got.points] == [False, True, False]
    assert [p.accuracy for p in got.points] == pytest.approx([9 / 12, 1.0, 0.5])
    assert got.n_verdicts == 27 and got.n_pairs == 25
    assert got.overall is not None and got.overall.accuracy == pytest.approx(17 / 25)
    # A smaller threshold unmarks the small week.
    assert not any(p.too_few for p in drift(_synthetic(), 1, "week", min_pairs=3).points)


def test_drift_per_run_orders_runs_by_first_verdict_and_names_the_unrun_batch():
    got = drift(_synthetic(), 1, "run", n_bootstrap=0)
    # The pre-bulk verdicts were written first (scored on Nov 1), so they come first.
    assert [(p.period, p.n) for p in got.points] == [(BEFORE_BULK, 10), ("r1", 12), ("r2", 3)]
    assert got.points[0].report.accuracy_ci is None  # n_bootstrap=0: no intervals


def test_drift_refuses_bad_arguments_and_handles_no_pairs():
    with pytest.raises(ValidationError, match="Unknown grouping"):
        drift(_synthetic(), 1, "month")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Batch size"):
        drift(_synthetic(), 1, "batch", batch_size=0)
    none = drift(_synthetic(), 7, "week")
    assert none.points == () and none.overall is None and none.n_pairs == 0


def test_distribution_counts_per_version_day_week_and_run():
    vs = _synthetic()
    per_version = {(r.group, r.value): (r.count, r.total) for r in distribution(vs)}
    assert per_version == {
        ("v1", "Pass"): (12 + 2 + 5, 27),
        ("v1", "Fail"): (3 + 5, 27),
        ("v2", "Fail"): (4, 4),
    }
    weeks = distribution(vs, "week", version=1)
    assert [(r.group, r.value, r.count) for r in weeks] == [
        ("week of 2026-11-02", "Pass", 12),
        ("week of 2026-11-09", "Pass", 2),
        ("week of 2026-11-09", "Fail", 3),
        ("week of 2026-11-16", "Pass", 5),
        ("week of 2026-11-16", "Fail", 5),
    ]
    assert weeks[1].share == pytest.approx(2 / 5)
    days = distribution(vs, "day", version=1)
    assert sum(r.count for r in days) == 27
    assert {r.group for r in days} >= {"2026-11-02", "2026-11-16"}
    runs = distribution(vs, "run", version=1)
    assert runs[0].group == BEFORE_BULK
    assert {(r.group, r.value): r.count for r in runs}[("r2", "Fail")] == 3
    with pytest.raises(ValidationError, match="Unknown grouping"):
        distribution(vs, "hour")  # type: ignore[arg-type]


def test_trace_rows_filter_by_verdict_and_agreement():
    vs = _synthetic()
    every = trace_rows(vs, 1)
    assert len(every) == 27
    assert every[0].request_time.startswith("2026-11-16")  # newest trace first
    fails = trace_rows(vs, 1, values=["Fail"])
    assert len(fails) == 8 and {r.verdict for r in fails} == {"Fail"}
    assert len(trace_rows(vs, 1, agreement="agree")) == 9 + 3 + 5
    wrong = trace_rows(vs, 1, agreement="disagree")
    assert len(wrong) == 3 + 5 and all(r.agrees is False for r in wrong)
    blank = trace_rows(vs, 1, agreement="unlabeled")
    assert len(blank) == 2 and all(r.human == "" and r.agrees is None for r in blank)
    both = trace_rows(vs, 1, values=["Pass"], agreement="disagree")
    assert len(both) == 3 and {r.human for r in both} == {"Fail"}
    assert {r.run_id for r in trace_rows(vs, 1)} == {"r1", "r2", BEFORE_BULK}
    assert trace_rows(vs, 2)[0].trace_id == "tr-103"  # full id, text
    with pytest.raises(ValidationError, match="agreement filter"):
        trace_rows(vs, 1, agreement="maybe")  # type: ignore[arg-type]


def test_the_launch_form_becomes_a_trace_selection():
    from datetime import date

    from core.views.scores import form_selection, parse_tags

    assert parse_tags(" env=prod, app = shop ,") == {"env": "prod", "app": "shop"}
    with pytest.raises(ValidationError, match="key=value"):
        parse_tags("env")
    sel = form_selection(
        "labeled", split="test", days=(date(2026, 11, 2), date(2026, 11, 8)), tags="env=prod"
    )
    assert (sel.mode, sel.split, sel.tags, sel.limit) == ("labeled", "test", {"env": "prod"}, None)
    # Both days included: until is the start of the day after the last one (exclusive).
    assert sel.since_ms == _ms(2026, 11, 2, 0) and sel.until_ms == _ms(2026, 11, 9, 0)
    one_day = form_selection("all", days=(date(2026, 11, 2),), limit=50, split="test")
    assert one_day.until_ms is None and one_day.limit == 50 and one_day.split == "all"
    with pytest.raises(ValidationError, match="queue"):
        form_selection("queue")
    assert form_selection("queue", queue="support-review").queue == "support-review"
