"""The reviewer's session: work list order, progress, navigation, rationale rules, blind mode."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.labeling.criteria import get_criterion
from core.labeling.labels import current_labels, get_label
from core.labeling.queues import get_queue, queue_items
from core.labeling.session import (
    ALL_TRACES,
    RATIONALE_POLICIES,
    Session,
    judge_verdict,
    load_session,
    others_labels,
    own_label,
    rationale_required,
    submit_label,
    value_options,
    work_lists,
)
from core.labeling.traces import get_trace
from tests.support.judges import log_judge_verdict

CRIT = "support_quality"


def _session(ids, done=()):
    return Session("1", CRIT, "ann", "q", tuple(ids), frozenset(done))


def test_session_navigation_and_progress():
    s = _session(["a", "b", "c", "d"], done={"a", "c"})
    assert (s.total, s.done_count, s.complete) == (4, 2, False)
    assert s.first_pending() == "b" and s.start() == "b"
    assert s.next_id("b") == "c" and s.next_id("d") is None
    assert s.previous_id("b") == "a" and s.previous_id("a") is None
    assert s.next_pending("b") == "d"
    assert s.next_pending("d") == "b"  # wraps round
    after = s.with_done("b").with_done("d")
    assert after.complete and after.next_pending("d") is None and after.start() == "a"
    assert s.position("zzz") is None and s.next_id("zzz") == "b"


def test_queue_session_opens_at_the_reviewers_first_pending_item(demo_store):
    queue = get_queue(demo_store, "support-review")
    order = [i.trace_id for i in queue_items(queue)]
    mine = {
        lab.trace_id for lab in current_labels(demo_store, criterion=CRIT, reviewer="maria.chen")
    }
    s = load_session(demo_store, CRIT, "maria.chen", "support-review")
    assert s.trace_ids == tuple(order)
    assert s.done_count == len(mine) == 63 and s.total == 84
    assert s.start() == next(t for t in order if t not in mine)
    fresh = load_session(demo_store, CRIT, "new.person", "support-review")
    assert fresh.done_count == 0 and fresh.start() == order[0]
    every = load_session(demo_store, CRIT, "maria.chen", ALL_TRACES)
    assert every.total == 84 and set(every.trace_ids) == set(order)


def test_work_lists_put_the_reviewers_queues_first(demo_store):
    assert work_lists(demo_store, "maria.chen") == ["support-review"]
    assert work_lists(demo_store, "someone.else") == ["support-review"]


def test_queue_without_the_criterion_is_refused(demo_store):
    with pytest.raises(ValidationError, match="asks for support_quality"):
        load_session(demo_store, "other_thing", "ann", "support-review")


def test_rationale_rules_never_look_at_the_judge():
    assert rationale_required("always") and rationale_required("always", disagrees=False)
    assert not rationale_required("optional", disagrees=True)
    assert rationale_required("disagree_humans", disagrees=True)
    assert not rationale_required("disagree_humans")
    with pytest.raises(ValidationError, match="Unknown rationale policy"):
        rationale_required("disagree")  # the old judge-based policy is gone
    assert set(RATIONALE_POLICIES) == {"always", "disagree_humans", "optional"}


def test_judge_verdict_is_the_latest_valid_non_human_feedback(demo_store):
    crit = get_criterion(demo_store, CRIT)
    tid = load_session(demo_store, CRIT, "ann", ALL_TRACES).trace_ids[-1]
    assert judge_verdict(get_trace(tid), crit) is None
    log_judge_verdict(tid, "yes", rationale="first")
    log_judge_verdict(tid, "not a verdict", source_id="broken")
    v = judge_verdict(get_trace(tid), crit)
    assert v.value is True and v.rationale == "first"
    log_judge_verdict(tid, False, rationale="second")
    assert judge_verdict(get_trace(tid), crit).value is False


def test_submit_label_checks_the_policy_and_saves(demo_store):
    crit = get_criterion(demo_store, CRIT)
    tid = load_session(demo_store, CRIT, "ann", ALL_TRACES).trace_ids[0]
    with pytest.raises(ValidationError, match="required for every label"):
        submit_label(tid, crit, "ann", False, "  ", policy="always")
    assert get_label(tid, CRIT, "ann") is None
    with pytest.raises(ValidationError, match="Choose a value first"):
        submit_label(tid, crit, "ann", None, "x")
    with pytest.raises(ValidationError, match="Unknown rationale policy"):
        submit_label(tid, crit, "ann", True, "x", policy="never")
    assert get_label(tid, CRIT, "ann") is None
    out = submit_label(tid, crit, "ann", False, ' says "refund issued" ', policy="always")
    assert (out.label.value, out.label.rationale) == (False, 'says "refund issued"')
    assert not out.needs_rationale
    again = submit_label(tid, crit, "ann", True, "", policy="optional")
    assert again.label.value is True and again.label.rationale is None
    assert not again.needs_rationale


def test_disagree_humans_is_checked_after_the_save(demo_store):
    crit = get_criterion(demo_store, CRIT)
    dev = current_labels(demo_store, criterion=CRIT, reviewer="dev.patel")[0]
    others = get_trace(dev.trace_id).labels
    # Agreeing with dev.patel: nothing more to say.
    same = submit_label(dev.trace_id, crit, "newbie", dev.value, "", others=others)
    assert not same.needs_rationale and same.disagrees_with == ()
    # Disagreeing without a rationale: saved all the same, and a rationale is asked for.
    out = submit_label(dev.trace_id, crit, "newbie", not dev.value, None, others=others)
    assert out.needs_rationale
    assert "dev.patel" in {lab.reviewer for lab in out.disagrees_with}
    assert get_label(dev.trace_id, CRIT, "newbie").value is (not dev.value)
    # ... which the same call with a rationale settles.
    fixed = submit_label(dev.trace_id, crit, "newbie", not dev.value, "because", others=others)
    assert not fixed.needs_rationale and fixed.label.rationale == "because"
    assert get_label(dev.trace_id, CRIT, "newbie").rationale == "because"
    # Under "optional" the same disagreement asks nothing.
    opt = submit_label(
        dev.trace_id, crit, "other", not dev.value, None, policy="optional", others=others
    )
    assert not opt.needs_rationale and opt.disagrees_with


def test_flagged_traces_are_skipped_by_start_and_next_pending():
    s = _session(["a", "b", "c", "d"], done={"a"}).with_flagged(frozenset({"b"}))
    assert s.start() == "c" and s.first_pending() == "c"
    assert s.next_pending("c") == "d" and s.next_pending("d") == "c"
    assert s.with_done("c").with_done("d").next_pending("d") is None
    assert s.with_done("c").flagged == {"b"}  # with_done keeps the flags
    assert s.next_id("a") == "b"  # plain navigation still visits a flagged trace


def test_mark_done_quietly_reports_instead_of_raising(demo_store):
    from core.labeling.session import mark_done_quietly

    queue = get_queue(demo_store, "support-review")
    first = queue_items(queue)[0].trace_id
    msg = mark_done_quietly(queue, first, "nobody.labeled.this")
    assert msg and "review queue was not updated" in msg


def test_blind_mode_hides_others_until_the_reviewer_has_labeled(demo_store):
    crit = get_criterion(demo_store, CRIT)
    both = [
        lab.trace_id for lab in current_labels(demo_store, criterion=CRIT, reviewer="dev.patel")
    ]
    tid = both[0]
    detail = get_trace(tid)
    hidden = others_labels(detail, CRIT, "newbie", blind=True)
    assert hidden.labels == () and hidden.hidden >= 1
    shown = others_labels(detail, CRIT, "newbie", blind=False)
    assert "dev.patel" in {lab.reviewer for lab in shown.labels}
    submit_label(tid, crit, "newbie", True, None)
    after = get_trace(tid)
    assert own_label(after, CRIT, "newbie").value is True
    view = others_labels(after, CRIT, "newbie", blind=True)
    assert view.hidden == 0 and "dev.patel" in {lab.reviewer for lab in view.labels}
    assert "newbie" not in {lab.reviewer for lab in view.labels}


def test_value_options_follow_the_schema(demo_store):
    crit = get_criterion(demo_store, CRIT)
    assert value_options(crit) == [(True, "Pass"), (False, "Fail")]
