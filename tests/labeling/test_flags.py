"""Flags: a reviewer's "unsure" / "broken trace" mark, stored as a trace tag, never a label."""

from __future__ import annotations

import json

import mlflow
import pytest

from core.errors import ValidationError
from core.labeling.flags import (
    MAX_COMMENT_CHARS,
    clear_flag,
    flag_key,
    flags_of,
    list_flags,
    parse_flag,
    set_flag,
)
from core.labeling.labels import get_label
from core.labeling.session import ALL_TRACES, load_session

CRIT = "support_quality"


def _ids(eid: str, n: int) -> list[str]:
    return list(load_session(eid, CRIT, "flagger", ALL_TRACES).trace_ids[:n])


def test_set_flag_writes_one_tag_per_reviewer_and_criterion(demo_store):
    a, b = _ids(demo_store, 2)
    flag = set_flag(a, CRIT, " ann ", "unsure", "  not sure about the tone ")
    assert (flag.reviewer, flag.kind, flag.comment) == ("ann", "unsure", "not sure about the tone")
    tags = mlflow.get_trace(a).info.tags
    stored = json.loads(tags[flag_key(CRIT, "ann")])
    assert stored["kind"] == "unsure" and stored["reviewer"] == "ann"
    # A second flag by the same reviewer replaces the first; another reviewer adds one.
    set_flag(a, CRIT, "ann", "broken", "the reply is cut off")
    set_flag(a, CRIT, "bob", "unsure")
    found = flags_of(a, dict(mlflow.get_trace(a).info.tags))
    assert sorted((f.reviewer, f.kind) for f in found) == [("ann", "broken"), ("bob", "unsure")]
    set_flag(b, "other_criterion", "ann", "unsure")
    # A flag is not a label.
    assert get_label(a, CRIT, "ann") is None

    every = list_flags(demo_store)
    assert {(f.trace_id, f.criterion, f.reviewer) for f in every} >= {
        (a, CRIT, "ann"),
        (a, CRIT, "bob"),
        (b, "other_criterion", "ann"),
    }
    assert all(f.trace_id == a for f in list_flags(demo_store, criterion=CRIT))
    assert [f.trace_id for f in list_flags(demo_store, trace_ids=[b])] == [b]
    times = [f.time_ms for f in every]
    assert times == sorted(times, reverse=True)  # newest first


def test_clear_flag_removes_only_that_reviewers_flag(demo_store):
    (a,) = _ids(demo_store, 1)
    set_flag(a, CRIT, "ann", "unsure")
    set_flag(a, CRIT, "bob", "unsure")
    assert clear_flag(a, CRIT, "ann") is True
    assert clear_flag(a, CRIT, "ann") is False  # nothing left to clear
    left = flags_of(a, dict(mlflow.get_trace(a).info.tags))
    assert [f.reviewer for f in left] == ["bob"]


@pytest.mark.parametrize(
    ("reviewer", "kind", "comment", "message"),
    [
        ("ann", "maybe", "x", "Unknown flag"),
        ("  ", "unsure", "x", "Say who you are"),
        ("ann", "broken", "   ", "what is broken"),
        ("ann", "unsure", "x" * (MAX_COMMENT_CHARS + 1), "at most"),
    ],
)
def test_bad_flags_are_refused_and_write_nothing(demo_store, reviewer, kind, comment, message):
    (a,) = _ids(demo_store, 1)
    before = dict(mlflow.get_trace(a).info.tags)
    with pytest.raises(ValidationError, match=message):
        set_flag(a, CRIT, reviewer, kind, comment)
    assert dict(mlflow.get_trace(a).info.tags) == before


def test_unreadable_flag_tags_are_ignored():
    key = flag_key(CRIT, "ann")
    assert parse_flag("t", "some.other.tag", "{}") is None
    assert parse_flag("t", key, "not json") is None
    assert parse_flag("t", key, json.dumps({"kind": "weird", "criterion": CRIT})) is None
    assert parse_flag("t", key, json.dumps({"kind": "unsure"})) is None  # no criterion
    ok = parse_flag("t", key, json.dumps({"kind": "unsure", "criterion": CRIT, "reviewer": "a"}))
    assert ok is not None and ok.comment == "" and ok.time_ms == 0
    assert flag_key(CRIT, "ann") != flag_key(CRIT, "bob")


def test_flagged_ids_are_the_reviewers_flags_on_the_criterion(demo_store):
    from core.labeling.session import flagged_ids

    a, b, c = _ids(demo_store, 3)
    set_flag(a, CRIT, "ann", "unsure")
    set_flag(b, CRIT, "ann", "broken", "empty reply")
    set_flag(c, CRIT, "bob", "unsure")
    set_flag(c, "other_criterion", "ann", "unsure")
    assert flagged_ids(demo_store, CRIT, "ann") == {a, b}
    assert flagged_ids(demo_store, CRIT, "bob") == {c}
    assert flagged_ids(demo_store, CRIT, "nobody") == frozenset()
    clear_flag(b, CRIT, "ann")
    assert flagged_ids(demo_store, CRIT, "ann") == {a}
