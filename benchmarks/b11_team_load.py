"""B11: a team labeling at once. 10 reviewers in Chromium on 2 dashboard replicas over MLflow + PostgreSQL.

The benchmark starts the whole team itself (``tests/support``): a throw-away PostgreSQL
cluster, ``mlflow server`` on a fresh database of it (proxied artifacts), the demo seeded
through that server (``alignboard seed-demo``), one ``alignboard worker`` and two
``streamlit run app/main.py`` replicas (each its own ``ALIGNBOARD_HOME``).

Then ``--contexts`` browser contexts (default 10, split evenly over the replicas), each a
different reviewer, label the demo queue with the keyboard for ``--seconds`` (default
120), all at once: a value key (``1`` Pass / ``2`` Fail), a short rationale typed, then
``Ctrl+Enter``. Each submit is timed **in the page's clock** with B8's instrumentation
(``benchmarks/b8_label_browser.py``: ``INSTRUMENT_JS``): from the ``keydown`` of
Ctrl+Enter to the frame after the next trace id appeared. Labels are per reviewer, so
every reviewer works the same 84 demo traces; a reviewer who reaches the end of the
queue stops (reported as ``exhausted``).

Checked afterwards: **0 lost labels**: every submit is, in MLflow, a HUMAN label by that
reviewer with the value pressed. Printed: p50/p95 per replica and overall, labels per
minute (all reviewers together), and the JSON (``--out``).

One asyncio Playwright driver, one Chromium, N contexts: the contexts really run at the
same time (the sync API would serialise them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.b3_labeling_scale import summary
from benchmarks.b8_label_browser import CHROMIUM, CHROMIUM_ARGS, IDLE_JS, INSTRUMENT_JS
from benchmarks.common import DEMO_CRITERION, print_table, write_json

DEFAULT_SECONDS = 120
DEFAULT_CONTEXTS = 10
FORM = '[data-testid="label-form"]'
STEP_TIMEOUT_MS = 120_000


async def _idle(page: Any, settle_ms: int = 100) -> None:
    await page.wait_for_selector('[data-testid="stApp"]')
    await page.wait_for_function(IDLE_JS, polling=20, timeout=STEP_TIMEOUT_MS)
    await page.wait_for_timeout(settle_ms)


async def _ready(page: Any) -> None:
    await page.locator(f'{FORM}[data-state="ready"]').wait_for(timeout=STEP_TIMEOUT_MS)


async def _set_reviewer(page: Any, name: str) -> None:
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(
        has_text="Your name"
    )
    await box.locator("input").click()
    await page.keyboard.type(name)
    await page.keyboard.press("Enter")
    await _idle(page)
    await _ready(page)


async def _reviewer(
    browser: Any, url: str, replica: str, reviewer: str, deadline: float, out: dict[str, Any]
) -> None:
    """One reviewer labeling until ``deadline`` (monotonic); submits go to ``out``."""
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    await context.add_init_script(INSTRUMENT_JS)
    page = await context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    errors: list[str] = out.setdefault("page_errors", [])
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    rows: list[dict[str, Any]] = out.setdefault("submits", [])
    try:
        await page.goto(f"{url}/label")
        await _idle(page)
        await _set_reviewer(page, reviewer)
        i = 0
        while time.monotonic() < deadline:
            current = await page.locator(FORM).get_attribute("data-trace-id")
            k = i % 2
            await page.evaluate(
                "() => { document.activeElement && document.activeElement.blur(); }"
            )
            await page.keyboard.press(str(k + 1))
            await page.locator(
                f"{FORM} .ab-lf-values button:nth-child({k + 1})[aria-pressed='true']"
            ).wait_for()
            await page.keyboard.type(f"b11 {i}")
            n_ids, n_keys = await page.evaluate(
                "() => [window.__b8.ids.length, window.__b8.keys.length]"
            )
            await page.keyboard.press("Control+Enter")
            try:
                await page.wait_for_function(
                    "(n) => window.__b8.ids.length > n"
                    " && window.__b8.ids[window.__b8.ids.length - 1].t_paint",
                    arg=n_ids,
                    polling=10,
                    timeout=STEP_TIMEOUT_MS,
                )
            except Exception:
                # No next trace: the end of the queue (or a stuck page: the label check
                # below still requires this submit to be in MLflow).
                rows.append({"reviewer": reviewer, "replica": replica, "from": current,
                             "value": k == 0, "total_ms": None})  # fmt: skip
                out["exhausted"] = True
                break
            rec, keys = await page.evaluate(
                "([i, k]) => [window.__b8.ids[window.__b8.ids.length - 1],"
                " window.__b8.keys.slice(k)]",
                [n_ids, n_keys],
            )
            down = next(x for x in keys if x["key"] == "Enter" and x["ctrl"])
            rows.append({"reviewer": reviewer, "replica": replica, "from": current,
                         "to": rec["id"], "value": k == 0,
                         "total_ms": rec["t_paint"] - down["t"], "at": time.monotonic()})  # fmt: skip
            i += 1
            await _idle(page, settle_ms=20)
            await _ready(page)
    finally:
        await context.close()


async def _drive(urls: list[tuple[str, str]], contexts: int, seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    per: dict[str, dict[str, Any]] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Everyone opens the page first; the clock starts when all are ready.
            tasks = []
            start = time.monotonic()
            deadline = start + seconds + 30.0  # ~30 s to open the pages under load
            for i in range(contexts):
                replica, url = urls[i % len(urls)]
                reviewer = f"b11.reviewer{i:02d}"
                per[reviewer] = {"replica": replica}
                tasks.append(_reviewer(browser, url, replica, reviewer, deadline, per[reviewer]))
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await browser.close()
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"per_reviewer": per, "failures": failures, "wall_s": time.monotonic() - start}


def _check_labels(experiment_id: str, per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every submit must be, in MLflow, the reviewer's HUMAN label with the value pressed."""
    from core.labeling.labels import current_labels

    lost, checked = [], 0
    for reviewer, data in per.items():
        rows = data.get("submits", [])
        if not rows:
            continue
        found = {
            lab.trace_id: lab
            for lab in current_labels(experiment_id, DEMO_CRITERION, reviewer=reviewer)
        }
        for r in rows:
            checked += 1
            lab = found.get(r["from"])
            if lab is None or lab.value is not r["value"]:
                lost.append({"reviewer": reviewer, "trace": r["from"], "value": r["value"],
                             "found": None if lab is None else lab.value})  # fmt: skip
    return {"checked": checked, "lost": len(lost), "lost_detail": lost[:20]}


def _timed(rows: list[dict[str, Any]], since: float) -> list[float]:
    return [r["total_ms"] for r in rows if r.get("total_ms") is not None and r["at"] >= since]


def run(seconds: float = DEFAULT_SECONDS, contexts: int = DEFAULT_CONTEXTS) -> dict[str, Any]:
    """Start the team, drive ``contexts`` reviewers for ``seconds``, check and summarise."""
    from tests.support.postgres import running_cluster
    from tests.support.team import running_team

    work = Path(tempfile.mkdtemp(prefix="b11-"))
    t0 = time.perf_counter()
    with running_cluster() as cluster:
        backend = cluster.create_mlflow_database("b11")
        with running_team(backend, work, replicas=2) as team:
            setup_s = time.perf_counter() - t0
            urls = [(d.name, d.url) for d in team.team.dashboards]
            load_before = [round(x, 2) for x in os.getloadavg()]
            driven = _drive_sync(urls, contexts, seconds)
            load_after = [round(x, 2) for x in os.getloadavg()]
            checked = _check_labels(team.experiment_id, driven["per_reviewer"])
    rows = [r for d in driven["per_reviewer"].values() for r in d.get("submits", [])]
    # Labels/min over the time everyone was labeling: from the first to the last submit.
    stamps = sorted(r["at"] for r in rows if r.get("at"))
    span_s = (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    since = stamps[0] if stamps else 0.0
    by_replica = {
        name: summary(_timed([r for r in rows if r["replica"] == name], since))
        for name, _ in urls
        if _timed([r for r in rows if r["replica"] == name], since)
    }
    overall = summary(_timed(rows, since)) if _timed(rows, since) else None
    result: dict[str, Any] = {
        "contexts": contexts,
        "seconds": seconds,
        "setup_s": setup_s,
        "load_before": load_before,
        "load_after": load_after,
        "submits": len(rows),
        "labels_per_min": (len(rows) - 1) / span_s * 60 if span_s else None,
        "per_replica": by_replica,
        "overall": overall,
        "labels": checked,
        "exhausted": sorted(r for r, d in driven["per_reviewer"].items() if d.get("exhausted")),
        "failures": driven["failures"],
        "page_errors": sorted(
            {e for d in driven["per_reviewer"].values() for e in d.get("page_errors", [])}
        ),
        "per_reviewer_submits": {
            r: len(d.get("submits", [])) for r, d in driven["per_reviewer"].items()
        },
    }
    table = [
        {"replica": name, "submits": s["n"], "p50 ms": s["p50_ms"], "p95 ms": s["p95_ms"],
         "max ms": s["max_ms"]}
        for name, s in [*by_replica.items(), *([("all", overall)] if overall else [])]
    ]  # fmt: skip
    if table:
        print_table(
            f"B11 {contexts} reviewers on 2 replicas, Ctrl+Enter -> next trace (page clock)",
            table,
            list(table[0]),
        )
    print(
        f"B11: {len(rows)} submits, {result['labels_per_min'] or 0:.1f} labels/min, "
        f"lost labels {checked['lost']} of {checked['checked']}, load "
        f"{load_before[0]:.1f}->{load_after[0]:.1f}",
        flush=True,
    )
    return result


def _drive_sync(urls: list[tuple[str, str]], contexts: int, seconds: float) -> dict[str, Any]:
    return asyncio.run(_drive(urls, contexts, seconds))


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="labeling time (120)")
    p.add_argument("--contexts", type=int, default=DEFAULT_CONTEXTS, help="reviewers (10)")
    p.add_argument("--out", type=Path, help="write the JSON here")
    args = p.parse_args(argv)
    result = run(args.seconds, args.contexts)
    if args.out:
        write_json(args.out, {"b11": result})
    else:
        print(json.dumps({"b11": result}, default=str)[:4000])
    return 0 if result["labels"]["lost"] == 0 and not result["failures"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
