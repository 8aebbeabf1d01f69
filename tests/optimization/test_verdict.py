"""The held-out verdict: worse / no_change / improved, and whether a gain is significant."""

from __future__ import annotations

import pytest

from core.optimization.record import Prediction
from core.optimization.verdict import (
    IMPROVED,
    NO_CHANGE,
    WORSE,
    Verdict,
    correctness,
    decide,
    describe,
    judge_verdict,
    paired_difference_ci,
)


def test_lower_accuracy_or_lower_kappa_is_worse():
    assert decide(0.50, 0.36, -0.04, -0.15) == WORSE  # the incident of issue 9
    assert decide(0.50, 0.60, 0.30, 0.20) == WORSE  # kappa alone dropped
    assert decide(0.50, 0.40, 0.10, 0.30) == WORSE  # accuracy alone dropped


def test_equal_scores_are_no_change_and_any_gain_without_a_loss_is_improved():
    assert decide(0.5, 0.5, 0.1, 0.1) == NO_CHANGE
    assert decide(0.5, 0.5) == NO_CHANGE
    assert decide(None, None) == NO_CHANGE  # no evidence either way
    assert decide(0.5, 0.6, 0.1, 0.1) == IMPROVED
    assert decide(0.5, 0.6, None, 0.3) == IMPROVED  # kappa unknown on one side: ignored


def _preds(pairs):
    """(seed right?, aligned right?) per example -> predictions against label 'pass'."""
    return [
        Prediction(f"t{i}", "pass", "pass" if s else "fail", "pass" if a else "fail")
        for i, (s, a) in enumerate(pairs)
    ]


def test_a_large_paired_gain_is_significant_and_a_one_example_gain_is_not():
    big = _preds([(False, True)] * 8 + [(True, True)] * 6)  # 8 of 14 fixed, none broken
    v = judge_verdict({"accuracy": 6 / 14}, {"accuracy": 1.0}, big)
    assert v.verdict == IMPROVED and v.significant
    assert v.diff == pytest.approx(8 / 14) and v.diff_low > 0 and v.n == 14

    small = _preds([(False, True)] + [(True, True)] * 6 + [(False, False)] * 7)
    v = judge_verdict({"accuracy": 6 / 14}, {"accuracy": 7 / 14}, small)
    assert v.verdict == IMPROVED and not v.significant
    assert v.diff_low <= 0 <= v.diff_high


def test_a_significant_loss_is_worse_and_significant():
    preds = _preds([(True, False)] * 7 + [(True, True)] * 7)
    v = judge_verdict({"accuracy": 1.0}, {"accuracy": 0.5}, preds)
    assert v.verdict == WORSE and v.significant and v.diff_high < 0
    assert v.blocks_registration


def test_failed_calls_count_as_disagreement_and_unlabeled_examples_are_left_out():
    preds = [
        Prediction("a", "pass", "pass", None),
        Prediction("b", None, "pass", "pass"),
        Prediction("c", "fail", None, "fail"),
    ]
    assert correctness(preds) == ([1.0, 0.0], [0.0, 1.0])


def test_paired_interval_needs_pairs_and_is_empty_without_examples():
    assert paired_difference_ci([], []) == (None, None, None)
    with pytest.raises(ValueError):
        paired_difference_ci([1.0], [1.0, 0.0])
    diff, low, high = paired_difference_ci([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert diff == low == high == 0.0


def test_descriptions_say_what_happened_and_how_to_override():
    worse = Verdict(WORSE, False, 0.50, 0.36, -0.04, -0.15, -0.14, -0.36, 0.07, 14)
    text = describe(worse)
    assert text.startswith("Worse on held-out traces (accuracy 0.36 vs 0.50")
    assert "not registered" in text and "--register-worse" in text
    forced = describe({**worse.to_dict(), "registered": True, "override": True})
    assert "registered anyway" in forced
    good = Verdict(IMPROVED, True, 0.5, 0.8, 0.0, 0.6, 0.3, 0.05, 0.30, 14)
    assert describe(good).startswith("Improved, significant (CI +0.05..+0.30")
    same = Verdict(NO_CHANGE, False, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 14)
    assert describe(same).startswith("No significant change")
    assert Verdict.from_dict(good.to_dict()) == good
    assert describe(None) == ""
    empty = judge_verdict(None, None, [])
    assert empty.verdict == NO_CHANGE and not empty.significant and empty.n == 0
    assert describe(empty).startswith("No held-out scores to compare")


# --- the gate, end to end on a real store ------------------------------------------------

#: Makes the demo judge pass everything: on the demo test split (9 of 14 human "fail")
#: that is 0.36 accuracy against the seed's 0.50, the incident of issue 9.
WORSE_RULE = '\n- If the response contains "e", the verdict is pass.'
ALIGN = ["align", "--experiment", "demo", "--judge", "support_quality", "--optimizer", "gepa",
         "--model", "demo:/judge", "--reflection-model", "demo:/reflect", "--json"]  # fmt: skip


def worse_runner(settings, train, val, recorder):
    """An optimizer whose reflection 'found' an instruction that passes every reply."""
    from core.optimization.spec import AlignmentOutcome

    return AlignmentOutcome(
        settings.optimizer, settings.judge.instructions + WORSE_RULE, None, 1, metric_calls=10
    )


@pytest.fixture
def demo(store_uri):
    from core.io.demo_seed import seed_demo

    return seed_demo("demo").experiment_id


def _settings(experiment_id, **kw):
    from core.labeling.criteria import get_criterion
    from core.optimization.spec import AlignmentSettings, JudgeSpec

    crit = get_criterion(experiment_id, "support_quality")
    judge = JudgeSpec(crit.name, crit.instructions, crit.kind, "demo:/judge")
    return AlignmentSettings(experiment_id, judge, "gepa", "demo:/reflect", **kw)


def _align(capsys, *args: str) -> dict:
    import json

    from core.cli import main

    assert main([*ALIGN, *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_worse_judge_is_recorded_with_its_verdict_and_not_registered(demo):
    from mlflow import MlflowClient

    from core.optimization import recorder as rec
    from core.optimization.engine import run_alignment
    from core.optimization.record import read_run_record
    from core.optimization.registry import list_versions

    result = run_alignment(_settings(demo), runner=worse_runner)

    assert result.verdict == WORSE and not result.registered and result.judge_version is None
    assert result.test_accuracy_after < result.test_accuracy_before
    assert result.accuracy_diff == pytest.approx(
        result.test_accuracy_after - result.test_accuracy_before
    )
    assert "not registered" in result.verdict_text and "--register-worse" in result.verdict_text
    assert list_versions(demo, "support_quality") == []  # the scorer registry is untouched
    client = MlflowClient()
    tags = client.get_run(result.run_id).data.tags
    assert tags[rec.TAG_VERDICT] == WORSE and rec.TAG_JUDGE_VERSION not in tags

    record = read_run_record(client, result.run_id)
    assert record.result["verdict"] == WORSE and record.result["registered"] is False
    preds = record.test.predictions
    assert len(preds) == result.test_size and all(p.aligned is True for p in preds)
    assert {p.trace_id for p in preds} == set(record.split.test)
    assert record.test.verdict["verdict"] == WORSE
    right = sum(p.seed == p.human for p in preds) / len(preds)
    assert right == pytest.approx(result.test_accuracy_before)


def test_cli_json_says_not_registered_unless_register_worse_is_given(demo, capsys, monkeypatch):
    from core.optimization import engine
    from core.optimization.registry import list_versions

    # The optimizer registry is our own boundary: the CLI runs this module's runner.
    monkeypatch.setitem(engine.RUNNERS, "gepa", (__name__, "worse_runner"))
    out = _align(capsys)
    assert out["verdict"] == WORSE and out["registered"] is False
    assert out["judge_version"] is None and out["significant"] in (True, False)
    assert len(out["accuracy_diff_ci"]) == 2
    assert list_versions(demo, "support_quality") == []

    forced = _align(capsys, "--register-worse")
    assert forced["verdict"] == WORSE and forced["registered"] is True
    assert forced["judge_version"] == 1 and "registered anyway" in forced["verdict_text"]
    assert [v.version for v in list_versions(demo, "support_quality")] == [1]


def test_an_improved_demo_gepa_run_is_registered_with_a_significant_gain(demo, capsys):
    out = _align(capsys, "--max-metric-calls", "120")
    assert out["verdict"] == IMPROVED and out["registered"] is True
    assert out["judge_version"] == 1
    assert out["test_accuracy_after"] > out["test_accuracy_before"]
    low, high = out["accuracy_diff_ci"]
    assert out["significant"] == (low > 0) and low <= out["accuracy_diff"] <= high
    assert out["verdict_text"].startswith("Improved")
    from mlflow import MlflowClient

    from core.optimization import recorder as rec
    from core.optimization.record import read_run_record

    client = MlflowClient()
    assert client.get_run(out["run_id"]).data.tags[rec.TAG_VERDICT] == IMPROVED
    test = read_run_record(client, out["run_id"]).test
    assert len(test.predictions) == out["test_size"] and test.verdict["verdict"] == IMPROVED
    aligned_right = sum(p.aligned == p.human for p in test.predictions) / out["test_size"]
    assert aligned_right == pytest.approx(out["test_accuracy_after"])


# --- on screen ----------------------------------------------------------------------------


def _page(page: str, **state):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
    at = AppTest.from_file(app, default_timeout=60)
    if "run" in state:
        at.query_params["run"] = state.pop("run")
    for k, v in state.items():
        at.session_state[k] = v
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_align_page_and_run_explorer_say_a_worse_judge_was_not_registered(demo_store):
    from core.optimization.engine import run_alignment

    result = run_alignment(_settings(demo_store), runner=worse_runner)

    align = _page("align", align_run=result.run_id)
    (panel,) = [w.value for w in align.warning if w.value.startswith("Finished")]
    assert "nothing registered" in panel and "Worse on held-out traces (accuracy 0.36" in panel
    assert not [s.value for s in align.success if s.value.startswith("Finished")]

    explorer = _page("run_explorer", run=result.run_id)
    (head,) = [w.value for w in explorer.warning if "not registered" in w.value]
    assert head.startswith("Worse on held-out traces")
    # The demo's 14-trace test split cannot tell a 14-point loss from noise; it says so.
    assert any("too small to tell" in w.value for w in explorer.warning)
    per_trace = next(d.value for d in explorer.dataframe if "aligned verdict" in d.value.columns)
    assert len(per_trace) == result.test_size and set(per_trace["aligned verdict"]) == {"Pass"}
    assert per_trace["seed agrees"].mean() == pytest.approx(result.test_accuracy_before)


def test_the_align_page_checkbox_launches_with_register_if_worse(demo_store):
    import time

    from core.optimization import jobs
    from core.optimization.engine import load_settings

    at = _page("align")
    assert at.checkbox(key="align_register_worse").value is False
    at.number_input(key="align_budget").set_value(60)
    at.checkbox(key="align_register_worse").check()
    at.button(key="align_check").click().run()
    at.button(key="align_launch").click().run()
    run_id = at.session_state["align_run"]
    assert load_settings(run_id).register_if_worse is True
    deadline = time.monotonic() + 120
    while jobs.status(run_id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs.status(run_id).status == "finished"


# --- a real gepa run whose reflection model proposes a worse instruction ------------------


def _unique_phrase(text: str, others: list[str], width: int = 36) -> str | None:
    """A stretch of ``text`` (no quotes, no line break) found in none of ``others``."""
    for start in range(0, max(1, len(text) - width), 7):
        phrase = text[start : start + width]
        if '"' in phrase or "\n" in phrase or len(phrase) < width:
            continue
        if not any(phrase.lower() in o.lower() for o in others):
            return phrase
    return None


def _overfit_instruction(seed: str, train, val, test) -> str:
    """Rules that fix the seed on train and val, and break it where it was right on test:
    it wins on validation by a margin no noise explains, and loses on held-out traces."""
    from core.models.demo_prompts import flatten
    from core.optimization.judging import JudgeEvaluator
    from core.optimization.spec import JudgeSpec

    spec = JudgeSpec("support_quality", seed, "pass_fail", "demo:/judge")
    examples = [*train, *val, *test]
    verdicts = JudgeEvaluator(spec).evaluate(seed, examples)
    texts = [flatten(e.outputs) for e in examples]
    held_out = {e.trace_id for e in test}
    rules = []
    for i, (e, v) in enumerate(zip(examples, verdicts, strict=True)):
        right = v.value == e.label
        if (e.trace_id in held_out) != right:
            continue  # keep: train/val examples it got right, test examples it got wrong
        phrase = _unique_phrase(texts[i], texts[:i] + texts[i + 1 :])
        if phrase is None:
            continue
        verdict = "pass" if (e.label is True) != (e.trace_id in held_out) else "fail"
        rules.append(f'- If the response contains "{phrase}", the verdict is {verdict}.')
    return seed + "\n\nRules learned from the reviewers:\n" + "\n".join(rules)


def test_gepa_with_a_reflection_model_proposing_a_worse_instruction_registers_nothing(
    demo_store, monkeypatch
):
    from dataclasses import replace

    from core.optimization.dataset import load_examples, split_examples
    from core.optimization.engine import run_alignment
    from core.optimization.judging import JudgeEvaluator
    from core.optimization.record import read_proposals, read_run_record
    from core.optimization.registry import list_versions
    from tests.support.openai_server import openai_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    base = _settings(demo_store, max_metric_calls=80)
    train, val, test = split_examples(load_examples(demo_store, "support_quality"))
    bad = _overfit_instruction(base.judge.instructions, train, val, test)

    def accuracy(text, examples):
        verdicts = JudgeEvaluator(base.judge).evaluate(text, examples)
        return sum(v.value == e.label for v, e in zip(verdicts, examples, strict=True)) / len(
            examples
        )

    seed = base.judge.instructions
    assert accuracy(bad, list(val)) > accuracy(seed, list(val))  # the trap is set
    assert accuracy(bad, list(test)) < accuracy(seed, list(test))

    def reflect(body: dict) -> str | None:
        prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
        return f"```\n{bad}\n```" if "```" in prompt else None

    with openai_server(answer=reflect) as server:
        settings = replace(
            base, reflection_model="openai:/overfit-reflect", reflection_base_url=server.base_url
        )
        result = run_alignment(settings)
        assert any(r.path.endswith("/chat/completions") for r in server.requests)

    from mlflow import MlflowClient

    run = read_run_record(MlflowClient(), result.run_id)
    assert any(p.status == "accepted" for p in read_proposals(run.proposals))
    assert result.instructions == bad  # gepa and the noise rule both picked it on validation
    assert result.verdict == WORSE and not result.registered and result.judge_version is None
    assert result.test_accuracy_after < result.test_accuracy_before
    assert list_versions(demo_store, "support_quality") == []


def test_a_cancelled_verdict_says_whether_it_was_registered():
    from core.optimization.verdict import Verdict, describe

    base = Verdict("improved", False, 0.5, 0.6, None, None, 0.1, -0.1, 0.3, 10)
    not_kept = describe({**base.to_dict(), "cancelled": True, "not_registered_reason": "cancelled"})
    assert not_kept.startswith("Cancelled: not registered")
    assert "Register if cancelled" in not_kept and "0.60 vs 0.50" in not_kept
    kept = describe({**base.to_dict(), "cancelled": True, "registered": True})
    assert kept.startswith("Cancelled: the best so far was registered")
    assert not describe(base).startswith("Cancelled")
