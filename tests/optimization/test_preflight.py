"""Pre-flight checks refuse a doomed alignment before anything is spent."""

from __future__ import annotations

import mlflow
import pytest

from core.labeling.criteria import create_criterion
from core.labeling.labels import current_labels, set_label
from core.optimization.preflight import Estimate, estimate, preflight
from core.optimization.spec import AlignmentSettings, Example, JudgeSpec

GOOD = "Is {{ outputs }} a good answer to {{ inputs }}? Answer pass or fail."


def _traces(experiment, n: int) -> list[str]:
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    ids = []
    for i in range(n):
        with mlflow.start_span(name="support") as span:
            span.set_inputs({"question": f"q{i}"})
            span.set_outputs(f"answer {i}")
        ids.append(span.trace_id)
    mlflow.flush_trace_async_logging()
    return ids


def _examples(experiment_id: str, criterion: str) -> list[Example]:
    # One example per trace from the first reviewer's label: enough for pre-flight.
    out: dict[str, Example] = {}
    for lab in sorted(current_labels(experiment_id, criterion), key=lambda x: x.reviewer):
        out.setdefault(
            lab.trace_id,
            Example(
                trace_id=lab.trace_id,
                inputs=None,
                outputs=None,
                expectations={},
                label=lab.value,
                rationale=lab.rationale,
                reviewer=lab.reviewer,
                split="train",
                label_version=lab.assessment_id,
            ),
        )
    return list(out.values())


def _settings(experiment, optimizer="gepa", instructions=GOOD, model="demo:/judge", **kw):
    judge = JudgeSpec("quality", instructions, "pass_fail", model)
    return AlignmentSettings(
        experiment.experiment_id, judge, optimizer, reflection_model="demo:/reflect", **kw
    )


@pytest.fixture
def labeled(experiment):
    """Twelve traces: 'quality' labeled by ann (both values), plus another criterion."""
    crit = create_criterion(experiment.experiment_id, "quality", "pass_fail", GOOD)
    other = create_criterion(experiment.experiment_id, "tone", "pass_fail", GOOD)
    ids = _traces(experiment, 12)
    for i, tid in enumerate(ids):
        set_label(tid, crit, "ann", i % 3 != 0, f"reason {i}")
    set_label(ids[0], other, "ann", True)
    return experiment, crit, ids


def _codes(findings):
    return {f.code: f for f in findings}


def test_clean_setup_has_no_findings(labeled):
    experiment, _, _ = labeled
    settings = _settings(experiment)
    found = preflight(settings, _examples(experiment.experiment_id, "quality"))
    assert [f for f in found if f.code != "empty_val_split" and f.code != "empty_test_split"] == []


def test_too_few_labels_says_how_many_exist_and_how_many_more(experiment):
    crit = create_criterion(experiment.experiment_id, "quality", "pass_fail", GOOD)
    for i, tid in enumerate(_traces(experiment, 6)):
        set_label(tid, crit, "ann", i % 2 == 0)
    examples = _examples(experiment.experiment_id, "quality")
    for opt in ("gepa", "mlflow-gepa", "simba"):
        f = _codes(preflight(_settings(experiment, opt), examples))["too_few_labels"]
        assert f.level == "error"
        assert "6 are labeled" in f.message and "Label 4 more" in f.message
    # memalign learns from a handful: no such error.
    assert "too_few_labels" not in _codes(preflight(_settings(experiment, "memalign"), examples))


def test_single_label_value_is_a_warning(experiment):
    crit = create_criterion(experiment.experiment_id, "quality", "pass_fail", GOOD)
    for tid in _traces(experiment, 10):
        set_label(tid, crit, "ann", True)
    found = _codes(preflight(_settings(experiment), _examples(experiment.experiment_id, "quality")))
    assert found["single_label_value"].level == "warning"
    assert "True" in found["single_label_value"].message
    # (These ten traces all hash to train: the split check has its own test below.)
    assert not [f for f in found.values() if f.level == "error" and "split" not in f.code]


def test_label_name_mismatch_lists_existing_label_names(labeled):
    experiment, _, _ = labeled
    judge = JudgeSpec("helpfulness", GOOD, "pass_fail", "demo:/judge")
    settings = AlignmentSettings(experiment.experiment_id, judge, "gepa", "demo:/reflect")
    f = _codes(preflight(settings, []))["no_labels_for_judge"]
    assert f.level == "error"
    assert "'helpfulness'" in f.message and "'quality'" in f.message and "'tone'" in f.message


def test_instructions_without_template_variables_are_refused(labeled):
    experiment, _, _ = labeled
    settings = _settings(experiment, instructions="Is this answer good? Say pass or fail.")
    f = _codes(preflight(settings, _examples(experiment.experiment_id, "quality")))
    assert f["no_template_variables"].level == "error"
    assert "{{ outputs }}" in f["no_template_variables"].message


def test_missing_credentials_name_the_variable(labeled, monkeypatch, tmp_path):
    experiment, _, _ = labeled
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml here
    settings = _settings(experiment, model="openai:/gpt-4.1-mini")
    f = _codes(preflight(settings, _examples(experiment.experiment_id, "quality")))
    assert f["missing_credentials"].level == "error"
    assert "OPENAI_API_KEY" in f["missing_credentials"].message
    assert "judge model" in f["missing_credentials"].message


def test_unknown_optimizer_is_refused(labeled):
    experiment, _, _ = labeled
    f = _codes(
        preflight(
            _settings(experiment, "dspy-magic"), _examples(experiment.experiment_id, "quality")
        )
    )
    assert f["unknown_optimizer"].level == "error"
    assert "gepa" in f["unknown_optimizer"].message


def test_reviewer_disagreement_warns_with_pair_overlap_and_kappa(labeled):
    experiment, crit, ids = labeled
    # bob labels ten of ann's traces, mostly the other way.
    for i, tid in enumerate(ids[:10]):
        ann = i % 3 != 0
        set_label(tid, crit, "bob", ann if i < 3 else not ann)
    found = _codes(preflight(_settings(experiment), _examples(experiment.experiment_id, "quality")))
    f = found["reviewer_disagreement"]
    assert f.level == "warning"
    assert "ann and bob" in f.message and "on 10 traces" in f.message
    assert "kappa -" in f.message  # worse than chance


def test_agreeing_reviewers_raise_no_warning(labeled):
    experiment, crit, ids = labeled
    for i, tid in enumerate(ids[:10]):
        set_label(tid, crit, "bob", i % 3 != 0)
    found = _codes(preflight(_settings(experiment), _examples(experiment.experiment_id, "quality")))
    assert "reviewer_disagreement" not in found


def test_estimate_scales_with_budget_and_latency(experiment):
    settings = _settings(experiment, max_metric_calls=200, workers=8)
    est = estimate(settings, n_train=40, n_val=12, n_test=12)
    assert isinstance(est, Estimate)
    assert est.judge_calls == 200 + 24
    assert est.reflection_calls > 0
    assert est.llm_calls == est.judge_calls + est.reflection_calls
    assert est.seconds_at(0.2) == pytest.approx(2 * est.seconds_at(0.1))
    assert "budget 200" in est.explanation
    auto = estimate(_settings(experiment), n_train=40, n_val=12)
    assert "default 10x train" in auto.explanation and auto.judge_calls == 400 + 24
    mem = estimate(_settings(experiment, "memalign"), n_train=40, n_val=12)
    assert mem.judge_calls == 24 and mem.embedding_calls >= 40


def test_gepa_without_a_validation_or_train_split_is_refused(labeled):
    """gepa cannot run without train and validation examples (it asserts deep inside);
    pre-flight says so before anything is spent. Other optimizers only get a warning."""
    from dataclasses import replace

    experiment, _, _ = labeled
    examples = [replace(e, split="train") for e in _examples(experiment.experiment_id, "quality")]
    found = _codes(preflight(_settings(experiment), examples))
    assert found["empty_val_split"].level == "error"
    assert "gepa cannot run without it" in found["empty_val_split"].message
    memalign = _codes(preflight(_settings(experiment, "memalign"), examples))
    assert memalign["empty_val_split"].level == "warning"
    only_val = [replace(e, split="val") for e in examples]
    assert _codes(preflight(_settings(experiment), only_val))["empty_train_split"].level == "error"
