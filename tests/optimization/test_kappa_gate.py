"""The reviewer agreement gate: blocked below the criterion's minimum kappa unless a written
reason overrides it; the reason and the labels' precedence are recorded in the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.errors import ValidationError
from core.labeling.adjudication import adjudicate, disputes
from core.labeling.criteria import get_criterion
from core.labeling.rules import set_criterion_rules
from core.optimization import record
from core.optimization.engine import load_settings, run_alignment
from core.optimization.preflight import GATE_OVERRIDDEN, MIN_GATE_OVERLAP, preflight
from core.optimization.recorder import local_artifact_dir
from core.optimization.settings import build_settings, check_alignment, with_kappa_override
from core.optimization.spec import AlignmentSettings, JudgeSpec
from core.views.adjudication import only_gate_blocks, precedence_line
from tests.optimization.test_engine import tiny_runner

ROOT = Path(__file__).resolve().parents[2]
CRIT = "support_quality"
GOOD = "Is {{ outputs }} a good answer to {{ inputs }}?"


def _settings(**kw) -> AlignmentSettings:
    judge = JudgeSpec("quality", GOOD, "pass_fail", "demo:/judge")
    return AlignmentSettings("0", judge, "memalign", "demo:/reflect", **kw)


def _rows(n_agree: int, n_disagree: int, *, start: int = 0) -> list[tuple[str, str, bool]]:
    rows = []
    for i in range(start, start + n_agree + n_disagree):
        value = i % 2 == 0
        rows += [
            (f"t{i}", "ann", value),
            (f"t{i}", "bob", value if i < start + n_agree else not value),
        ]
    return rows


def _codes(findings) -> dict:
    return {f.code: f for f in findings}


def test_below_the_minimum_blocks_and_a_written_reason_lets_it_through():
    rows = _rows(6, 4)  # kappa 0.2 on 10 shared traces
    blocked = _codes(
        preflight(_settings(), [], labels=rows, label_names=[], min_reviewer_kappa=0.6)
    )
    f = blocked["reviewer_kappa_below_minimum"]
    assert f.level == "error" and "ann and bob" in f.message and "minimum 0.60" in f.message
    assert only_gate_blocks([f])
    # A blank reason is no reason.
    blank = preflight(
        _settings(kappa_override_reason="  "),
        [],
        labels=rows,
        label_names=[],
        min_reviewer_kappa=0.6,
    )
    assert "reviewer_kappa_below_minimum" in _codes(blank)
    over = _codes(
        preflight(
            _settings(kappa_override_reason="Guideline v2 is out; relabel next week.",
                      kappa_override_by="lead.lee"),
            [], labels=rows, label_names=[], min_reviewer_kappa=0.6,
        )
    )  # fmt: skip
    assert "reviewer_kappa_below_minimum" not in over
    o = over[GATE_OVERRIDDEN]
    assert o.level == "warning"
    assert o.message.startswith(
        "Reviewer agreement gate overridden by lead.lee: Guideline v2 is out; relabel next week."
    )


def test_agreement_at_or_above_the_minimum_passes_and_no_minimum_means_no_gate():
    rows = _rows(10, 0)
    codes = _codes(preflight(_settings(), [], labels=rows, label_names=[], min_reviewer_kappa=0.6))
    assert not {"reviewer_kappa_below_minimum", "reviewer_kappa_unknown"} & codes.keys()
    low = _rows(6, 4)
    codes = _codes(preflight(_settings(), [], labels=low, label_names=[], min_reviewer_kappa=None))
    assert not {"reviewer_kappa_below_minimum", "reviewer_kappa_unknown"} & codes.keys()


def test_too_few_shared_traces_to_compute_kappa_blocks_and_says_so():
    rows = _rows(2, 1)  # 3 shared traces, below MIN_GATE_OVERLAP
    rows += [("solo1", "ann", True), ("solo2", "ann", False)]
    f = _codes(preflight(_settings(), [], labels=rows, label_names=[], min_reviewer_kappa=0.4))[
        "reviewer_kappa_unknown"
    ]
    assert f.level == "error"
    assert f"at least {MIN_GATE_OVERLAP} of the same traces" in f.message
    assert "the most any pair shares: 3" in f.message
    one_reviewer = [(f"t{i}", "ann", i % 2 == 0) for i in range(12)]
    codes = _codes(
        preflight(_settings(), [], labels=one_reviewer, label_names=[], min_reviewer_kappa=0.4)
    )
    assert "reviewer_kappa_unknown" in codes


def test_gold_labels_do_not_count_in_the_gate():
    # The adjudicator agrees with ann on every trace; only ann vs bob counts.
    rows = [(*r, False) for r in _rows(6, 4)]
    rows += [(f"t{i}", "lead", i % 2 == 0, True) for i in range(10)]
    codes = _codes(preflight(_settings(), [], labels=rows, label_names=[], min_reviewer_kappa=0.6))
    assert "reviewer_kappa_below_minimum" in codes
    assert "lead" not in codes["reviewer_kappa_below_minimum"].message


def test_an_override_needs_a_reason_and_a_name():
    base = _settings()
    with pytest.raises(ValidationError, match="Write why"):
        with_kappa_override(base, "   ", "lead.lee")
    with pytest.raises(ValidationError, match="Say who you are"):
        with_kappa_override(base, "because", "")
    done = with_kappa_override(base, " because ", " lead.lee ")
    assert (done.kappa_override_reason, done.kappa_override_by) == ("because", "lead.lee")
    assert done.to_params()["kappa_override_reason"] == "because"
    assert "kappa_override_reason" not in base.to_params()
    assert AlignmentSettings.from_dict(json.loads(done.to_json())) == done


@pytest.fixture
def gated(demo_store):
    crit = get_criterion(demo_store, CRIT)
    set_criterion_rules(demo_store, CRIT, min_reviewer_kappa=0.8)  # the demo's kappa is ~0.65
    return demo_store, crit


def test_a_gated_criterion_launches_nothing_without_a_reason(gated):
    experiment_id, crit = gated
    settings = build_settings(experiment_id, crit, optimizer="gepa", max_metric_calls=40)
    check = check_alignment(settings)
    assert not check.can_launch and only_gate_blocks(check.findings)
    with pytest.raises(ValidationError, match="below the minimum set for this criterion"):
        run_alignment(settings, runner=tiny_runner)
    assert MlflowClient().search_runs([experiment_id]) == []


def test_with_a_reason_it_launches_and_the_run_records_reason_and_precedence(gated):
    experiment_id, crit = gated
    d = disputes(experiment_id, CRIT)[0]
    adjudicate(d.trace_id, crit, "lead.lee", "pass", "The reply follows the refund policy.")
    settings = build_settings(
        experiment_id,
        crit,
        optimizer="gepa",
        max_metric_calls=40,
        kappa_override_reason="Guideline v2 ships Friday; align on what we have.",
        kappa_override_by="lead.lee",
    )
    result = run_alignment(settings, runner=tiny_runner)
    assert result.status == "finished"
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.params["kappa_override_by"] == "lead.lee"
    assert run.data.params["kappa_override_reason"].startswith("Guideline v2 ships Friday")
    assert load_settings(result.run_id).kappa_override_reason == settings.kappa_override_reason
    root = local_artifact_dir(client, result.run_id)
    findings = json.loads((root / record.PREFLIGHT).read_text())["findings"]
    over = [f for f in findings if f["code"] == GATE_OVERRIDDEN]
    assert over and "overridden by lead.lee: Guideline v2 ships Friday" in over[0]["message"]
    assert any(w["code"] == GATE_OVERRIDDEN for w in result.warnings)
    # The precedence used, in the result record (older results read without it).
    sources = result.label_sources
    assert set(sources) == {"gold", "majority", "primary_tiebreak", "single"}
    assert sources["gold"] == 1
    assert sum(sources.values()) == result.train_size + result.val_size + result.test_size
    stored = json.loads((root / record.RESULT).read_text())
    assert stored["label_sources"] == sources
    line = precedence_line(stored)
    assert line is not None and line.startswith("Human labels: 1 gold (adjudicated), ")
    old = {k: v for k, v in stored.items() if k != "label_sources"}
    assert record.AlignmentResult.from_dict(old).label_sources == {}
    assert precedence_line(old) is None


def test_cli_align_is_refused_at_the_gate_and_takes_override_kappa(gated):
    experiment_id, _ = gated
    out = subprocess.run(
        [
            sys.executable, "-m", "core.cli", "align", "--experiment", "alignboard-demo", "--judge", CRIT,
            "--optimizer", "gepa", "--model", "demo:/judge", "--reflection-model",
            "demo:/reflect", "--json",
        ],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "below the minimum set for this criterion" in out.stdout
    assert MlflowClient().search_runs([experiment_id]) == []

    from core.cli import _align_settings, build_parser

    args = build_parser().parse_args(
        [
            "align", "--experiment", "alignboard-demo", "--judge", CRIT, "--optimizer", "gepa",
            "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
            "--override-kappa", "pilot run", "--override-by", "lead.lee",
        ]
    )  # fmt: skip
    settings = _align_settings(args)
    assert (settings.kappa_override_reason, settings.kappa_override_by) == ("pilot run", "lead.lee")
    assert check_alignment(settings).can_launch
