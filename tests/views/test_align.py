"""core.views.align: a run's usage line from what each optimizer logs, the run picker's
label, and the Realign offer's sentences."""

from __future__ import annotations

from types import SimpleNamespace

from core.views.align import COUNTED_AT_THE_END, RealignOffer, run_option_label, run_usage


def test_the_engines_totals_win_once_logged():
    metrics = {"llm_calls": 79.0, "prompt_tokens": 57482.0, "completion_tokens": 4093.0,
               "llm_calls_total": 107.0, "tokens_total": 81685.0}  # fmt: skip
    assert run_usage(metrics, active=False) == "107 calls · 81,685 tokens · price unknown"


def test_a_priced_run_shows_dollars_and_an_unpriced_one_never_zero():
    priced = {"llm_calls_total": 12.0, "tokens_total": 3400.0, "cost_usd": 0.0123}
    assert run_usage(priced, active=False) == "12 calls · 3,400 tokens · $0.0123"
    assert "$0" not in run_usage({"llm_calls_total": 3.0, "tokens_total": 10.0}, active=False)


def test_gepa_counts_live_per_iteration():
    metrics = {"llm_calls": 40.0, "prompt_tokens": 1000.0, "completion_tokens": 234.0}
    assert run_usage(metrics, active=True) == "40 calls · 1,234 tokens · price unknown so far"


def test_an_optimizer_without_live_tokens_says_they_are_counted_at_the_end():
    # MemAlign logs calls per chunk (0 for the demo models), MLflow's GEPA/SIMBA calls only.
    assert run_usage({"llm_calls": 0.0}, active=True) == COUNTED_AT_THE_END
    assert run_usage({"llm_calls": 6.0}, active=True) == f"6 calls so far · {COUNTED_AT_THE_END}"
    assert run_usage({}, active=True) == COUNTED_AT_THE_END
    assert run_usage({}, active=False) == "No model usage recorded for this run."


def test_the_picker_label_carries_the_status():
    job = SimpleNamespace(
        run_id="0123456789abcdef", started=0.0, status="finished", optimizer="gepa"
    )
    label = run_option_label(job, "support_quality")
    assert " · finished · gepa · support_quality · 01234567" in label


def test_realign_offers_say_why_not_or_what_is_new():
    none = RealignOffer("tone", None, reason="tone has no MemAlign version yet: align it first")
    assert not none.can_realign and none.message().startswith("tone has no MemAlign")
    nothing = RealignOffer("tone", 3, "r", new_labels=0, in_memory=12)
    assert not nothing.can_realign and "Nothing new since v3" in nothing.message()
    some = RealignOffer("tone", 3, "r", new_labels=4, in_memory=12)
    assert some.can_realign and "4 new or changed" in some.message()
    assert some.to_dict()["can_realign"] is True
