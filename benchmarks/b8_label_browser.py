"""B8: labeling speed in a real browser. Ctrl+Enter to the next trace on screen, at 1k-100k traces.

For each size, a copy of the B3 store (``benchmarks/b3_stores.py``: N traces, 20% labeled
by two reviewers, the queue ``scale-review`` holding all N) is served by ``streamlit run
app/main.py`` on a free loopback port, in its own temporary ``ALIGNBOARD_HOME``, and driven
by headless Chromium through Playwright's sync API, as a reviewer works:

* **submit & next**: with the focus on the page body, press a value key (``1``/``2``),
  wait for that rerun, then press ``Ctrl+Enter``; timed **in the page's clock** from the
  ``keydown`` of Ctrl+Enter (a capture listener installed before Streamlit's scripts) to
  the frame after the next trace id appeared in the DOM (a ``MutationObserver`` notes the
  id change, then ``requestAnimationFrame`` + ``setTimeout(0)``, i.e. after that paint).
  ``--submits`` of them (default 30) after ``--warmup`` untimed ones.
* **pick value**: the value key's ``keydown`` to the frame after the chosen value's button
  turned primary.
* **open Label**: from the Overview page, a click on *Label* in the sidebar navigation to
  the frame where the trace id and the rationale box are both on screen. **warm** (caches
  as the reviewer left them) and **cold** (every ``st.cache_data``/``st.cache_resource``
  emptied first, as after a server restart, through a trigger file the server polls).

Where the time goes, per submit, on one timeline (server times are epoch stamps written
by the server process and moved into the page's clock with ``performance.timeOrigin``):

* ``input``: keydown -> the browser sends the rerun request on the websocket;
* ``queue``: that send -> the server starts the script run (Tornado, the session's queue);
* ``script``: the whole script run on the server (the submit callback writes the label to
  MLflow, then the page is built); ``to_id``: server start -> the new id painted;
* ``after_end``: the server's end of the run -> the new id painted (negative: the id was
  on screen before the script finished, since Streamlit streams each element as it is
  drawn);
* ``render``: the last websocket message before the id appeared -> painted (the browser's
  own work on the final delta).

The server is the real one, wrapped only to time each script run
(``ScriptRunner._run_script``: wall, the script thread's CPU, the garbage collector's
time) and to empty the caches on request. ``--ab`` also measures each size without the
heap freeze of ``app/components/data.py`` (the wrapper makes ``gc.freeze`` a no-op), in
the same run, for a before/after under the same load.

The run checks its own work: every submit must land as a HUMAN label in MLflow on the
trace that was on screen, and each new trace must be one the reviewer had not labeled.

Usage: ``python benchmarks/b8_label_browser.py [--sizes 1000 10000 100000] [--submits 30]
--out F``; ``python -m benchmarks.run_all --only b8``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.b3_labeling_scale import summary
from benchmarks.b3_stores import QUEUE, REVIEWER, build_store
from benchmarks.common import DEMO_CRITERION, ROOT, arg_parser, print_table, ratio, write_json

FULL_SIZES = (1000, 10_000, 100_000)
QUICK_SIZES = (1000, 10_000)
GOAL_P95_MS = 200.0
GOAL_RATIO = 1.5
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
STARTUP_TIMEOUT_S = 120
SPLIT_KEYS = (
    "input_ms",
    "queue_ms",
    "script_ms",
    "script_cpu_ms",
    "gc_ms",
    "gc_tracked",
    "gc_frozen",
    "browser_cpu_ms",
    "browser_script_ms",
    "browser_layout_ms",
    "to_id_ms",
    "after_end_ms",
    "render_ms",
    "mutation_ms",
    "ready_ms",
    "script_finished_ms",
    "frames_in",
    "bytes_in",
    "frames_before_id",
    "bytes_before_id",
)
TIMING_ENV = "ALIGNBOARD_B8_TIMING_LOG"
CLEAR_ENV = "ALIGNBOARD_B8_CLEAR_TRIGGER"
#: Set: the server skips ``gc.freeze()`` (to measure without the heap freeze).
NO_FREEZE_ENV = "ALIGNBOARD_B8_NO_FREEZE"
#: Set: the server's ``mark_done`` reads one item's status by key (the proposed fix).
OLD_MARK_ENV = "ALIGNBOARD_B8_OLD_MARK_DONE"
#: A folder: profile every script run with cProfile there (for finding where time goes).
PROFILE_ENV = "ALIGNBOARD_B8_PROFILE"

# --- the server: streamlit run, timed ----------------------------------------------------


def _serve(streamlit_args: list[str]) -> int:
    """Run ``streamlit <args>`` in this process, logging each script run's epoch times.

    ``ScriptRunner._run_script`` is one rerun (widget callbacks, then the script), run on
    the session's script thread; its start and end go to ``$ALIGNBOARD_B8_TIMING_LOG`` as
    JSON lines. A daemon thread empties Streamlit's caches whenever the harness creates
    ``$ALIGNBOARD_B8_CLEAR_TRIGGER`` (and deletes the file when done).
    """
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.web import cli

    log_path = os.environ.get(TIMING_ENV)
    trigger = os.environ.get(CLEAR_ENV)
    lock = threading.Lock()
    original = script_runner.ScriptRunner._run_script

    def write(record: dict[str, Any]) -> None:
        if log_path:
            with lock, open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    import gc

    if os.environ.get(NO_FREEZE_ENV):
        # The "before" of the heap freeze (app/components/data.py): same server, no freeze.
        gc.freeze = lambda: None

    # Time spent in the garbage collector (any thread, any generation): Streamlit runs a
    # full collection after every script run (``runner.postScriptGC``), GIL held.
    gc_time = {"total": 0.0, "t0": 0.0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time["t0"] = time.perf_counter()
        else:
            gc_time["total"] += time.perf_counter() - gc_time["t0"]

    gc.callbacks.append(on_gc)
    profile_dir = os.environ.get(PROFILE_ENV)
    count = iter(range(10**9))

    def timed(self: Any, rerun_data: Any) -> None:
        prof = None
        if profile_dir:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        start, cpu, gc0 = time.time(), time.thread_time(), gc_time["total"]
        try:
            return original(self, rerun_data)
        finally:
            end, cpu_ms = time.time(), (time.thread_time() - cpu) * 1000
            n = next(count)
            record = {"start": start, "end": end, "cpu_ms": cpu_ms,
                      "gc_ms": (gc_time["total"] - gc0) * 1000, "gc_frozen": gc.get_freeze_count()}  # fmt: skip
            if n % 5 == 0:  # what the collector walks (listing it costs a few ms)
                record["gc_tracked"] = len(gc.get_objects())
            write(record)
            if prof is not None:
                prof.disable()
                prof.dump_stats(os.path.join(str(profile_dir), f"run-{n:04d}.prof"))

    script_runner.ScriptRunner._run_script = timed  # type: ignore[method-assign]

    def watch() -> None:
        import streamlit as st

        warming: float | bool | None = (
            None  # the dashboard's background import of LiteLLM (app/components/data.py)
        )
        while True:
            if trigger and os.path.exists(trigger):
                st.cache_data.clear()
                st.cache_resource.clear()
                os.remove(trigger)
            alive = any(t.name == "warm-litellm" for t in threading.enumerate())
            if alive and warming is None:
                warming = time.time()
            elif warming is not False and not alive and "litellm" in sys.modules:
                now = time.time()
                write({"warm_started": warming or now, "warm_done": now})
                warming = False
            time.sleep(0.02)

    threading.Thread(target=watch, name="b8-watch", daemon=True).start()
    if os.environ.get(OLD_MARK_ENV):
        from core.labeling import queues

        queues.mark_done = _mark_done_whole_queue
    sys.argv = ["streamlit", *streamlit_args]
    cli.main()
    return 0


def _mark_done_whole_queue(queue: Any, trace_id: str, reviewer: str) -> str:
    """``core.labeling.queues.mark_done`` as it was before B8: it built every item of the
    queue (``queue_items``: 100 calls of 1,000 at 100k) to read one status, after every
    submit. Measured with ``--old-mark-done`` as the "before" of the fix.
    """
    from mlflow.genai import review_queues as rq

    from core.errors import ValidationError
    from core.labeling import queues

    ids = {i.trace_id: i for i in queues.queue_items(queue)}
    if trace_id not in ids:
        raise ValidationError(f"Trace {trace_id} is not in queue {queue.name!r}.")
    if trace_id not in queues._done_by(queue, reviewer, [trace_id]):
        raise ValidationError(f"{reviewer} has not labeled {trace_id} yet.")
    reviewers = set(queue.reviewers) | {reviewer}
    if all(trace_id in queues._done_by(queue, r, [trace_id]) for r in reviewers):
        if ids[trace_id].status != "complete":
            rq.set_review_queue_item_status(
                queue.queue_id, item_id=trace_id, status="complete", completed_by=reviewer
            )
        return "complete"
    return "pending"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except OSError:
        return False


class Server:
    """``streamlit run app/main.py`` on a free loopback port, against ``home``."""

    def __init__(self, home: Path, work: Path, freeze: bool = True, old_mark: bool = False) -> None:
        self.home = home
        self.timing_log = work / "script-runs.jsonl"
        self.trigger = work / "clear-caches"
        self.log = work / "server.log"
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        # `streamlit run app/main.py` with the browser tests' options, from the wrapper.
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "run", "app/main.py",
               "--server.address", "127.0.0.1", "--server.port", str(port),
               "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            "ALIGNBOARD_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            TIMING_ENV: str(self.timing_log),
            CLEAR_ENV: str(self.trigger),
        }
        if not freeze:
            env[NO_FREEZE_ENV] = "1"
        if old_mark:
            env[OLD_MARK_ENV] = "1"
        self._out = open(self.log, "wb")  # noqa: SIM115  # closed in stop()
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"streamlit not healthy after {STARTUP_TIMEOUT_S} s")
            time.sleep(0.2)

    def records(self) -> list[dict[str, Any]]:
        """Everything the wrapped server logged so far."""
        if not self.timing_log.exists():
            return []
        lines = self.timing_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(x) for x in lines if x.strip()]

    def runs(self) -> list[dict[str, Any]]:
        """Every script run so far: epoch ``start``/``end`` (seconds), the script thread's
        CPU time ``cpu_ms``."""
        return [r for r in self.records() if "start" in r]

    def wait_warm(self, timeout_s: float = 300) -> float | None:
        """Wait until the dashboard's background LiteLLM import has finished (it holds
        the GIL for seconds, slowing every rerun of a just-started server); its seconds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [r for r in self.records() if "warm_done" in r]
            if done:
                return float(done[0]["warm_done"] - done[0]["warm_started"])
            time.sleep(0.2)
        raise RuntimeError(f"the server's LiteLLM warm-up did not end in {timeout_s} s")

    def clear_caches(self, timeout_s: float = 10) -> None:
        """Empty the server's Streamlit caches (as a restart would), and wait for it."""
        self.trigger.write_text("clear", encoding="utf-8")
        deadline = time.monotonic() + timeout_s
        while self.trigger.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not clear its caches")
            time.sleep(0.01)

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._out.close()


# --- the page: what it records ------------------------------------------------------------

#: Installed before any of Streamlit's scripts (``add_init_script``). Records, in the
#: page's clock: keydowns; websocket frames (sent, received, size, and which top-level
#: ForwardMsg fields a received one carries); each change of the trace id on screen and
#: the frame after it; and, when armed, the first frame with the label form on screen.
INSTRUMENT_JS = r"""
(() => {
  const B = window.__b8 = {keys: [], ws: [], ids: [], cur: null, open: null, pick: null};
  const now = () => performance.now();
  addEventListener('keydown', e => {
    B.keys.push({t: now(), key: e.key, ctrl: e.ctrlKey || e.metaKey});
  }, true);
  // Top-level field numbers of a ForwardMsg (protobuf), e.g. 4 new_session, 5 delta,
  // 6 script_finished: enough to tell a delta from the end of a run.
  const fields = (buf) => {
    const out = [];
    try {
      const b = new Uint8Array(buf);
      let i = 0;
      const varint = () => {
        let x = 0, s = 0, c;
        do { c = b[i++]; x += (c & 0x7f) * Math.pow(2, s); s += 7; } while (c & 0x80);
        return x;
      };
      while (i < b.length && out.length < 8) {
        const key = varint(), f = Math.floor(key / 8), w = key % 8;
        out.push(f);
        // (`i += varint()` would read i before varint() moves it)
        if (w === 0) varint(); else if (w === 2) { const n = varint(); i += n; }
        else if (w === 1) i += 8; else if (w === 5) i += 4; else break;
      }
    } catch (e) { /* not protobuf: leave what was read */ }
    return out;
  };
  const size = d => (d && (d.byteLength ?? d.size ?? d.length)) || 0;
  const Native = window.WebSocket;
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', ev => {
        const t = now();
        const f = ev.data instanceof ArrayBuffer ? fields(ev.data) : [];
        B.ws.push({t, dir: 'in', n: size(ev.data), f});
      });
    }
    send(d) { B.ws.push({t: now(), dir: 'out', n: size(d)}); return super.send(d); }
  }
  window.WebSocket = Recorded;
  const afterPaint = (rec) => requestAnimationFrame(() => {
    rec.t_raf = now();
    setTimeout(() => { rec.t_paint = now(); }, 0);
  });
  const TRACE = /Trace\s*(tr-[0-9a-f]+)/;
  B.traceOf = () => {
    const main = document.querySelector('[data-testid="stMain"]');
    const m = main && TRACE.exec(main.textContent || '');
    return m ? m[1] : null;
  };
  B.formShown = () => !!document.querySelector('textarea[aria-label="Rationale"]');
  const check = () => {
    const id = B.traceOf();
    if (id && id !== B.cur) {
      B.cur = id;
      const rec = {id, t_mut: now()};
      B.ids.push(rec);
      afterPaint(rec);
    }
    const last = B.ids[B.ids.length - 1];
    const form = document.querySelector('[data-testid="label-form"]');
    if (last && !last.t_ready && form && form.dataset.traceId === last.id
        && form.dataset.state === 'ready') {
      last.t_ready = now();
    }
    if (B.open && !B.open.t_mut && id && B.formShown()) {
      B.open.t_mut = now();
      afterPaint(B.open);
    }
    if (B.pick && !B.pick.t_mut) {
      if (B.pick.sel.some(sel => document.querySelector(sel))) { B.pick.t_mut = now(); afterPaint(B.pick); }
    }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true,
    characterData: true, attributes: true, attributeFilter: ['class', 'disabled', 'data-trace-id', 'data-state', 'aria-pressed']});
})();
"""

IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    const s = app && app.getAttribute('data-test-script-state');
    return s === 'notRunning' || s === 'compilationError';
}"""


def _wait_idle(page, settle_ms: int = 150) -> None:
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_function(IDLE_JS, polling=10)
    page.wait_for_timeout(settle_ms)


def _set_reviewer(page, name: str) -> None:
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(
        has_text="Your name"
    )
    box.locator("input").click()
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    _wait_idle(page)


def _nav_click(page, url_path: str) -> float:
    """Click the sidebar link to ``url_path``; return the page time of the click."""
    return float(
        page.evaluate(
            """(path) => {
                const a = [...document.querySelectorAll('[data-testid="stSidebarNav"] a')]
                    .find(x => {
                        const p = new URL(x.href).pathname.replace(/\\/$/, '');
                        return p.endsWith('/' + path) || (path === 'overview' && p === '');
                    });
                if (!a) throw new Error('no navigation link to ' + path);
                const t = performance.now();
                a.click();
                return t;
            }""",
            url_path,
        )
    )


def _open_label(page, server: Server, cold: bool) -> float:
    """From Overview, open Label from the navigation; ms to the form and trace on screen."""
    _nav_click(page, "overview")
    _wait_idle(page)
    if cold:
        server.clear_caches()
    page.evaluate("() => { window.__b8.open = {}; }")
    t0 = _nav_click(page, "label")
    page.wait_for_function("() => window.__b8.open && window.__b8.open.t_paint", polling=10)
    rec = page.evaluate("() => window.__b8.open")
    _wait_idle(page)
    return float(rec["t_paint"] - t0)


def _blur(page) -> None:
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")


def _keyboard_form(page) -> bool:
    """Whether the page has the keyboard-first label form (a value key focuses the
    rationale; Ctrl+Enter submits from anywhere) rather than native value buttons."""
    return bool(page.evaluate("() => !!document.querySelector('[data-testid=\"label-form\"]')"))


def _value_texts(page) -> list[str]:
    """The value buttons' texts, in key order (either page: the form's buttons, or native
    buttons keyed label_value_<i>)."""
    texts = page.evaluate(
        """() => [...document.querySelectorAll(
                '[data-testid="label-form"] .ab-lf-values button, '
                + '[class*="st-key-label_value_"] button')]
            .map(b => (b.querySelector('p') || b).textContent.replace(/\\d+$/, '').trim())"""
    )
    return [str(t) for t in texts]


def _pick(page, index: int) -> float:
    """Press value key ``index + 1`` on the body; ms from its keydown to the value shown as
    chosen (its button pressed, or turned primary after a rerun)."""
    key = str(index + 1)
    _blur(page)
    sels = [
        f'[data-testid="label-form"] .ab-lf-values button:nth-child({index + 1})'
        '[aria-pressed="true"]',
        f'.st-key-label_value_{index} [data-testid="stBaseButton-primary"]',
    ]
    page.evaluate("(sel) => { window.__b8.pick = {sel}; }", sels)
    mark = page.evaluate("() => window.__b8.keys.length")
    page.keyboard.press(key)
    page.wait_for_function("() => window.__b8.pick && window.__b8.pick.t_paint", polling=10)
    _wait_idle(page, settle_ms=50)
    rec, keys = page.evaluate("(m) => [window.__b8.pick, window.__b8.keys.slice(m)]", mark)
    down = next(k for k in keys if k["key"] == key)
    return float(rec["t_paint"] - down["t"])


def _renderer_cpu(cdp) -> dict[str, float]:
    """Cumulative main-thread seconds of the page's renderer (Chrome's Performance domain)."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {k: metrics.get(k, 0.0) for k in ("TaskDuration", "ScriptDuration", "LayoutDuration",
                                              "RecalcStyleDuration")}  # fmt: skip


def _run_after(server: Server, epoch_ms: float, timeout_s: float = 10) -> dict | None:
    """The first script run the server started after ``epoch_ms`` (the rerun request)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        later = [r for r in server.runs() if r["start"] * 1000 >= epoch_ms - 5]
        if later:
            return min(later, key=lambda r: r["start"])
        time.sleep(0.05)
    return None


def _submit(page, server: Server, origin_ms: float, cdp=None) -> dict[str, Any]:
    """Ctrl+Enter; wait for the next trace id on screen; the timeline of that submit."""
    before = page.evaluate(
        "() => [window.__b8.ids.length, window.__b8.keys.length, window.__b8.ws.length]"
    )
    cpu0 = _renderer_cpu(cdp) if cdp else None
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "(n) => window.__b8.ids.length > n && window.__b8.ids[window.__b8.ids.length - 1].t_paint",
        arg=before[0],
        polling=10,
    )
    _wait_idle(page, settle_ms=100)
    cpu1 = _renderer_cpu(cdp) if cdp else None
    rec, keys, ws = page.evaluate(
        """([i, k, w]) => [window.__b8.ids[window.__b8.ids.length - 1],
            window.__b8.keys.slice(k), window.__b8.ws.slice(w)]""",
        before,
    )
    down = next(k for k in keys if k["key"] == "Enter" and k["ctrl"])
    t_key = down["t"]
    sent = [f for f in ws if f["dir"] == "out" and f["t"] >= t_key]
    got = [f for f in ws if f["dir"] == "in" and f["t"] >= t_key]
    before_id = [f for f in got if f["t"] <= rec["t_mut"]]
    out: dict[str, Any] = {
        "trace_id": rec["id"],
        "total_ms": rec["t_paint"] - t_key,
        "mutation_ms": rec["t_mut"] - t_key,
        # The keyboard-first form: ready for the next value key (None on the old page).
        "ready_ms": (rec["t_ready"] - t_key) if rec.get("t_ready") else None,
        "input_ms": (sent[0]["t"] - t_key) if sent else None,
        "render_ms": (rec["t_paint"] - before_id[-1]["t"]) if before_id else None,
        "frames_in": len(got),
        "bytes_in": sum(f["n"] for f in got),
        "frames_before_id": len(before_id),
        "bytes_before_id": sum(f["n"] for f in before_id),
    }
    finished = [f for f in got if 6 in f["f"]]
    if finished:
        out["script_finished_ms"] = finished[0]["t"] - t_key
    if cpu0 and cpu1:
        # The whole rerun's browser work, to the page settled (not only to the new id).
        out["browser_cpu_ms"] = (cpu1["TaskDuration"] - cpu0["TaskDuration"]) * 1000
        out["browser_script_ms"] = (cpu1["ScriptDuration"] - cpu0["ScriptDuration"]) * 1000
        out["browser_layout_ms"] = (
            cpu1["LayoutDuration"]
            + cpu1["RecalcStyleDuration"]
            - cpu0["LayoutDuration"]
            - cpu0["RecalcStyleDuration"]
        ) * 1000
    run = None if not sent else _run_after(server, origin_ms + sent[0]["t"])
    if run is not None:
        start = run["start"] * 1000 - origin_ms
        end = run["end"] * 1000 - origin_ms
        out["script_ms"] = end - start
        out["script_cpu_ms"] = run["cpu_ms"]
        out["gc_ms"] = run.get("gc_ms")
        out["gc_tracked"] = run.get("gc_tracked")
        out["gc_frozen"] = run.get("gc_frozen")
        out["queue_ms"] = (start - sent[0]["t"]) if sent else None
        out["to_id_ms"] = rec["t_paint"] - start
        out["after_end_ms"] = rec["t_paint"] - end
    return out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _summ(rows: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return summary(values) if values else None


def measure(
    home: Path,
    work: Path,
    experiment_id: str,
    submits: int,
    warmup: int,
    opens: int,
    colds: int,
    freeze: bool = True,
    old_mark: bool = False,
) -> dict[str, Any]:
    """Serve ``home``, drive it from Chromium, and return the figures (checked in MLflow)."""
    from playwright.sync_api import sync_playwright

    before = _labeled_before(home, experiment_id)
    out: dict[str, Any] = {"load_before": _load()}
    t0 = time.perf_counter()
    server = Server(home, work, freeze=freeze, old_mark=old_mark)
    out["server_start_s"] = time.perf_counter() - t0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1440, "height": 1000})
                context.add_init_script(INSTRUMENT_JS)
                page = context.new_page()
                page.set_default_timeout(120_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                t0 = time.perf_counter()
                page.goto(server.url)
                _wait_idle(page)
                _set_reviewer(page, REVIEWER)
                out["first_load_s"] = time.perf_counter() - t0
                out["warm_up_s"] = server.wait_warm()
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                origin = float(page.evaluate("() => performance.timeOrigin"))

                cold, warm = [], []
                for i in range(colds + opens + 1):
                    ms = _open_label(page, server, cold=i < colds)
                    if i < colds:
                        cold.append(ms)
                    elif i > colds:  # the first warm open after a cold one refills what
                        warm.append(ms)  # the cold one emptied: not counted as warm
                out["open_label_cold"] = summary(cold) if cold else None
                out["open_label"] = summary(warm)

                queue = page.locator('[data-testid="stMain"] input[aria-label="Work list"]')
                if queue.input_value() != QUEUE:
                    raise RuntimeError(f"the Label page did not open the queue {QUEUE!r}")
                keyboard = _keyboard_form(page)
                out["keyboard_form"] = keyboard
                texts = _value_texts(page)
                if len(texts) < 2:
                    raise RuntimeError(f"value buttons not found: {texts}")
                rows, picks, every = [], [], []
                for i in range(warmup + submits):
                    current = page.evaluate("() => window.__b8.traceOf()")
                    k = i % 2
                    pick_ms = _pick(page, k)
                    if keyboard:
                        # The value key put the focus in the rationale: the reviewer says
                        # why (a disagreement with the other reviewer would ask for it).
                        page.keyboard.type(f"b8 {i}: the reply quotes the policy")
                    row = _submit(page, server, origin, cdp)
                    if row["trace_id"] == current:
                        raise RuntimeError(f"submit {i}: the trace did not change")
                    row["from"] = current
                    row["value"] = texts[k]
                    every.append(row)
                    if i >= warmup:
                        rows.append(row)
                        picks.append(pick_ms)
                out["page_errors"] = errors
            finally:
                browser.close()
    finally:
        server.stop()
    out["load_after"] = _load()
    out["submit_next"] = summary([r["total_ms"] for r in rows])
    out["pick_value"] = summary(picks)
    out["split"] = {key: _summ(rows, key) for key in SPLIT_KEYS}
    out["submits"] = rows
    out["labels_checked"] = _check_labels(home, experiment_id, before, every)
    return out


def _labeled_before(home: Path, experiment_id: str) -> set[str]:
    """Traces the reviewer had labeled before the run, straight from MLflow's sqlite
    tables (what ``core.store.index.human_labeled_ids`` asks, without importing MLflow)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(home / "mlflow.db")) as db:
        rows = db.execute(
            "SELECT trace_id FROM assessments WHERE experiment_id = ? AND name = ? "
            "AND source_type = 'HUMAN' AND source_id = ? AND valid = 1",
            (int(experiment_id), DEMO_CRITERION, REVIEWER),
        ).fetchall()
    return {r[0] for r in rows}


def _labels(home: Path, experiment_id: str, trace_ids: list[str]) -> dict[str, Any]:
    """The reviewer's current HUMAN labels on ``trace_ids``, read through MLflow's API in a
    child process (the tracking URI is process-wide)."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    code = (
        "import json\n"
        "from core.store import config\n"
        "from core.labeling.labels import current_labels\n"
        f"config.configure({uri!r})\n"
        f"labs = current_labels({experiment_id!r}, {DEMO_CRITERION!r}, {REVIEWER!r}, "
        f"{trace_ids!r})\n"
        "print(json.dumps({l.trace_id: l.value for l in labs}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALIGNBOARD_HOME": str(home),
           "MLFLOW_TRACKING_URI": uri}  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if res.returncode:
        raise RuntimeError(f"reading the labels failed:\n{res.stderr[-2000:]}")
    return {"found": json.loads(res.stdout.strip().splitlines()[-1])}


def _check_labels(home: Path, experiment_id: str, before: set[str], rows: list[dict]) -> int:
    """Every submit must be a HUMAN label in MLflow with the value pressed, on a trace the
    reviewer had not labeled; and so must each trace it moved to."""
    shown = [r["from"] for r in rows]
    found = _labels(home, experiment_id, shown)["found"]
    for r in rows:
        if r["from"] in before or r["trace_id"] in before:
            raise RuntimeError(f"the page showed an already labeled trace: {r}")
        if found.get(r["from"]) != (r["value"] == "Pass"):
            raise RuntimeError(f"submit on {r['from']} is not in MLflow as {r['value']}")
    return len(shown)


def run_size(
    n: int,
    submits: int,
    warmup: int,
    opens: int,
    colds: int,
    freeze: bool = True,
    old_mark: bool = False,
) -> dict[str, Any]:
    """Build or reuse the store with ``n`` traces; measure a copy of it in the browser."""
    src = build_store(n)
    work = Path(tempfile.mkdtemp(prefix=f"b8-{n}-"))
    try:
        shutil.copytree(src, work / "store")
        exp_id = json.loads((src / "built.json").read_text())["experiment_id"]
        result = measure(
            work / "store", work, exp_id, submits, warmup, opens, colds, freeze, old_mark
        )
        result["traces"] = n
        result["heap_freeze"] = freeze
        result["old_mark_done"] = old_mark
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _p(r: dict[str, Any] | None, key: str = "p50_ms") -> float | None:
    return None if r is None else r[key]


def _table_rows(r: dict[str, Any], variant: str) -> tuple[dict, dict]:
    s = r["split"]
    figures = {
        "traces": r["traces"],
        "variant": variant,
        "submit p50": r["submit_next"]["p50_ms"],
        "submit p95": r["submit_next"]["p95_ms"],
        "pick p50": r["pick_value"]["p50_ms"],
        "pick p95": r["pick_value"]["p95_ms"],
        "Label warm p50": r["open_label"]["p50_ms"],
        "Label warm p95": r["open_label"]["p95_ms"],
        "Label cold p50": _p(r["open_label_cold"]),
        "load": f"{r['load_before'][0]:.1f}-{r['load_after'][0]:.1f}",
    }
    split = {
        "traces": r["traces"],
        "variant": variant,
        "input": _p(s["input_ms"]),
        "queue": _p(s["queue_ms"]),
        "script": _p(s["script_ms"]),
        "script p95": _p(s["script_ms"], "p95_ms"),
        "script CPU": _p(s["script_cpu_ms"]),
        "GC": _p(s["gc_ms"]),
        "browser CPU": _p(s["browser_cpu_ms"]),
        "start->id": _p(s["to_id_ms"]),
        "end->id": _p(s["after_end_ms"]),
        "render": _p(s["render_ms"]),
        "frames": _p(s["frames_in"]),
        "KB": None if s["bytes_in"] is None else s["bytes_in"]["p50_ms"] / 1024,
    }
    return figures, split


def run(
    sizes: tuple[int, ...],
    submits: int = 30,
    warmup: int = 3,
    opens: int = 8,
    colds: int = 2,
    ab: bool = False,
    old_mark: bool = False,
) -> dict[str, Any]:
    """Measure every size; print the tables; return the results with ratios and goals.

    Args:
        ab: Also measure each size without the heap freeze, just before (the "before" of
            ``app/components/data.py:freeze_heap``), reported under ``before``.
        old_mark: Also measure each size with the old ``mark_done`` that read the whole
            queue (:func:`_mark_done_whole_queue`, the "before" of the fix), under
            ``old_mark_done``.
    """
    per_size, before, old = [], [], []
    for n in sizes:
        if ab:
            before.append(run_size(n, submits, warmup, opens, colds, freeze=False))
        per_size.append(run_size(n, submits, warmup, opens, colds))
        if old_mark:
            old.append(run_size(n, submits, warmup, opens, colds, old_mark=True))
    rows, split_rows = [], []
    for i, r in enumerate(per_size):
        variants: list[tuple[str, dict]] = [("no freeze", before[i])] if ab else []
        variants.append(("", r))
        if old_mark:
            variants.append(("old mark_done", old[i]))
        for variant, res in variants:
            a, b = _table_rows(res, variant)
            rows.append(a)
            split_rows.append(b)
    print_table("B8 Label in Chromium (ms in the page's clock)", rows, list(rows[0]))
    print_table("B8 where a submit's time goes (p50 ms)", split_rows, list(split_rows[0]))
    result: dict[str, Any] = {"sizes": per_size, "goal_p95_ms": GOAL_P95_MS}
    if ab:
        result["before"] = before
    if old_mark:
        result["old_mark_done"] = old
    small, large = per_size[0], per_size[-1]
    key = f"{large['traces']}/{small['traces']}"
    result["ratios"] = {
        m: {key: ratio(large[m]["p95_ms"], small[m]["p95_ms"])}
        for m in ("submit_next", "pick_value", "open_label")
    }
    p95 = large["submit_next"]["p95_ms"]
    r_ = result["ratios"]["submit_next"][key]
    result["goals"] = {
        "submit_next_p95_ms": p95,
        "p95_met": p95 <= GOAL_P95_MS,
        "ratio": r_,
        "ratio_met": r_ is not None and r_ <= GOAL_RATIO,
    }
    print(
        f"Ctrl+Enter -> next trace p95 at {large['traces']}: {p95:.1f} ms "
        f"(goal <= {GOAL_P95_MS:.0f}); {key} ratio {r_} (goal <= {GOAL_RATIO})",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return _serve(argv[1:])
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", help="store sizes (default 1k 10k 100k)")
    p.add_argument("--submits", type=int, default=30, help="timed submits per size (30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed submits first (3)")
    p.add_argument("--opens", type=int, default=8, help="warm Label opens (8)")
    p.add_argument("--colds", type=int, default=2, help="cold Label opens (2)")
    p.add_argument(
        "--ab", action="store_true", help="also measure each size without the heap freeze"
    )
    p.add_argument(
        "--old-mark-done",
        action="store_true",
        help="also measure each size with the old mark_done that read the whole queue",
    )
    args = p.parse_args(argv)
    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES))
    result = run(
        sizes, args.submits, args.warmup, args.opens, args.colds, args.ab, args.old_mark_done
    )
    write_json(args.out, {"b8": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
