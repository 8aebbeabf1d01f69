"""B4 (browser part): one pass of the Align and Optimize pages in Chromium, real model.

What a user does, in a real browser (Playwright driving Debian's ``/usr/bin/chromium``),
against a dashboard started as a user starts it (``streamlit run app/main.py``) with one
job worker beside it (``alignboard worker``, as ``make run`` starts it), on a temporary
store:

1. **Align**: the demo criterion, GEPA, the judge and the reflection model set to the
   real model through the page's model and base-URL fields, a tiny budget, Launch, then
   the Progress panel watched until the run ends;
2. **Optimize**: the demo prompt on a small evaluation dataset, the application and the
   reflection model set to the real model the same way, the aligned demo judge (a
   registered version on the real model's server) as the scorer, a tiny budget, Launch,
   watched until the run ends.

A screenshot is taken at every step into ``test-artifacts/b4/`` (gitignored); every
alert the page shows (errors, warnings) is collected: an error shown is a finding. The
store holds a small slice of the demo (10 labeled traces, 7 application inputs) so that
each run needs a few minutes of the real model, not an hour; it is synthetic demo data
scored by a 1.5B model, a smoke run, never quality evidence.

The JSON lists the steps with their seconds, screenshot paths and what the page showed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEMO_CRITERION, ROOT, machine_info, write_json

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "b4"
EXPERIMENT = "alignboard-demo"
PROMPT_NAME = "northwind-support"
DATASET = "b4-messages"
#: Labeled traces per split in the smoke store (gepa needs 10 labeled traces at least).
TRACE_SPLITS = {"train": 5, "val": 2, "test": 3}
#: Application inputs per split.
ROW_SPLITS = {"train": 3, "val": 2, "test": 2}
STARTUP_TIMEOUT_S = 90


@dataclass
class Step:
    """One thing the user did and what the page showed afterwards."""

    name: str
    seconds: float
    screenshot: str | None
    alerts: list[str] = field(default_factory=list)
    """Error and warning boxes on the page (their text)."""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            "screenshot": self.screenshot,
            "alerts": self.alerts,
            "note": self.note,
        }


# --- the store ---------------------------------------------------------------------------


def build_store(home: Path, judge_model: str, base_url: str) -> dict[str, Any]:
    """A small slice of the demo in a fresh sqlite store under ``home``.

    The demo criterion with :data:`TRACE_SPLITS` labeled support traces (pass and fail
    mixed), the demo prompt ``northwind-support`` v1, the evaluation dataset
    :data:`DATASET` of :data:`ROW_SPLITS` application inputs, and the aligned demo judge
    registered as ``support_quality`` v1 @production on the real model's server (what the
    Optimize page scores with; MLflow keeps no base URL, the version's metadata does).
    """
    from benchmarks.b4_real_prompt import aligned_judge_instructions, select_rows
    from benchmarks.common import _create_demo_criterion
    from core.io.demo_seed import assets_dir
    from core.io.importer import import_file, trace_id_for
    from core.io.prompt_data import create_eval_dataset, load_rows, parse_source
    from core.labeling.splits import assign_split
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version, set_alias
    from core.optimization.spec import JudgeSpec
    from core.store import config
    from core.store.experiments import get_or_create_experiment
    from core.store.prompts import register_prompt

    uri = f"sqlite:///{home / 'mlflow.db'}"
    os.environ[config.HOME_ENV] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    config.configure(uri)
    exp = get_or_create_experiment(EXPERIMENT)
    _create_demo_criterion(exp.experiment_id)
    demo = assets_dir() / "demo"
    records = [json.loads(x) for x in (demo / "support_traces.jsonl").read_text().splitlines() if x]
    by_split: dict[str, dict[str, list[dict[str, Any]]]] = {sp: {} for sp in TRACE_SPLITS}
    for r in records:
        labels = [lab for lab in r.get("labels") or [] if lab["criterion"] == DEMO_CRITERION]
        if labels:
            where = assign_split(trace_id_for(exp.experiment_id, r["id"]))
            by_split[where].setdefault(str(labels[0]["value"]), []).append(r)
    kept: list[dict[str, Any]] = []
    for split, n in TRACE_SPLITS.items():
        pools = list(by_split[split].values())  # pass and fail alternate
        picked: list[dict[str, Any]] = []
        while len(picked) < n and any(pools):
            for pool in pools:
                if pool and len(picked) < n:
                    picked.append(pool.pop(0))
        kept += picked
    path = home / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    imported = import_file(path, EXPERIMENT)
    spec = json.loads((demo / "app_prompt.json").read_text("utf-8"))
    register_prompt(PROMPT_NAME, spec["template"], commit_message=spec.get("commit_message"))
    rows_path = home / "rows.jsonl"
    rows_path.write_text(
        "".join(json.dumps(r) + "\n" for r in select_rows(ROW_SPLITS)), encoding="utf-8"
    )
    rows = load_rows(parse_source(str(rows_path)))
    create_eval_dataset(DATASET, rows, experiment_id=exp.experiment_id)
    judge = JudgeSpec(
        DEMO_CRITERION, aligned_judge_instructions(), "pass_fail", judge_model, (), base_url
    )
    version = register_version(
        build_judge(judge),
        exp.experiment_id,
        run_id=None,
        test_metrics={},
        optimizer="gepa",
        base_url=base_url,
    )
    set_alias(exp.experiment_id, DEMO_CRITERION, "production", version)
    return {
        "uri": uri,
        "experiment_id": exp.experiment_id,
        "traces": imported.traces_written,
        "trace_splits": TRACE_SPLITS,
        "rows": len(rows),
        "judge_version": version,
    }


# --- processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def dashboard(home: Path, logs: Path) -> Iterator[str]:
    """``streamlit run app/main.py`` and one ``alignboard worker`` on the store in ``home``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    worker = [sys.executable, "-m", "core.cli", "worker"]
    app = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app/main.py",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    with (
        _process(worker, env, logs / "worker.log"),
        _process(app, env, logs / "dashboard.log") as proc,
    ):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the dashboard did not start: {(logs / 'dashboard.log').read_text()[-2000:]}"
                )
            time.sleep(0.3)
        yield url


# --- the page ----------------------------------------------------------------------------


def wait_idle(page: Any, timeout_ms: int = 240_000) -> None:
    """Wait until Streamlit has finished its current script run."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            const state = app && app.getAttribute('data-test-script-state');
            return state === 'notRunning' || state === 'compilationError';
        }""",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)


def shot(page: Any, name: str) -> str:
    """A screenshot of the whole main column as ``test-artifacts/b4/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(...[...document.querySelectorAll(
            '[data-testid="stMain"], [data-testid="stMainBlockContainer"]')]
            .map(e => e.scrollHeight), 0)"""
    )
    tall = min(max(int(height) + 80, size["height"]), 6000)
    if tall > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": tall})
        page.wait_for_timeout(300)
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if tall > size["height"]:
            page.set_viewport_size(size)
    return str(path.relative_to(ROOT))


#: Streamlit's alert kinds, by the test id of the alert's content.
ALERT_KINDS = {
    "stAlertContentError": "error",
    "stAlertContentWarning": "warning",
    "stAlertContentInfo": "info",
    "stAlertContentSuccess": "success",
}


def alerts(page: Any) -> list[str]:
    """Every alert box and exception on the page, as ``kind: text`` (error, warning,
    info, success, exception)."""
    found = page.locator('[data-testid="stAlert"], [data-testid="stException"]')
    out = []
    for i in range(found.count()):
        with contextlib.suppress(Exception):
            box = found.nth(i)
            kind = "exception"
            for test_id, name in ALERT_KINDS.items():
                if box.locator(f'[data-testid="{test_id}"]').count():
                    kind = name
                    break
            text = " ".join(box.inner_text(timeout=2_000).split())
            if text:
                out.append(f"{kind}: {text[:400]}")
    return out


def _fill(page: Any, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")


def _choose(page: Any, label: str, option: str) -> None:
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    box.locator("input").click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")


def _advanced(page: Any, title: str, minibatch: int) -> None:
    page.get_by_text(title).click()
    page.get_by_role("spinbutton", name="Minibatch size").fill(str(minibatch))


class Smoke:
    """The steps, their timings and screenshots."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.steps: list[Step] = []
        self.started = time.perf_counter()

    def step(self, name: str, started: float, note: str = "") -> Step:
        """Record a step that began at ``started`` (perf_counter), with a screenshot."""
        wait_idle(self.page)
        s = Step(
            name,
            time.perf_counter() - started,
            shot(self.page, f"{len(self.steps) + 1:02d}-{name}"),
            alerts(self.page),
            note,
        )
        self.steps.append(s)
        print(f"  {s.name}: {s.seconds:.1f} s, {len(s.alerts)} alert(s)", flush=True)
        return s


def _watch(smoke: Smoke, page_name: str, run_id: str, timeout_s: float) -> dict[str, Any]:
    """Follow a job to its end from the page, a screenshot every minute or so."""
    from core.optimization import jobs

    started = time.perf_counter()
    last = started
    while True:
        status = jobs.status(run_id)
        if not status.active:
            break
        if time.perf_counter() - started > timeout_s:
            jobs.cancel(run_id)
            status = jobs.wait(run_id, timeout_s=300)
            break
        if time.perf_counter() - last > 60:
            smoke.step(f"{page_name}-progress", started, note=f"status {status.status}")
            last = time.perf_counter()
        time.sleep(3)
    # The Progress panel polls every 2 s and redraws the page once the job ended: wait
    # for it to say so (a reload would start a new session, which follows no run).
    shown = "yes"
    try:
        smoke.page.wait_for_function(
            """() => /status (finished|failed|cancelled|interrupted)/i.test(
                (document.querySelector('[data-testid="stMain"]') || {}).innerText || '')""",
            timeout=180_000,
        )
    except Exception:
        shown = "no: the Progress panel did not show the run's end within 180 s"
    smoke.step(
        f"{page_name}-ended", started, note=f"status {status.status}; panel shows it: {shown}"
    )
    return {
        "run_id": run_id,
        "status": status.status,
        "error": getattr(status, "error", None),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _new_run(experiment_id: str, kind: str, since: float, timeout_s: float = 90) -> str | None:
    from core.optimization import jobs
    from core.views.prompt_runs import list_prompt_runs

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = jobs.list_jobs(experiment_id) if kind == "align" else list_prompt_runs(experiment_id)
        found = [r for r in runs if (r.started or 0) >= since - 1]
        if found:
            return str(found[0].run_id)
        time.sleep(0.5)
    return None


def align_pass(smoke: Smoke, url: str, cfg: dict[str, Any], experiment_id: str) -> dict:
    """The Align page: models and base URLs, tiny budget, Launch, watch to the end."""
    page = smoke.page
    t = time.perf_counter()
    page.goto(f"{url}/align")
    smoke.step("align-open", t)
    t = time.perf_counter()
    _choose(page, "Optimizer", "GEPA: reflective")
    _fill(page, "Judge model", cfg["model"])
    _fill(page, "Judge model base URL", cfg["base_url"])
    _fill(page, "Reflection model", cfg["model"])
    _fill(page, "Reflection model base URL", cfg["base_url"])
    page.get_by_role("spinbutton", name="Budget (metric calls, 0 = auto)").fill(
        str(cfg["align_budget"])
    )
    page.get_by_role("spinbutton", name="Workers").fill("1")
    _advanced(page, "Advanced: minibatch, retrieval, reviewers, cancelling", cfg["minibatch"])
    page.get_by_role("button", name="Apply and check").click()
    smoke.step("align-form-checked", t)
    t = time.perf_counter()
    since = time.time()
    page.get_by_role("button", name="Launch alignment").click()
    launched = smoke.step("align-launched", t)
    run_id = _new_run(experiment_id, "align", since)
    if run_id is None:
        return {"run_id": None, "status": "not launched", "alerts": launched.alerts}
    return _watch(smoke, "align", run_id, cfg["timeout_s"])


def optimize_pass(smoke: Smoke, url: str, cfg: dict[str, Any], experiment_id: str) -> dict:
    """The Optimize page: application and reflection on the real model, the registered
    judge, tiny budget, Launch, watch to the end."""
    page = smoke.page
    t = time.perf_counter()
    page.goto(f"{url}/optimize")
    smoke.step("optimize-open", t)
    t = time.perf_counter()
    _fill(page, "Application model", cfg["model"])
    _fill(page, "Application model base URL", cfg["base_url"])
    _fill(page, "Reflection model", cfg["model"])
    _fill(page, "Reflection model base URL", cfg["base_url"])
    page.get_by_role("spinbutton", name="Budget (metric calls, 0 = auto)").fill(
        str(cfg["optimize_budget"])
    )
    page.get_by_role("spinbutton", name="Workers").fill("1")
    _advanced(page, "Advanced: minibatch, aggregation, cancelling", cfg["minibatch"])
    page.get_by_role("button", name="Apply and check").click()
    smoke.step("optimize-form-checked", t)
    t = time.perf_counter()
    since = time.time()
    page.get_by_role("button", name="Launch optimization").click()
    launched = smoke.step("optimize-launched", t)
    run_id = _new_run(experiment_id, "optimize", since)
    if run_id is None:
        return {"run_id": None, "status": "not launched", "alerts": launched.alerts}
    return _watch(smoke, "optimize", run_id, cfg["timeout_s"])


def _run_facts(run_id: str | None) -> dict[str, Any]:
    """What the run recorded: status tags, metrics, the registered version."""
    if not run_id:
        return {}
    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    keep = ("test_", "metric_calls", "llm_calls", "judge_failures", "app_failures", "iterations")
    return {
        "metrics": {k: v for k, v in run.data.metrics.items() if k.startswith(keep)},
        "tags": {k: v for k, v in run.data.tags.items() if k.startswith("alignboard.")},
    }


def run(
    base_url: str | None = None,
    model: str | None = None,
    *,
    align_budget: int = 5,
    optimize_budget: int = 5,
    minibatch: int = 1,
    timeout_s: float = 1200.0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the smoke pass and return its JSON-ready record (also printed)."""
    from playwright.sync_api import sync_playwright

    from benchmarks.b4_real_prompt import model_server
    from core.store import config

    out: dict[str, Any] = {"benchmark": "b4_browser_smoke", "machine": machine_info()}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    home = Path(tempfile.mkdtemp(prefix="alignboard-b4b-"))
    saved: dict[str, str | None] = {
        k: os.environ.get(k) for k in (config.HOME_ENV, "MLFLOW_TRACKING_URI")
    }
    # The worker's real-model calls can take minutes (see b4_real_prompt).
    os.environ.setdefault("REQUEST_TIMEOUT", "900")
    # No key is set for the keyless llama.cpp server: the pages must take a judge and
    # models with a base URL without one (the first smoke found Align refusing it).
    out["openai_api_key_set"] = "OPENAI_API_KEY" in os.environ
    t0 = time.perf_counter()
    try:
        with model_server(base_url, model, threads) as (url, uri):
            cfg = {
                "base_url": url,
                "model": uri,
                "align_budget": align_budget,
                "optimize_budget": optimize_budget,
                "minibatch": minibatch,
                "timeout_s": timeout_s,
            }
            out["settings"] = cfg
            out["store"] = build_store(home, uri, url)
            print(f"B4 browser smoke: {uri} at {url}; store {out['store']}", flush=True)
            with dashboard(home, ARTIFACTS) as app_url, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1440, "height": 1000})
                page = context.new_page()
                # A shared 2-core machine under a real model's load: pages take their time.
                page.set_default_timeout(180_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                smoke = Smoke(page)
                exp_id = out["store"]["experiment_id"]
                try:
                    out["align"] = align_pass(smoke, app_url, cfg, exp_id)
                    out["align"].update(_run_facts(out["align"].get("run_id")))
                    out["optimize"] = optimize_pass(smoke, app_url, cfg, exp_id)
                    out["optimize"].update(_run_facts(out["optimize"].get("run_id")))
                except Exception as exc:  # a step that could not be done is the finding
                    out["failed_step"] = f"{type(exc).__name__}: {str(exc)[:500]}"
                    with contextlib.suppress(Exception):
                        smoke.step("failure", time.perf_counter())
                finally:
                    out["steps"] = [s.to_dict() for s in smoke.steps]
                    out["page_errors"] = errors
                    browser.close()
    finally:
        out["total_s"] = round(time.perf_counter() - t0, 2)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        config._configured_uri = None
        shutil.rmtree(home, ignore_errors=True)
    out["findings"] = findings(out)
    for line in out["findings"]:
        print(f"FINDING {line}", flush=True)
    for part in ("align", "optimize"):
        got = out.get(part) or {}
        print(f"{part}: {got.get('status')} in {got.get('seconds')} s (run {got.get('run_id')})")
    print(f"screenshots: {ARTIFACTS.relative_to(ROOT)}/ ({len(out.get('steps', []))})")
    return out


def findings(out: dict[str, Any]) -> list[str]:
    """What a user would call a problem: alerts the pages showed, page errors, a run that
    did not finish, a step that could not be done."""
    found: list[str] = []
    if out.get("failed_step"):
        found.append(f"a step could not be done: {out['failed_step']}")
    for s in out.get("steps", []):
        for a in s["alerts"]:
            if a.startswith(("error:", "exception:", "warning:")):
                found.append(f"{s['name']}: the page shows {a}")
    for e in out.get("page_errors", []):
        found.append(f"browser page error: {e[:300]}")
    for part in ("align", "optimize"):
        got = out.get(part) or {}
        if got and got.get("status") != "finished":
            found.append(
                f"{part} run {got.get('run_id')} ended {got.get('status')}: {got.get('error')}"
            )
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.b4_browser_smoke [--base-url URL --model NAME] --out F``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument("--base-url", help="an OpenAI-compatible server already running (.../v1)")
    p.add_argument("--model", help="its model name (openai:/NAME or NAME)")
    p.add_argument("--align-budget", type=int, default=5, help="Align: metric calls")
    p.add_argument("--optimize-budget", type=int, default=5, help="Optimize: metric calls")
    p.add_argument("--minibatch", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=1200.0, help="per run, then cancel")
    p.add_argument(
        "--threads", default="auto", help="llama.cpp threads when a server is started (auto)"
    )
    args = p.parse_args(argv)
    result = run(
        args.base_url,
        args.model,
        align_budget=args.align_budget,
        optimize_budget=args.optimize_budget,
        minibatch=args.minibatch,
        timeout_s=args.timeout_s,
        threads=None if args.threads == "auto" else int(args.threads),
    )
    write_json(args.out, {"b4_browser": result})
    done = all((result.get(p) or {}).get("status") == "finished" for p in ("align", "optimize"))
    return 0 if done else 1


if __name__ == "__main__":
    raise SystemExit(main())
