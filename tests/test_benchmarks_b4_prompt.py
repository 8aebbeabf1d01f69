"""B4's prompt part runs end to end against a loopback server that answers like llama.cpp's.

The server (``tests.support.openai_server``) refuses ``response_format`` ``json_schema``
exactly as llama-cpp-python's server does (HTTP 500 with FastAPI's validation text), so
the judge's structured-output fallback is exercised; its reflection answers parrot the
reflection prompt back (the incident of the first real-model run), so the "no parroted
prompt accepted" check has something to reject. No real model, no timing asserted: the
code path ``make bench-real`` runs and the JSON it writes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks import b4_real_prompt as b4
from tests.support.openai_server import openai_server

#: What the stub's application model always answers: a reply the aligned judge's rule
#: ("issued a full refund" -> fail) fails, whatever the prompt says.
APP_REPLY = "Thanks for reaching out! I have issued a full refund to your card today."


def _parrot(body: dict[str, Any]) -> str | None:
    """Scripted answers: the reflection prompt parroted back in a code block, the fixed
    application reply; judges get the demo model's verdict (it follows the judge's rules)."""
    messages = body.get("messages")
    kind = b4.call_kind(messages)
    if kind == "reflect":
        return "```\n" + b4._text_of(messages) + "\n```"
    if kind == "app":
        return APP_REPLY
    return None


@pytest.fixture(scope="module")
def b4_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    """One tiny B4 prompt run through the command line, and the json_schema refusals the
    server answered."""
    out = tmp_path_factory.mktemp("b4p") / "b4_prompt.json"
    with openai_server(reject_json_schema=True, answer=_parrot) as server:
        code = b4.main(
            [
                "--base-url",
                server.base_url,
                "--model",
                "stub",
                "--train",
                "3",
                "--val",
                "2",
                "--test",
                "2",
                "--budget",
                "8",
                "--judge",
                "real",
                "--request-timeout",
                "0",
                "--out",
                str(out),
            ]
        )
        refused = server.rejected("json_schema")
        app_temperatures = {
            r.body.get("temperature")
            for r in server.requests
            if r.path.endswith("/chat/completions")
            and b4.call_kind(r.body.get("messages")) == "app"
        }
    data = json.loads(out.read_text())["b4_prompt"]
    assert code == 0, data["checks"]
    # The application samples at temperature 0 by default (--task-temperature), so the
    # same prompt gets the same replies in both systems.
    assert app_temperatures == {0.0}, app_temperatures
    return data, refused


def test_b4_prompt_writes_scores_with_intervals_calls_and_tokens_per_system(b4_run):
    data, _ = b4_run
    assert data["machine"]["date"] and data["estimate"]["total_s"] > 0
    assert data["settings"]["model"] == "openai:/stub"
    assert data["judge"]["runner"] == "real"
    for name in ("gepa", "mlflow-gepa"):
        s = data["systems"][name]
        assert s["status"] == "finished", s["status"]
        assert 0 < s["metric_calls"] <= 8 + 3, s["metric_calls"]  # gepa may overshoot a little
        assert s["test_size"] == 2 and s["val_size"] == 2 and s["train_size"] == 3
        for key in ("test_score_before", "test_score_after"):
            assert 0.0 <= s[key] <= 1.0
        assert len(s["test_before_ci"]) == 2 and len(s["score_diff_ci"]) == 2
        assert s["calls"]["app"]["calls"] > 0 and s["calls"]["judge"]["calls"] > 0
        assert s["calls"]["total"]["tokens"] > 0
        assert [r["row"] for r in s["test_rows"]] and s["wall_s"] > 0
    assert {"prepare", "gepa", "mlflow-gepa", "total"} <= set(data["timings_s"])


def test_the_judges_json_schema_refusal_costs_no_call(b4_run):
    data, refused = b4_run
    assert refused >= 1  # the server really refused MLflow's json_schema request
    [line] = [c for c in data["checks"] if c["check"] == "no call lost to the request format"]
    assert line["ok"] is True
    assert sum(s["calls"]["total"]["format_refused"] for s in data["systems"].values()) >= 1
    for s in data["systems"].values():
        assert s["failures"]["judge_failures_metric"] in (None, 0)  # mlflow-gepa logs none
        judge = s["calls"]["judge"]
        assert judge["failed"] == judge["format_refused"]  # every failure was a refusal
        assert s["failures"]["format_errors_in_records"] == 0
        assert set(s["endpoint_modes"].values()) <= {"json_object", "text"}


def test_a_parroted_reflection_prompt_is_rejected_by_the_guard_and_never_registered(b4_run):
    data, _ = b4_run
    gepa = data["systems"]["gepa"]
    assert gepa["proposals"]["degenerate_rejected"] >= 1
    assert gepa["proposals"]["degenerate_reasons"] == ["echoes_reflection_prompt"]
    assert gepa["proposals"]["accepted"] == 0 and gepa["best_is_seed"]
    [line] = [c for c in data["checks"] if c["check"].startswith("gepa: no degenerate")]
    assert line["ok"] is True and "vacuous" not in line["detail"]
    assert data["registered_versions"] == []
    assert all(c["ok"] is not False for c in data["checks"])


def test_the_accepted_proposal_recheck_fails_a_parroted_prompt():
    from core.optimization.guards import GEPA_REFLECTION_TEMPLATE
    from core.optimization.record import Candidate, Proposal

    seed = "You are the support assistant of Northwind. Be kind and accurate.\n\n{{ message }}"
    reflection = GEPA_REFLECTION_TEMPLATE + "\n" + seed
    parroted = Proposal(
        iteration=1,
        parent_id=0,
        proposed_text=reflection,
        reflection_prompt=reflection,
        status="accepted",
        candidate_id=1,
    )
    revised = Proposal(
        iteration=2,
        parent_id=0,
        proposed_text=seed + "\nNever promise a refund.",
        reflection_prompt=reflection,
        status="accepted",
        candidate_id=2,
    )
    got = b4._guard_recheck([parroted, revised], [Candidate(id=0, instructions=seed)], seed)
    assert [g["ok"] for g in got] == [False, True]
    assert got[0]["reason"] == "echoes_reflection_prompt"


def _record(**changes: Any) -> dict[str, Any]:
    system = {
        "optimizer": "gepa",
        "calls": {"total": {"format_refused": 1}, "judge": {"failed": 1, "format_refused": 1}},
        "failures": {"format_errors_in_records": 0, "judge_failures_metric": 0},
        "proposals": {
            "total": 1,
            "accepted": 1,
            "degenerate_rejected": 0,
            "degenerate_reasons": [],
            "not_better_on_minibatch": 0,
            "accepted_recheck": [{"iteration": 1, "ok": True}],
        },
        "best_guard_ok": True,
        "best_is_seed": False,
        "registered_version": 2,
        "verdict": "improved",
    }
    system.update(changes.pop("system", {}))
    out = {
        "settings": {"systems": ["gepa"]},
        "systems": {"gepa": system},
        "judge": {"runner": "real"},
        "registered_versions": [
            {"version": 2, "optimizer": "gepa", "before": 0.4, "after": 0.6, "run_id": "r"}
        ],
    }
    out.update(changes)
    return out


def _ok(lines: list[dict[str, Any]], start: str) -> bool | None:
    [line] = [c for c in lines if c["check"].startswith(start)]
    return line["ok"]


def test_checks_fail_on_a_worse_registered_version_or_a_lost_call():
    assert all(c["ok"] for c in b4.checks(_record()))
    worse = _record(
        registered_versions=[{"version": 2, "optimizer": "gepa", "before": 0.6, "after": 0.4}]
    )
    assert _ok(b4.checks(worse), "no worse prompt registered") is False
    lost = _record(system={"failures": {"format_errors_in_records": 2, "judge_failures_metric": 2}})
    assert _ok(b4.checks(lost), "no call lost") is False
    bad = _record(
        system={
            "proposals": {
                **_record()["systems"]["gepa"]["proposals"],
                "accepted_recheck": [{"iteration": 1, "ok": False, "reason": "x"}],
            }
        }
    )
    assert _ok(b4.checks(bad), "gepa: no degenerate") is False


def test_a_judge_at_chance_is_replaced_by_the_stand_in():
    # A "judge" that passes everything agrees with the humans only by chance (kappa 0).
    def always_pass(body: dict[str, Any]) -> str | None:
        if b4.call_kind(body.get("messages")) == "judge":
            return json.dumps({"result": "pass", "rationale": "Looks fine."})
        return None

    with openai_server(reject_json_schema=True, answer=always_pass) as server, b4.call_log() as log:
        cfg = {"judge": "auto", "model": "openai:/stub", "base_url": server.base_url}
        out: dict[str, Any] = {"timings_s": {}}
        runner, why, _ = b4._choose_judge({**cfg, "calibration": 4}, out, log)
    assert runner == "demo" and "at chance" in why
    assert out["calibration"]["n"] == 4 and out["calibration"]["failed"] == 0
    assert out["calibration"]["kappa"] in (None, 0.0)


def test_select_rows_keeps_each_rows_own_split_and_spreads_topics():
    from core.labeling.splits import assign_split

    rows = b4.select_rows({"train": 4, "val": 2, "test": 3})
    assert [assign_split(r["id"]) for r in rows] == ["train"] * 4 + ["val"] * 2 + ["test"] * 3
    train_topics = {r["tags"]["topic"] for r in rows[:4]}
    assert len(train_topics) == 4


def test_the_browser_smoke_takes_a_running_server_and_tiny_budgets(capsys):
    from benchmarks import b4_browser_smoke

    with pytest.raises(SystemExit) as exit_:
        b4_browser_smoke.main(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--base-url", "--model", "--align-budget", "--optimize-budget", "--out"):
        assert option in shown
    # The findings a user would call problems, from what the pass recorded.
    out = {
        "steps": [
            {
                "name": "align-ended",
                "alerts": ["error: Run failed: boom", "info: The demo model is selected."],
            }
        ],
        "page_errors": [],
        "align": {"status": "failed", "run_id": "r1", "error": "boom"},
        "optimize": {"status": "finished", "run_id": "r2"},
    }
    found = b4_browser_smoke.findings(out)
    assert any("Run failed: boom" in f for f in found)
    assert any(f.startswith("align run r1 ended failed") for f in found)
    assert not any("optimize run" in f for f in found)
    assert not any("demo model" in f for f in found)  # an info box is no finding
