"""R1 concurrent reviewers: 8 processes x 200 labels with edits, on both stores.

Eight real worker processes (this module run as ``python -m``) label one experiment at
the same time: 4 reviewers x 2 processes each (two browser tabs of the same person), on
40 traces and two criteria. Both processes of a pair walk the *same* sequence of
(trace, criterion) keys, released together by a start file, so they write the same
(trace, criterion, reviewer) at the same moment over and over; the other pairs hit the
same traces under other reviewer names. Every call's value and rationale differ (edits),
and every worker records each Label it got back.

Then, against the embedded sqlite store, against a real ``mlflow server`` on loopback
(sqlite behind it, everything over REST, traces imported over REST too) and against an
``mlflow server`` with a real PostgreSQL behind it (team mode; full size is marked
``slow_pg``, ``make test`` runs 4 x 50 there), R1 asserts:

1. exactly one current label per written (trace, criterion, reviewer), according to
   ``current_labels`` / ``get_label`` *and* to MLflow's own API (``search_traces`` and
   ``get_trace``: exactly one ``valid`` HUMAN feedback per key);
2. none lost: every assessment id a worker got back is in that key's ``label_history``,
   with the value and rationale that call wrote;
3. none duplicated: a key's history has exactly as many versions as set_label calls
   returned for it, no id was returned twice, and the versions form one linear chain (the
   first overrides nothing, each other one overrides its predecessor, only the last is
   valid), in ``label_history`` order;
4. the current label (value, rationale, id) is the last version of the chain;
5. all 8 x 200 calls succeeded.

The module prints wall time, labels/s, latency and the optimistic-lock conflicts seen
(``pytest -s`` shows them).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import (  # noqa: F401  (pytest fixtures)
    pg_cluster,
    pg_mlflow_server_factory,
)

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 8
LABELS_PER_WORKER = 200
TRACES = 40
HOT_TRACES = 3
HOT_SHARE = 0.5
CRITERIA = ("correct", "tone")
TONES = ("formal", "friendly", "curt")
PASS_FAIL_SPELLINGS = (True, False, "pass", "fail", "Pass", "FAIL")


def reviewer_of(worker: int) -> str:
    """Workers 2k and 2k+1 are the same reviewer (two tabs)."""
    return f"reviewer-{worker // 2}"


def key_sequence(
    reviewer: str, trace_ids: list[str], count: int = LABELS_PER_WORKER
) -> list[tuple[str, str]]:
    """The (trace, criterion) keys a reviewer's workers write, in order (shared by a pair)."""
    rng = random.Random(f"keys-{reviewer}")
    keys = []
    for _ in range(count):
        if rng.random() < HOT_SHARE:
            # A few hot keys: even when one tab runs a few calls ahead of the other, they
            # keep writing the same (trace, criterion, reviewer) at the same time.
            keys.append((rng.choice(trace_ids[:HOT_TRACES]), "correct"))
        else:
            keys.append((rng.choice(trace_ids), "correct" if rng.random() < 0.7 else "tone"))
    return keys


# --------------------------------------------------------------------------- worker


def _worker(args: list[str]) -> None:
    """One reviewer tab: ``WORKER_INDEX EXPERIMENT_ID TRACE_IDS_FILE START_FILE OUT_FILE COUNT``."""
    index, experiment_id, ids_file, start_file, out_file, count = args
    worker = int(index)
    import core.models.providers

    # Labels never call a model: skip registering the demo LiteLLM provider, whose import
    # of litellm costs ~3 s of CPU per process (8 of them share 2 cores here).
    core.models.providers.register_providers = lambda: None
    import core.labeling.labels as labels
    from core.labeling.criteria import get_criterion

    stats: Counter[str] = Counter()
    seen_errors: list[str] = []

    def counting(name, fn):
        def wrapped(exc):
            hit = fn(exc)
            if hit:
                stats[name] += 1
                if len(seen_errors) < 5:
                    seen_errors.append(f"{name}: {str(exc)[:300]}")
            return hit

        return wrapped

    # Count the optimistic-lock collisions set_label absorbs (it asks these helpers).
    labels._is_conflict = counting("conflicts", labels._is_conflict)
    labels._is_transient = counting("transient", labels._is_transient)

    reviewer = reviewer_of(worker)
    trace_ids = json.loads(Path(ids_file).read_text())
    criteria = {name: get_criterion(experiment_id, name) for name in CRITERIA}
    labels.get_label(trace_ids[0], "correct", reviewer)  # warm up connections / engine
    rng = random.Random(f"values-{worker}")
    plan = key_sequence(reviewer, trace_ids, int(count))

    Path(f"{start_file}.ready.{worker}").touch()
    while not Path(start_file).exists():
        time.sleep(0.002)
    released = time.time()
    results, failures = [], []
    for n, (trace_id, criterion) in enumerate(plan):
        if criterion == "correct":
            value = rng.choice(PASS_FAIL_SPELLINGS)
        else:
            value = rng.choice(TONES)
        rationale = f"w{worker} call {n}: edit {rng.randrange(10**6)}"
        t = time.perf_counter()
        retries_before = stats.total()
        try:
            label = labels.set_label(trace_id, criteria[criterion], reviewer, value, rationale)
        except Exception as exc:  # recorded and asserted on by the test
            failures.append({"call": n, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            continue
        results.append(
            {
                **label.to_dict(),
                "call": n,
                "seconds": time.perf_counter() - t,
                "retries": stats.total() - retries_before,
            }
        )
    Path(out_file).write_text(
        json.dumps(
            {
                "worker": worker,
                "reviewer": reviewer,
                "released": released,
                "finished": time.time(),
                "results": results,
                "failures": failures,
                "stats": dict(stats),
                "seen_errors": seen_errors,
            }
        )
    )


# --------------------------------------------------------------------------- fixtures


#: (store, processes, labels per process). The full size on PostgreSQL (an mlflow server
#: with PostgreSQL behind it) is ``slow_pg``: ``make reliability`` runs it, ``make test``
#: runs the small one.
SIZES = [
    pytest.param(("sqlite", WORKERS, LABELS_PER_WORKER), id="sqlite"),
    pytest.param(("server", WORKERS, LABELS_PER_WORKER), id="server"),
    pytest.param(("postgres", 4, 50), id="postgres-4x50"),
    pytest.param(
        ("postgres", WORKERS, LABELS_PER_WORKER), id="postgres", marks=pytest.mark.slow_pg
    ),
]


@pytest.fixture(params=SIZES)
def store(request, tmp_path, monkeypatch) -> Iterator[tuple[str, int, int]]:
    """(store URI, processes, labels each): the embedded sqlite file, an ``mlflow server``
    in front of one, or an ``mlflow server`` with PostgreSQL behind it."""
    kind, workers, labels = request.param
    if kind == "sqlite":
        yield request.getfixturevalue("store_uri"), workers, labels
        return
    import mlflow

    from core.store import config
    from tests.support.mlflow_server import mlflow_server

    home = tmp_path / "home"
    home.mkdir()
    if kind == "postgres":
        server = request.getfixturevalue("pg_mlflow_server_factory")()
    else:
        server = mlflow_server(
            tmp_path / "server", template_db=request.getfixturevalue("_template_db")
        )
    with server as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv(config.HOME_ENV, str(home))
        config.configure(uri)
        yield uri, workers, labels
        mlflow.set_tracking_uri(None)


def _setup(tmp_path: Path) -> tuple[str, list[str]]:
    from core.io.importer import import_file
    from core.labeling.criteria import create_criterion
    from core.store.experiments import get_or_create_experiment

    exp = get_or_create_experiment("r1")
    create_criterion(exp.experiment_id, "correct", "pass_fail", "Is the answer right?")
    create_criterion(exp.experiment_id, "tone", "categorical", "Tone?", options=list(TONES))
    path = tmp_path / "traces.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"r1-{i}", "inputs": f"question {i}", "outputs": f"answer {i}"})
            + "\n"
            for i in range(TRACES)
        )
    )
    # The batched import path (log_spans): one sqlite transaction, or one OTLP request
    # to the server.
    result = import_file(path, exp.name)
    assert result.traces_written == TRACES
    return exp.experiment_id, list(result.trace_ids)


def _run_workers(
    tmp_path: Path, experiment_id: str, trace_ids: list[str], workers: int, labels: int
):
    ids_file = tmp_path / "trace_ids.json"
    ids_file.write_text(json.dumps(trace_ids))
    start = tmp_path / "start"
    outs = [tmp_path / f"worker-{w}.json" for w in range(workers)]
    logs = [open(tmp_path / f"worker-{w}.log", "wb") for w in range(workers)]  # noqa: SIM115
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reliability.test_r1_concurrent_reviewers",
                str(w),
                experiment_id,
                str(ids_file),
                str(start),
                str(outs[w]),
                str(labels),
            ],
            cwd=ROOT,
            env=env,
            stdout=logs[w],
            stderr=subprocess.STDOUT,
        )
        for w in range(workers)
    ]
    try:
        deadline = time.monotonic() + 180
        while not all(Path(f"{start}.ready.{w}").exists() for w in range(workers)):
            dead = [w for w, p in enumerate(procs) if p.poll() is not None]
            assert not dead, f"workers {dead} died before the start:\n" + _logs(tmp_path, dead)
            assert time.monotonic() < deadline, "workers did not get ready in 180 s"
            time.sleep(0.02)
        released = time.time()
        start.touch()  # every worker is waiting on this file: all start at once
        codes = [p.wait(timeout=540) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    bad = [w for w, c in enumerate(codes) if c != 0]
    assert not bad, f"workers {bad} failed:\n" + _logs(tmp_path, bad)
    return released, [json.loads(o.read_text()) for o in outs]


def _logs(tmp_path: Path, workers: list[int]) -> str:
    return "\n".join(
        f"--- worker {w}:\n{(tmp_path / f'worker-{w}.log').read_text(errors='replace')[-3000:]}"
        for w in workers
    )


# --------------------------------------------------------------------------- test


def _chain(history) -> list:
    """Order versions by following ``overrides`` from the first; assert it is one chain."""
    roots = [h for h in history if h.overrides is None]
    assert len(roots) == 1, f"{len(roots)} versions override nothing"
    by_prev: dict[str, list] = defaultdict(list)
    for h in history:
        if h.overrides is not None:
            by_prev[h.overrides].append(h)
    chain = roots
    while by_prev.get(chain[-1].assessment_id):
        nxt = by_prev[chain[-1].assessment_id]
        assert len(nxt) == 1, f"{len(nxt)} versions override {chain[-1].assessment_id} (a fork)"
        chain.append(nxt[0])
    assert len(chain) == len(history), (
        f"chain covers {len(chain)} of {len(history)} versions (orphaned versions)"
    )
    return chain


@pytest.mark.reliability
def test_r1_concurrent_reviewers(store, tmp_path):
    store, workers, labels = store
    import mlflow
    from mlflow.entities import AssessmentSourceType

    from core.labeling.labels import current_labels, get_label, label_history

    t0 = time.time()
    experiment_id, trace_ids = _setup(tmp_path)
    t_setup = time.time()
    released, reports = _run_workers(tmp_path, experiment_id, trace_ids, workers, labels)
    finished = max(r["finished"] for r in reports)
    wall = finished - released

    # (5) every call succeeded
    failures = [(r["worker"], f) for r in reports for f in r["failures"]]
    assert not failures, f"{len(failures)} set_label calls failed, e.g. {failures[:3]}"
    calls = [res for r in reports for res in r["results"]]
    assert len(calls) == workers * labels

    written: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for res in calls:
        written[(res["trace_id"], res["criterion"], res["reviewer"])].append(res)
    returned_ids = Counter(res["assessment_id"] for res in calls)
    twice = [i for i, n in returned_ids.items() if n > 1]
    assert not twice, f"{len(twice)} assessment ids were returned by two calls: {twice[:3]}"

    tails = {}
    gaps = []  # ms between consecutive versions of a chain (label_history sorts by time)
    for key, results in written.items():
        history = label_history(*key)
        # (3) none duplicated: as many versions as successful calls, one linear chain,
        # label_history lists it oldest first, only the last version is valid.
        assert len(history) == len(results), (key, len(history), len(results))
        chain = _chain(history)
        assert [h.assessment_id for h in history] == [h.assessment_id for h in chain], key
        assert [h.valid for h in chain] == [False] * (len(chain) - 1) + [True], key
        gaps += [b.created_ms - a.created_ms for a, b in itertools.pairwise(chain)]
        # (2) none lost: each id a worker got back is stored with what that call wrote.
        stored = {h.assessment_id: h for h in history}
        for res in results:
            h = stored.get(res["assessment_id"])
            assert h is not None, f"label {res['assessment_id']} of {key} is lost"
            assert (h.value, h.rationale) == (res["value"], res["rationale"]), key
        # (4) the current label is the end of the chain.
        latest = get_label(*key)
        assert latest is not None, key
        assert (latest.assessment_id, latest.value, latest.rationale) == (
            chain[-1].assessment_id,
            chain[-1].value,
            chain[-1].rationale,
        ), key
        tails[key] = chain[-1]

    # (1) exactly one current label per written key: alignboard's scan ...
    current = current_labels(experiment_id)
    by_key = Counter((lab.trace_id, lab.criterion, lab.reviewer) for lab in current)
    assert set(by_key) == set(written), "current labels on keys nobody wrote, or keys missing"
    assert set(by_key.values()) == {1}
    for lab in current:
        assert lab.assessment_id == tails[(lab.trace_id, lab.criterion, lab.reviewer)].assessment_id

    # ... and MLflow's own API (search_traces and get_trace), not through core.
    def human_versions(assessments):
        versions: dict[tuple[str, str], list] = defaultdict(list)
        for a in assessments:
            if a.source.source_type == AssessmentSourceType.HUMAN and a.name in CRITERIA:
                versions[(a.name, a.source.source_id)].append(a)
        return versions

    traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
    assert sorted(t.info.trace_id for t in traces) == sorted(trace_ids)
    for trace in traces:
        for source in (trace.info, mlflow.get_trace(trace.info.trace_id).info):
            for (name, reviewer), versions in human_versions(source.assessments).items():
                key = (trace.info.trace_id, name, reviewer)
                valid = [a for a in versions if a.valid is not False]
                assert [a.assessment_id for a in valid] == [tails[key].assessment_id], key
                assert len(versions) == len(written[key]), key

    # Report.
    print(
        f"\nphases: setup {t_setup - t0:.1f} s, workers start {released - t_setup:.1f} s, "
        f"labeling {wall:.1f} s, verify {time.time() - finished:.1f} s"
    )
    conflicts = sum(r["stats"].get("conflicts", 0) for r in reports)
    transient = sum(r["stats"].get("transient", 0) for r in reports)
    latencies = sorted(res["seconds"] for res in calls)
    per_key = sorted(len(v) for v in written.values())
    print(
        f"\nR1 [{store.split(':')[0]}] {len(calls)} labels by {workers} processes in "
        f"{wall:.1f} s = {len(calls) / wall:.0f} labels/s; set_label p50 "
        f"{latencies[len(latencies) // 2] * 1000:.0f} ms, p99 "
        f"{latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms, max {latencies[-1]:.2f} s; "
        f"{len(written)} keys, {per_key[0]}-{per_key[-1]} versions each; "
        f"conflicts absorbed {conflicts}, transient errors retried {transient}, "
        f"most retries in one call {max(res['retries'] for res in calls)}; "
        f"min gap between chained versions {min(gaps)} ms"
    )
    for r in reports:
        for e in r["seen_errors"][:1]:
            print(f"  worker {r['worker']} e.g. {e}")


def test_mlflow_server_that_does_not_come_up_fails_with_its_log(tmp_path):
    from tests.support.mlflow_server import MlflowServerError, mlflow_server

    started = time.monotonic()
    with (
        pytest.raises(MlflowServerError, match=r"did not answer GET .*/health") as info,
        mlflow_server(tmp_path, startup_timeout=0.5),
    ):
        pass
    assert f"log ({tmp_path / 'server.log'})" in str(info.value)
    assert time.monotonic() - started < 30  # the half-started server was stopped, not awaited


if __name__ == "__main__":
    _worker(sys.argv[1:])
    sys.exit(0)
