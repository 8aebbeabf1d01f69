"""Active labeling: each signal puts its constructed case first with the right reason; the
tie-breaks and the no-signal order; fill_queue on a real store (idempotent, reviewers)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.entities import AssessmentSource

from core.errors import ValidationError
from core.labeling.active import (
    NO_SIGNAL,
    Verdict,
    confidence_of,
    fill_queue,
    informative_ranking,
    judge_verdicts,
    rank,
    rank_informative,
    similarities,
)
from core.labeling.consolidation import consolidate_values
from core.labeling.queues import get_queue, queue_items

J = "support_quality"


def _show(v):
    return {True: "pass", False: "fail"}.get(v, str(v))


def _v(version, value, confidence=None):
    return Verdict(version, value, confidence)


def test_similarity_is_tfidf_cosine_and_deterministic():
    sims = similarities(
        ["refund my boots today", "stove leaking gas"],
        ["refund the boots", "the gas stove is leaking", "weather forecast"],
    )
    assert sims.shape == (2, 3)
    assert sims[0].argmax() == 0 and sims[1].argmax() == 1
    assert sims[0, 2] == 0 and sims[1, 2] == 0  # no word in common
    again = similarities(
        ["refund my boots today", "stove leaking gas"],
        ["refund the boots", "the gas stove is leaking", "weather forecast"],
    )
    assert (sims == again).all()


def test_two_versions_disagreeing_rank_first_with_both_verdicts_named():
    pool = ["t1", "t2", "t3"]
    verdicts = {
        "t1": [_v(1, True), _v(3, True)],
        "t2": [_v(3, False), _v(1, True)],  # order given does not matter
        "t3": [_v(1, False)],
    }
    ranking = rank(pool, {}, verdicts, {}, judge=J, show=_show)
    first = ranking.picks[0]
    assert first.trace_id == "t2"
    assert first.reasons == ("support_quality v1 says pass, v3 says fail",)
    assert first.signals == ("versions",) and first.score == 1.0
    assert [p.reasons for p in ranking.picks[1:]] == [(NO_SIGNAL,), (NO_SIGNAL,)]
    assert ranking.versions == (1, 3) and ranking.n_with_verdicts == 3


def test_verdict_against_the_majority_of_similar_labeled_traces_ranks_first():
    texts = {
        "p-agree": "can I return my hiking boots for a refund",
        "p-odd": "you will get your refund today for the stove",
    }
    labels = {}
    # Five labeled traces like p-odd, four of them labeled fail; five like p-agree, pass.
    for i in range(5):
        texts[f"odd{i}"] = f"refund today for the stove {i} guaranteed"
        labels[f"odd{i}"] = i == 4  # four fail, one pass
        texts[f"ok{i}"] = f"return hiking boots refund label {i}"
        labels[f"ok{i}"] = True
    names = {f"odd{i}": f"nw-0{i}" for i in range(5)}
    verdicts = {"p-agree": [_v(2, True)], "p-odd": [_v(2, True)]}
    ranking = rank(
        ["p-agree", "p-odd"], texts, verdicts, labels, judge=J, k=5, show=_show, names=names
    )
    first = ranking.picks[0]
    assert first.trace_id == "p-odd"
    assert first.signals == ("neighbours",)
    assert first.score == pytest.approx(0.8)
    assert first.reasons == (
        "judge (v2) says pass; 4 of the 5 most similar labeled traces were labeled fail "
        "(nw-00, nw-01, nw-02, ...)",
    )
    assert ranking.picks[1].trace_id == "p-agree"
    assert ranking.picks[1].reasons == (NO_SIGNAL,)


def test_least_sure_verdict_ranks_first_and_a_note_says_when_nobody_exposes_it():
    verdicts = {
        "sure": [_v(1, True, 0.97)],
        "unsure": [_v(1, False, 0.55)],
        "blind": [_v(1, True)],
    }
    ranking = rank(["sure", "blind", "unsure"], {}, verdicts, {}, judge=J, show=_show)
    assert [p.trace_id for p in ranking.picks] == ["unsure", "sure", "blind"]
    assert ranking.picks[0].reasons == ("judge unsure: v1 says fail with confidence 0.55",)
    assert ranking.picks[0].score == pytest.approx(0.45)
    assert ranking.picks[2].reasons == (NO_SIGNAL,)
    assert not any("unsure" in n for n in ranking.notes)

    blind = rank(["a", "b"], {}, {"a": [_v(1, True)], "b": [_v(1, False)]}, {}, judge=J)
    assert any("exposes how sure" in n for n in blind.notes)


def test_numeric_verdict_in_the_middle_of_its_scale_is_least_sure():
    verdicts = {"edge": [_v(1, 5.0)], "mid": [_v(1, 3.0)], "near": [_v(1, 4.0)]}
    ranking = rank(
        ["edge", "near", "mid"], {}, verdicts, {}, judge="helpful", numeric=True, scale=(1, 5)
    )
    assert [p.trace_id for p in ranking.picks] == ["mid", "near", "edge"]
    assert ranking.picks[0].reasons == ("judge unsure: v1 gave 3, the middle of its 1-5 scale",)
    assert ranking.picks[1].score == pytest.approx(0.5)
    assert ranking.picks[2].reasons == (NO_SIGNAL,)  # at the end of the scale: sure


def test_numeric_verdict_far_from_the_similar_traces_mean_ranks_first():
    texts = {"odd": "stove leaking gas smell", "fine": "boots refund label"}
    labels = {}
    for i, value in enumerate((4.0, 5.0, 5.0, 4.0, 5.0)):
        texts[f"s{i}"] = f"stove leaking gas {i}"
        labels[f"s{i}"] = value
    verdicts = {"odd": [_v(1, 1.0)], "fine": [_v(1, 1.0)]}
    ranking = rank(
        ["fine", "odd"],
        texts,
        verdicts,
        labels,
        judge="safety",
        numeric=True,
        scale=(1, 5),
        show=lambda v: f"{v:g}",
    )
    assert ranking.picks[0].trace_id == "odd"
    assert ranking.picks[0].reasons == (
        "judge (v1) says 1; the 5 most similar labeled traces average 4.6 (s0, s1, s2, ...)",
    )
    assert ranking.picks[1].reasons == (NO_SIGNAL,)  # nothing labeled like it


def test_confidence_and_probability_metadata():
    assert confidence_of({"confidence": "0.7"}) == pytest.approx(0.7)
    assert confidence_of({"probability": 0.2}) == pytest.approx(0.8)
    assert confidence_of({"confidence": 3}) is None
    assert confidence_of({"other": 1}) is None and confidence_of(None) is None


def test_ties_go_to_the_novel_trace_then_to_arrival_order_and_no_signal_comes_last():
    texts = {
        "lab": "boots refund label",
        "near": "boots refund label please",
        "far": "stove leaking gas",
        "far2": "helmet cracked badly",
        "quiet1": "boots refund",
        "quiet2": "stove",
    }
    disagree = [_v(1, True), _v(2, False)]
    verdicts = {"near": disagree, "far": disagree, "far2": disagree, "quiet2": [_v(2, True)]}
    pool = ["quiet2", "near", "far", "quiet1", "far2"]
    # The labeled trace agrees with the newest verdict (fail): only the versions signal.
    ranking = rank(pool, texts, verdicts, {"lab": False}, judge=J, show=_show)
    order = [p.trace_id for p in ranking.picks]
    # Same score: far and far2 share nothing with the labeled trace (novelty 1, arrival
    # order between them), near resembles it; then the no-signal traces in arrival order.
    assert order == ["far", "far2", "near", "quiet2", "quiet1"]
    assert ranking.picks[0].novelty == 1.0 and ranking.picks[2].novelty < 1.0
    assert [p.reasons for p in ranking.picks[3:]] == [(NO_SIGNAL,), (NO_SIGNAL,)]


def test_no_verdicts_says_what_to_do_first():
    ranking = rank(["a", "b"], {"a": "x", "b": "y"}, {}, {}, judge=J)
    assert [p.trace_id for p in ranking.picks] == ["a", "b"]
    assert any("score the unlabeled traces" in n for n in ranking.notes)


def test_consolidation_is_the_majority_then_the_most_active_reviewer():
    values = consolidate_values(
        [
            ("t1", "ann", True),
            ("t1", "bob", False),
            ("t1", "cy", False),
            ("t2", "ann", True),
            ("t2", "bob", False),
            ("t3", "ann", True),
        ]
    )
    assert values == {"t1": False, "t2": True, "t3": True}  # ann has the most labels


def test_k_must_be_positive():
    with pytest.raises(ValidationError):
        rank(["a"], {}, {}, {}, judge=J, k=0)


# --- the store ----------------------------------------------------------------------------


def _log(trace_id: str, value, version: int, metadata=None, name: str = J) -> None:
    mlflow.log_feedback(
        trace_id=trace_id,
        name=name,
        value=value,
        source=AssessmentSource(source_type="LLM_JUDGE", source_id=f"{name}/v{version}"),
        rationale="r",
        metadata=metadata,
    )


def _unlabeled(experiment_id: str) -> list[str]:
    ranking = informative_ranking(experiment_id, J)
    return [p.trace_id for p in ranking.picks]


def test_store_ranking_reads_verdicts_and_skips_labeled_traces(demo_store):
    pool = _unlabeled(demo_store)
    assert len(pool) == 21  # 84 demo traces, 63 labeled
    a, b, c = pool[5], pool[9], pool[2]
    _log(a, True, 1)
    _log(a, False, 2)
    _log(b, True, 1, metadata={"confidence": "0.6"})
    _log(c, True, 1, name="other_criterion")  # another judge's verdict: ignored
    ranking = informative_ranking(demo_store, J)
    assert ranking.n_pool == 21 and ranking.n_labeled == 63 and ranking.versions == (1, 2)
    picks = {p.trace_id: p for p in ranking.picks}
    assert ranking.picks[0].trace_id == a
    assert "support_quality v1 says Pass, v2 says Fail" in picks[a].reasons
    assert "judge unsure: v1 says Pass with confidence 0.60" in picks[b].reasons
    assert picks[c].reasons == (NO_SIGNAL,)
    infos = mlflow.get_trace(a).info.assessments
    assert [v.version for v in judge_verdicts(infos, J)] == [1, 2]


def test_fill_queue_creates_the_queue_assigns_reviewers_and_never_adds_twice(demo_store):
    pool = _unlabeled(demo_store)
    top = pool[7]
    _log(top, True, 1)
    _log(top, False, 2)

    picks = fill_queue(demo_store, J, "active-review", 3, reviewers=["ana.lopez"])
    assert len(picks) == 3 and picks[0].trace_id == top
    queue = get_queue(demo_store, "active-review")
    assert queue.reviewers == ("ana.lopez",) and queue.criteria == (J,)
    # Attached in rank order: the reviewer's working order is the ranking's.
    assert [i.trace_id for i in queue_items(queue)] == [p.trace_id for p in picks]
    first = {p.trace_id for p in picks}

    more = fill_queue(demo_store, J, "active-review", 3, reviewers=["bo.kim"])
    assert not first & {p.trace_id for p in more}
    queue = get_queue(demo_store, "active-review")
    assert queue.reviewers == ("ana.lopez", "bo.kim")
    assert len(queue_items(queue)) == 6

    rest = fill_queue(demo_store, J, "active-review", 100)
    assert len(rest) == 21 - 6
    assert fill_queue(demo_store, J, "active-review", 5) == []
    assert len(queue_items(get_queue(demo_store, "active-review"))) == 21
    # The pool can leave out a queue's traces without filling it.
    assert rank_informative(demo_store, J, exclude_queue="active-review") == []


def test_fill_queue_refuses_bad_requests(demo_store):
    with pytest.raises(ValidationError):
        fill_queue(demo_store, J, "q", 0)
    with pytest.raises(ValidationError):
        fill_queue(demo_store, J, "  ", 3)
    with pytest.raises(ValidationError):
        rank_informative(demo_store, J, pool="all")  # type: ignore[arg-type]


def test_bulk_scored_versions_feed_the_ranking(prompt_demo):
    """Two registered versions scored in bulk (the scoring job's own code, in process):
    where they disagree, the ranking says so with their real verdicts."""
    from core.labeling.criteria import get_criterion
    from core.optimization.bulk_scoring import TraceSelection, build_score_settings, run_scoring
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version
    from core.optimization.spec import JudgeSpec

    seed = get_criterion(prompt_demo, J).instructions  # v1 is the aligned judge
    v2 = register_version(
        build_judge(JudgeSpec(J, seed, "pass_fail", "demo:/judge")),
        prompt_demo,
        run_id=None,
        test_metrics={},
    )
    for ref in (f"{J}@production", f"{J}@{v2}"):
        settings = build_score_settings(prompt_demo, ref, TraceSelection(mode="unlabeled"))
        assert run_scoring(settings).n_scored == 21

    ranking = informative_ranking(prompt_demo, J)
    assert ranking.n_with_verdicts == 21 and ranking.versions == (1, v2)
    by_trace = {p.trace_id: p for p in ranking.picks}
    disagree = []
    for trace_id, pick in by_trace.items():
        vs = {
            v.version: v.value
            for v in judge_verdicts(mlflow.get_trace(trace_id).info.assessments, J)
        }
        assert set(vs) == {1, v2}
        if vs[1] != vs[v2]:
            disagree.append(trace_id)
            show = {True: "Pass", False: "Fail"}
            assert f"{J} v1 says {show[vs[1]]}, v{v2} says {show[vs[v2]]}" in pick.reasons
        else:
            assert "versions" not in pick.signals
    assert disagree, "the aligned and the seed judge should disagree somewhere on the demo"
    scores = [p.score for p in ranking.picks]
    assert scores == sorted(scores, reverse=True)
    assert all(by_trace[t].score >= 1 for t in disagree)
