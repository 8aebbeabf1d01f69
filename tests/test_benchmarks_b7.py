"""B7 (active vs arrival-order labeling) runs end to end in quick mode and writes its curves.

No figure is asserted (they are demo stand-in numbers); this checks the loop (reveal,
align, score the pool, rank, reveal the picks, realign) and the JSON's shape.
"""

from __future__ import annotations

import json

from benchmarks import b7_active_labeling
from benchmarks.common import write_json


def test_b7_quick_runs_both_strategies_and_reports_the_curves(tmp_path):
    result = b7_active_labeling.run(quick=True)
    out = tmp_path / "b7.json"
    write_json(out, {"b7": result})
    b7 = json.loads(out.read_text())["b7"]
    assert "stand-in" in b7["note"]
    assert {(r["N"], r["strategy"]) for r in b7["rows"]} == {(8, "arrival"), (8, "active")}
    for row in b7["rows"]:
        assert 0 <= row["accuracy_mean"] <= 1 and row["seeds"] == 1
        assert row["accuracy_min"] <= row["accuracy_mean"] <= row["accuracy_max"]
    points = b7["points"]
    assert [(p["strategy"], p["n"]) for p in points] == [
        ("arrival", 8),
        ("active", 4),
        ("active", 8),
    ]
    assert all(p["test_size"] > 0 and p["train_size"] + p["val_size"] == p["n"] for p in points)
    # The active batch was chosen by the ranking: every pick says which signals fired.
    active = points[-1]
    assert active["batch"] == 4
    assert sum(active["batch_signals"].values()) + active["batch_no_signal"] >= 4
    assert b7["paired"][0]["N"] == 8
