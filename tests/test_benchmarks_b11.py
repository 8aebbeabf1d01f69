"""B11 (a team labeling at once) runs end to end for a few seconds with two reviewers.

No timing goal is asserted (the machine is shared): this checks that the harness starts
the team (PostgreSQL, mlflow server, worker, two replicas), drives both replicas from
Chromium, and that every submit is a label in MLflow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import b11_team_load
from tests.support.postgres import _skip_reason

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_b11_two_reviewers_on_two_replicas_lose_no_label():
    if not Path(b11_team_load.CHROMIUM).exists():
        pytest.skip(f"{b11_team_load.CHROMIUM} is missing")
    if reason := _skip_reason():
        pytest.skip(reason)
    result = b11_team_load.run(seconds=10, contexts=2)
    assert result["failures"] == [], result["failures"]
    assert result["page_errors"] == []
    assert result["labels"]["lost"] == 0, result["labels"]
    assert result["labels"]["checked"] == result["submits"] >= 2
    assert set(result["per_replica"]) == {"A", "B"}  # one reviewer on each replica
    for s in [*result["per_replica"].values(), result["overall"]]:
        assert 0 < s["p50_ms"] <= s["max_ms"] < 120_000
    assert result["labels_per_min"] > 0
