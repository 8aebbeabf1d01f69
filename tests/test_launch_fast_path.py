"""``alignboard align --detach`` is a fast path: it queues the run and returns without
loading the optimizers (no dspy, gepa or LiteLLM), in a real subprocess on a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.models.uris import COMMON_PROVIDERS, known_providers
from core.optimization import jobs

ROOT = Path(__file__).resolve().parents[1]

_ALIGN = [
    "align", "--experiment", "alignboard-demo", "--judge", "support_quality",
    "--optimizer", "gepa", "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
    "--max-metric-calls", "20", "--detach", "--json",
]  # fmt: skip


def test_common_providers_are_litellm_providers():
    assert known_providers() >= COMMON_PROVIDERS


def test_align_detach_queues_without_importing_the_optimizers(demo_store):
    code = (
        "import json, sys\nfrom core import cli\n"
        "try:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in ('dspy', 'gepa', 'litellm') if m in sys.modules)))"
    )
    env = {**os.environ, "ALIGNBOARD_JOBS": "worker"}  # queue only: no job process here
    proc = subprocess.run(
        [sys.executable, "-c", code, *_ALIGN],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    *_, launched, loaded = proc.stdout.strip().splitlines()
    assert json.loads(loaded) == []
    run_id = json.loads(launched)["run_id"]
    assert jobs.status(run_id).status == "queued"
