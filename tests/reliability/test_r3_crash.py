"""R3 crash: kill -9 a running job; the dashboard shows it interrupted within 30 s; resume
completes it; no label touched.

A real GEPA job (demo model, slowed per call) is launched with
:func:`core.optimization.jobs.launch` on a copy of the demo store, with the default heartbeat
settings (a beat every 5 s, stale after 30 s: nothing here shortens them). Once it has
logged an iteration, its whole process group gets SIGKILL. The Align page, driven through
Streamlit's AppTest and re-run the way its own polling re-runs it, must show the run
``interrupted`` with a Resume button within 30 s of the kill; that button continues the
run to ``finished`` with a registered judge version, every metric point logged before the
kill still there. Human labels are compared before and after three ways: the current
labels as core reads them, every version in the raw ``assessments`` table (HUMAN source,
all columns), and a sha256 of those rows.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from core.labeling.criteria import get_criterion
from core.labeling.labels import current_labels
from core.optimization import jobs
from core.optimization import recorder as rec
from core.optimization.settings import build_settings, starting_points
from core.store import config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # about 35-40 s: under the minute of `reliability`

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CRITERION = "support_quality"
DEADLINE_S = 30.0  # the bound, from the kill to "interrupted" on the page
LATENCY_MS = "150"  # per demo-model call: the job is still mid-search when it is killed
BUDGET = 1500


# --------------------------------------------------------------------------- helpers


def _human_rows() -> list[tuple]:
    """Every HUMAN assessment row (all versions, all columns), in a stable order."""
    db = Path(config.tracking_uri().removeprefix("sqlite:///"))
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn.execute(
            "SELECT * FROM assessments WHERE source_type = 'HUMAN' ORDER BY assessment_id"
        ).fetchall()


def _labels_snapshot(experiment_id: str) -> dict:
    rows = _human_rows()
    return {
        "current": sorted(
            repr(sorted(lab.to_dict().items())) for lab in current_labels(experiment_id)
        ),
        "rows": rows,
        "sha256": hashlib.sha256(repr(rows).encode()).hexdigest(),
    }


def _history(run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient()
    keys = client.get_run(run_id).data.metrics.keys()
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            found.add(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = jobs._proc_stat(pid)
    return state is None or state[0] in ("Z", "X")


def _page_text(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "warning") for e in at.get(kind))


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _has_button(at: AppTest, key: str) -> bool:
    return any(b.key == key for b in at.button)


# --------------------------------------------------------------------------- the test


@pytest.fixture
def default_heartbeat(monkeypatch):
    """The shipped timing: the test must meet the 30 s bound without tuning it."""
    monkeypatch.delenv(jobs.STALE_ENV, raising=False)
    monkeypatch.delenv(rec.HEARTBEAT_INTERVAL_ENV, raising=False)
    assert jobs.stale_after_s() == 30.0


def test_killed_job_shows_interrupted_within_30s_and_resumes_without_touching_labels(
    demo_store, default_heartbeat, monkeypatch
):
    import streamlit as st

    experiment_id = demo_store
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", LATENCY_MS)
    crit = get_criterion(experiment_id, CRITERION)
    settings = build_settings(
        experiment_id,
        crit,
        instructions=starting_points(experiment_id, crit)[0].instructions,
        optimizer="gepa",
        model="demo:/judge",
        reflection_model="demo:/reflect",
        max_metric_calls=BUDGET,
        workers=2,
    )
    labels_before = _labels_snapshot(experiment_id)
    assert labels_before["rows"], "the demo store has human labels"

    # ---- a real job, running --------------------------------------------------------
    t_launch = time.monotonic()
    run_id = jobs.launch(settings)
    running = wait_for(
        lambda: (s := jobs.status(run_id)).status == "running" and (s.iteration or 0) >= 1 and s,
        180,
        "a first iteration",
    )
    t_iter = time.monotonic() - t_launch
    pid = running.pid
    assert pid and running.host
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags[jobs.TAG_PROCESS].startswith(f"{pid}:")  # the identity recorded at spawn
    assert os.getpgid(pid) == pid  # its own session: its group is its id

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/align.py").run()
    _ok(at)
    assert f"run `{run_id}` · status **running**" in _page_text(at)
    assert _has_button(at, "align_cancel") and not _has_button(at, "align_resume")

    # ---- kill -9, the whole process group -------------------------------------------
    snapshot = _labels_snapshot(experiment_id)
    assert snapshot == labels_before  # running an alignment touches no label either
    children = _children(pid)
    iteration_before = jobs.status(run_id).iteration
    os.killpg(pid, signal.SIGKILL)
    t_kill = time.monotonic()
    wait_for(lambda: all(_gone(p) for p in {pid, *children}), 10, "the processes to die")

    # ---- the dashboard, polling as the page does -------------------------------------
    reruns = 0
    while True:
        at.run()
        reruns += 1
        _ok(at)
        if f"run `{run_id}` · status **interrupted**" in _page_text(at):
            break
        assert time.monotonic() - t_kill < DEADLINE_S, _page_text(at)
        time.sleep(2)  # the page's fragment polls every 2 s
    t_shown = time.monotonic() - t_kill
    assert t_shown < DEADLINE_S
    assert "**Interrupted.**" in _page_text(at) and "killed or crashed" in _page_text(at)
    assert _has_button(at, "align_resume") and not at.button(key="align_resume").disabled
    assert MlflowClient().get_run(run_id).data.tags[rec.TAG_STATUS] == "interrupted"
    before = _history(run_id)  # the dead process can write nothing more
    assert before and iteration_before >= 1

    # ---- Resume, from the page ------------------------------------------------------
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "0")  # the rest runs fast (child env)
    t_resume = time.monotonic()
    at.button(key="align_resume").click().run()
    _ok(at)
    assert not at.session_state["align_message"]
    text = _page_text(at)
    assert "status **queued**" in text or "status **running**" in text, text
    final = jobs.wait(run_id, timeout_s=300, poll_s=0.5)
    t_resumed = time.monotonic() - t_resume
    assert final.status == "finished", (final, jobs.log_path(run_id).read_text()[-3000:])
    assert final.judge_version is not None and final.judge_version >= 1
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags.get(rec.TAG_RESUMED) == "1"
    assert int(tags[rec.TAG_PID]) != pid

    # Iterations continue where they were: every point logged before the kill is still
    # there, and the search went past the iteration it was in.
    after = _history(run_id)
    redone = set()
    for key, points in before.items():
        assert set(points) <= set(after[key]), key
        n_before, n_after = Counter(s for s, _ in points), Counter(s for s, _ in after[key])
        redone |= {s for s in n_before if s > 0 and n_after[s] > n_before[s]}
    assert len(redone) <= 1, redone  # at most the iteration in flight was logged again
    assert max(s for pts in after.values() for s, _ in pts) > iteration_before
    assert (final.iteration or 0) > iteration_before

    at.run()
    _ok(at)
    assert any("Finished" in s.value for s in at.success)

    # ---- no label touched -----------------------------------------------------------
    assert _labels_snapshot(experiment_id) == labels_before

    print(
        f"\nR3: first iteration after {t_iter:.1f} s; killed at iteration {iteration_before}; "
        f"'interrupted' on the page {t_shown:.2f} s after the kill ({reruns} page runs); "
        f"resume to finished in {t_resumed:.1f} s (iteration {final.iteration}, "
        f"judge v{final.judge_version})"
    )
