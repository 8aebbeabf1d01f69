"""Claims: of several racers exactly one wins; 3 workers run 20 queued jobs exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from mlflow import MlflowClient

from core.optimization import jobs
from core.optimization import recorder as rec
from core.optimization.claims import claim_key, claimant, try_claim
from core.optimization.workers import JOBS_MODE_ENV
from tests.optimization.worker_support import ROOT, queue_jobs, start_worker, stop
from tests.support.waiting import wait_for

_RACER = """
import sys, time
from mlflow import MlflowClient
from core.optimization.claims import try_claim
run_id, me, at = sys.argv[1], sys.argv[2], float(sys.argv[3])
client = MlflowClient()
client.get_run(run_id)  # connect before the start line
time.sleep(max(at - time.time(), 0))
print("WON" if try_claim(client, run_id, me) else "LOST", flush=True)
"""


def test_of_eight_racing_processes_exactly_one_claims(experiment):
    client = MlflowClient()
    run_id = client.create_run(experiment.experiment_id).info.run_id
    client.set_tag(run_id, rec.TAG_ATTEMPT, "0")
    at = time.time() + 12  # every racer has imported MLflow by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, run_id, f"racer-{i}", str(at)],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    said = [out.strip() for out, _ in results]
    assert sorted(said) == ["LOST"] * 7 + ["WON"], [err[-2000:] for _, err in results]
    winner = f"racer-{said.index('WON')}"
    run = client.get_run(run_id)
    assert run.data.params[claim_key(0)] == winner and claimant(run) == winner
    # The claim is immutable and idempotent: the winner again says yes, others still no.
    assert try_claim(client, run_id, winner) is True
    assert try_claim(client, run_id, "latecomer") is False
    # A new attempt is a new claim.
    client.set_tag(run_id, rec.TAG_ATTEMPT, "1")
    assert try_claim(client, run_id, "latecomer") is True
    assert claimant(client.get_run(run_id)) == "latecomer"


@pytest.mark.slow
def test_three_workers_run_twenty_queued_jobs_each_exactly_once(demo_store, tmp_path, monkeypatch):
    monkeypatch.setenv(JOBS_MODE_ENV, "worker")
    run_ids = queue_jobs(demo_store, 20)
    assert {jobs.status(r).status for r in run_ids} == {"queued"}  # nobody runs them yet
    logs = [tmp_path / f"worker-{i}.log" for i in range(3)]
    workers = [start_worker(log, "--id", f"w{i}") for i, log in enumerate(logs)]
    try:
        wait_for(
            lambda: all(not jobs.status(r).active for r in run_ids) or None,
            400,
            "every job to end",
            poll=1.0,
        )
    finally:
        codes = [stop(w) for w in workers]
    assert codes == [0, 0, 0]
    client = MlflowClient()
    claimed_by = {}
    for run_id in run_ids:
        run = client.get_run(run_id)
        st = jobs.status(run_id)
        assert st.status == "finished", (st, jobs.log_path(run_id).read_text()[-3000:])
        claims = {k: v for k, v in run.data.params.items() if k.startswith("alignboard.claim.")}
        assert list(claims) == [claim_key(0)], claims  # one attempt, one claim
        claimed_by[run_id] = claims[claim_key(0)]
        assert run.data.tags[rec.TAG_WORKER] == claimed_by[run_id] == st.worker
        # The job process announced itself once in the job's log: it ran once.
        assert jobs.log_path(run_id).read_text().count(f": run {run_id} in pid") == 1
    assert set(claimed_by.values()) <= {"w0", "w1", "w2"}
    # The workers' own logs agree: each run claimed once, by the one its param names.
    seen: Counter[str] = Counter()
    for i, log in enumerate(logs):
        text = log.read_text()
        for run_id in run_ids:
            if f"claimed run {run_id}" in text:
                seen[run_id] += 1
                assert claimed_by[run_id] == f"w{i}"
    assert seen == Counter(dict.fromkeys(run_ids, 1))
    assert len(set(claimed_by.values())) >= 2, Counter(claimed_by.values())  # they shared
