"""load_examples: one example per labeled trace, consolidated, split, from a real store."""

from __future__ import annotations

from core.labeling.labels import Label
from core.labeling.splits import assign_split
from core.optimization.dataset import consolidate, load_examples, split_examples
from tests.optimization.demo_examples import CRITERION


def _label(trace: str, reviewer: str, value, rationale: str = "", aid: str = "") -> Label:
    return Label(
        trace, CRITERION, reviewer, value, rationale, aid or f"{trace}-{reviewer}", 0, 0, None
    )


def test_majority_wins_and_ties_go_to_the_reviewer_with_most_labels():
    labels = [
        # t1: two of three say fail -> fail, rationale from the primary among them.
        _label("t1", "ann", True, "ann says pass"),
        _label("t1", "bob", False, "bob says fail"),
        _label("t1", "cat", False, "cat says fail"),
        # t2: a tie between ann and bob -> ann, who labeled most traces overall.
        _label("t2", "ann", True, "ann: fine"),
        _label("t2", "bob", False, "bob: broken"),
        _label("t3", "ann", False, "only ann"),
        _label("t4", "bob", True, "only bob"),
    ]
    chosen = consolidate(labels)
    assert chosen["t1"].value is False and chosen["t1"].reviewer == "bob"  # bob has 3 labels
    assert chosen["t1"].rationale == "bob says fail"
    assert chosen["t2"].value is True and chosen["t2"].reviewer == "ann"
    assert chosen["t3"].reviewer == "ann" and chosen["t4"].reviewer == "bob"


def test_categorical_majority_ignores_case():
    labels = [_label("t", "a", "Good"), _label("t", "b", "good"), _label("t", "c", "bad")]
    assert consolidate(labels)["t"].value.lower() == "good"


def test_demo_examples_carry_io_labels_and_stable_splits(demo_store):
    examples = load_examples(demo_store, CRITERION)
    assert len(examples) == 63  # the demo's labeled traces, one example each
    assert len({e.trace_id for e in examples}) == len(examples)
    for ex in examples:
        assert ex.split == assign_split(ex.trace_id)
        assert isinstance(ex.label, bool)
        assert ex.inputs and ex.outputs and ex.label_version
    train, val, test = split_examples(examples)
    assert len(train) + len(val) + len(test) == len(examples)
    assert {e.split for e in train} == {"train"} and {e.split for e in test} == {"test"}
    again = load_examples(demo_store, CRITERION)
    assert [(e.trace_id, e.split, e.label) for e in again] == [
        (e.trace_id, e.split, e.label) for e in examples
    ]


def test_only_the_criterions_human_labels_count(demo_store):
    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType

    from core.labeling.criteria import create_criterion
    from core.labeling.labels import set_label
    from core.labeling.traces import all_trace_ids

    labeled = {e.trace_id for e in load_examples(demo_store, CRITERION)}
    unlabeled = [t for t in all_trace_ids(demo_store) if t not in labeled]
    # A judge's feedback with the criterion's name is not a human label...
    mlflow.log_feedback(
        trace_id=unlabeled[0],
        name=CRITERION,
        value=True,
        source=AssessmentSource(AssessmentSourceType.LLM_JUDGE, "demo:/judge"),
    )
    # ...and neither is a human label of another criterion.
    tone = create_criterion(demo_store, "tone", "pass_fail", "Is the tone friendly?")
    set_label(unlabeled[1], tone, "maria.chen", True, "friendly")
    after = {e.trace_id for e in load_examples(demo_store, CRITERION)}
    assert after == labeled


def test_reviewer_filter_and_tie_rule_on_demo(demo_store):
    from core.labeling.criteria import get_criterion
    from core.labeling.labels import set_label

    examples = load_examples(demo_store, CRITERION)
    target = examples[0]
    crit = get_criterion(demo_store, CRITERION)
    # dev.patel disagrees on a trace: one label each, a tie -> maria.chen (more labels).
    set_label(target.trace_id, crit, "dev.patel", not target.label, 'He says "nope".')
    mine = {e.trace_id: e for e in load_examples(demo_store, CRITERION)}
    assert mine[target.trace_id].label == target.label
    assert mine[target.trace_id].reviewer == "maria.chen"
    only_dev = load_examples(demo_store, CRITERION, reviewers=("dev.patel",))
    dev = {e.trace_id: e for e in only_dev}
    assert dev[target.trace_id].label == (not target.label)
    assert all(e.reviewer == "dev.patel" for e in only_dev)
