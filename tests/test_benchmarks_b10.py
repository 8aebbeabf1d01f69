"""B10 smoke test: one launch per path and mode on a real store, a real worker and real job
processes; the figures are there and every launch reached running (no timing asserted)."""

from __future__ import annotations

from benchmarks import b10_launch


def test_b10_runs_one_launch_per_path_and_mode():
    result = b10_launch.run(n=1)
    got = {(s["path"], s["mode"]) for s in result["series"]}
    assert got == {("ui", "spawn"), ("cli", "spawn"), ("ui", "worker"), ("cli", "worker")}
    for s in result["series"]:
        assert s["never_ran"] == 0, s
        assert s["return_p95"] > 0 and s["running_p95"] is not None
        assert s["launches"][0]["end"] in ("cancelled", "finished")
