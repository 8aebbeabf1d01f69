"""The one sentence a job's end is told in (Align/Optimize banners, CLI)."""

from __future__ import annotations

from types import SimpleNamespace

from core.views.job_status import CANCELLED_NOT_REGISTERED, outcome_line


def _status(status: str, **kw):
    base = {
        "judge_version": None,
        "prompt_version": None,
        "not_registered_reason": None,
        "register_if_cancelled": None,
        "error": None,
        "is_prompt": False,
        "is_score": False,
    }
    return SimpleNamespace(status=status, **{**base, **kw})


def test_a_cancelled_run_says_whether_it_registered():
    assert outcome_line(_status("cancelled", not_registered_reason="cancelled")) == (
        "Cancelled — no version registered (cancelled runs are not registered; relaunch "
        'with "Register if cancelled" to keep the best so far)'
    )
    assert outcome_line(_status("cancelled", judge_version=6, register_if_cancelled=True)) == (
        "Cancelled — registered v6 (Register if cancelled was on)"
    )
    prompt = _status("cancelled", is_prompt=True, prompt_version=3, register_if_cancelled=True)
    assert outcome_line(prompt) == "Cancelled — registered v3 (Register if cancelled was on)"
    worse = _status("cancelled", not_registered_reason="worse", register_if_cancelled=True)
    assert "scored worse than the seed" in outcome_line(worse)
    # Cancelled while not running (nothing decided): still plain that nothing registered.
    assert outcome_line(_status("cancelled")) == CANCELLED_NOT_REGISTERED


def test_the_result_fills_in_what_the_status_lacks():
    now = SimpleNamespace(status="cancelled")
    assert outcome_line(now, {"judge_version": 2, "registered": True}).endswith(
        "registered v2 (Register if cancelled was on)"
    )
    assert outcome_line(now, {"not_registered_reason": "cancelled"}) == CANCELLED_NOT_REGISTERED


def test_other_endings():
    assert outcome_line(_status("finished", judge_version=4)) == "Finished — registered v4"
    assert "worse" in outcome_line(_status("finished", not_registered_reason="worse"))
    assert outcome_line(_status("failed", error="boom")) == "Failed. boom"
