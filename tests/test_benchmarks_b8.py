"""B8 (Label speed in Chromium) runs end to end at a tiny size and reports sane figures.

No timing goal is asserted (the machine is shared): this checks that the harness drives
the real page, that every submit lands in MLflow, and that its timeline hangs together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import b3_stores, b8_label_browser
from benchmarks.common import write_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_b8_drives_the_label_page_and_times_each_submit(tmp_path, monkeypatch):
    if not Path(b8_label_browser.CHROMIUM).exists():
        pytest.skip(f"{b8_label_browser.CHROMIUM} is missing")
    monkeypatch.setenv(b3_stores.CACHE_ENV, str(tmp_path / "cache"))
    result = b8_label_browser.run((40,), submits=2, warmup=1, opens=1, colds=1)
    out = tmp_path / "b8.json"
    write_json(out, {"b8": result})
    (size,) = json.loads(out.read_text())["b8"]["sizes"]

    assert size["traces"] == 40 and size["labels_checked"] == 3  # warm-up submit included
    assert size["page_errors"] == []
    for measure in ("submit_next", "pick_value", "open_label", "open_label_cold"):
        assert size[measure]["n"] >= 1, measure
        assert 0 < size[measure]["p50_ms"] <= size[measure]["max_ms"] < 120_000, measure
    assert size["submit_next"]["n"] == 2 and size["open_label"]["n"] == 1
    for row in size["submits"]:
        assert row["trace_id"] != row["from"]
        # One timeline: key -> websocket send -> server run -> new id -> painted.
        assert 0 <= row["input_ms"] <= row["mutation_ms"] <= row["total_ms"]
        assert row["queue_ms"] > -5 and row["script_ms"] > 0 and row["script_cpu_ms"] > 0
        assert row["to_id_ms"] <= row["total_ms"] + 5
        assert row["frames_in"] >= row["frames_before_id"] >= 1
        assert row["browser_cpu_ms"] > 0
        # The dashboard froze its long-lived heap: a rerun's collection walks far less.
        assert row["gc_frozen"] > 10 * (row.get("gc_tracked") or 0)
    assert result["goals"]["ratio"] == 1.0  # one size: compared with itself
