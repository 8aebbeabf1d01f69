"""The whole demo through a team: two dashboard replicas and one worker on MLflow + PostgreSQL.

One real PostgreSQL cluster, ``mlflow server`` on it (proxied artifacts), ``alignboard
seed-demo`` through that server, one ``alignboard worker`` (``ALIGNBOARD_JOBS=worker``) and
two ``streamlit run app/main.py`` replicas, each process with its own ``ALIGNBOARD_HOME``
as on separate hosts. Chromium drives the replicas: a label typed on A is seen on B; an
alignment launched on B runs on the worker, its progress shows on A, it registers a judge
version, and ``alignboard score`` writes that version's verdicts into MLflow.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from core.labeling.labels import get_label
from core.optimization import jobs
from tests.browser import conftest as browser_support
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, screenshot
from tests.browser.test_label_keyboard import FORM, form_trace, pressed
from tests.optimization.demo_examples import CRITERION
from tests.support.team import RunningTeam, running_team
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_S = 240
WORKER_ID = "team-worker-1"


@pytest.fixture(scope="module")
def team(pg_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTeam]:
    """The seeded demo on PostgreSQL, one worker and replicas A and B."""
    backend = pg_cluster.create_mlflow_database("team_flow")
    with running_team(backend, tmp_path_factory.mktemp("team-flow")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(team) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium).")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _tab(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(PAGE_TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("dialog", lambda d: d.dismiss())
    return context, tab, errors


#: A shared 2-core machine runs the team (5 processes) and Chromium: pages are slow to come.
PAGE_TIMEOUT_MS = 120_000


def wait_idle(page) -> None:
    """The browser tests' wait for the end of a script run, with a team-sized timeout."""
    browser_support.wait_idle(page, PAGE_TIMEOUT_MS)


def set_reviewer(page, name: str) -> None:
    """Type the reviewer's name in the sidebar box (as a user does); wait for the form."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(
        has_text="Your name"
    )
    box.locator("input").click()
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    wait_idle(page)
    page.locator(f'{FORM}[data-state="ready"]').wait_for(timeout=PAGE_TIMEOUT_MS)


def _main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def test_label_on_a_align_on_b_run_on_the_worker_progress_on_a_then_score(team, browser):
    a, b = team.team.dashboards
    exp_id = team.experiment_id
    reviewer = "team.reviewer"
    ctx_a, page_a, errors_a = _tab(browser)
    ctx_b, page_b, errors_b = _tab(browser)
    try:
        # 1. Label one trace on replica A with the keyboard.
        page_a.goto(a.page_url("label"))
        wait_idle(page_a)
        set_reviewer(page_a, reviewer)
        trace_id = form_trace(page_a)
        page_a.keyboard.press("1")
        page_a.keyboard.type("Labeled on replica A.")
        page_a.keyboard.press("Control+Enter")
        page_a.wait_for_function(
            "([sel, before]) => { const f = document.querySelector(sel);"
            " return f && f.dataset.traceId !== before && f.dataset.state === 'ready'; }",
            arg=[FORM, trace_id],
        )
        saved = get_label(trace_id, CRITERION, reviewer)
        assert saved is not None and saved.value is True, saved
        assert saved.rationale == "Labeled on replica A."

        # 2. Replica B (another process, another home) shows that label on that trace.
        page_b.goto(b.page_url(f"label?trace={trace_id}"))
        wait_idle(page_b)
        set_reviewer(page_b, reviewer)
        assert form_trace(page_b) == trace_id
        assert pressed(page_b) == ["Pass"]
        assert (
            page_b.locator(f"{FORM} textarea.ab-lf-rationale").input_value()
            == "Labeled on replica A."
        )
        screenshot(page_b, "team-01-label-from-a-on-b")

        # 3. Launch a MemAlign alignment on B's Align page: it is only queued (jobs mode
        # worker) and the worker runs it.
        page_b.goto(b.page_url("align"))
        wait_idle(page_b)
        box = page_b.locator('[data-testid="stSelectbox"]').filter(has_text="Optimizer")
        box.locator("input").click()
        page_b.keyboard.type("MemAlign")
        page_b.keyboard.press("Enter")
        wait_idle(page_b)
        started = time.time()
        page_b.get_by_role("button", name="Launch alignment").click()
        wait_idle(page_b)
        runs = wait_for(
            lambda: [j for j in jobs.list_jobs(exp_id) if (j.started or 0) >= started - 1],
            60,
            "the alignment run launched on replica B",
        )
        assert len(runs) == 1, runs
        run_id = runs[0].run_id

        # 4. Its progress is visible on replica A (Run explorer, a fresh session there).
        def explorer_status() -> str | None:
            page_a.goto(a.page_url(f"run_explorer?run={run_id}"))
            wait_idle(page_a)
            last["text"] = text = _main_text(page_a)
            found = re.search(r"Status\s+(queued|running|finished)\b", text)
            return found.group(1) if found and found.group(1) != "queued" else None

        last = {"text": ""}
        try:
            seen = [wait_for(explorer_status, 120, f"run {run_id} on replica A", poll=1)]
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; job {jobs.status(run_id)}; page:\n{last['text']}"
            ) from exc
        final = jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)
        assert final.status == "finished", final.error
        seen.append(wait_for(explorer_status, 60, "the finished run on replica A", poll=1))
        assert seen[-1] == "finished", seen
        screenshot(page_a, "team-02-run-on-a")

        # 5. It ran on the worker, not in a dashboard.
        tags = MlflowClient().get_run(run_id).data.tags
        assert tags.get("alignboard.worker") == WORKER_ID, tags
        pid = int(tags["alignboard.pid"])
        assert pid not in team.team.pids, (pid, team.team.pids)
        assert final.judge_version is not None, final
        version = final.judge_version
    finally:
        ctx_a.close()
        ctx_b.close()
    assert errors_a == [] and errors_b == [], (errors_a, errors_b)

    # 6. Score some unlabeled traces with that version; the verdicts are in MLflow.
    res = team.team.cli(
        "score", "--experiment", "alignboard-demo", "--judge", f"{CRITERION}@{version}",
        "--limit", "5", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    traces = mlflow.search_traces(
        locations=[exp_id], return_type="list", max_results=500, include_spans=False
    )
    verdicts = [
        a
        for t in traces
        for a in t.info.assessments
        if a.name == CRITERION
        and a.source.source_type == "LLM_JUDGE"
        and a.source.source_id == f"{CRITERION}/v{version}"
    ]
    assert len(verdicts) == 5, [(a.trace_id, a.source.source_id) for a in verdicts]
