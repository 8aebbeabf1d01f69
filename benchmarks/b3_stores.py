"""Generated stores for B3 (labeling at scale): N support traces in an embedded sqlite store.

Each store holds, in the experiment ``bench-scale``:

* ``N`` generated support traces (a question and a reply, like the demo's), imported
  through alignboard's own importer (batched ``log_spans``), oldest first;
* the demo criterion ``support_quality``;
* labels by two reviewers: ``bench.reviewer`` has labeled every 10th trace, and
  ``other.reviewer`` a different 10% (so 20% of the traces carry a human label and the
  label tables are not trivially empty);
* a review queue ``scale-review`` holding **all** ``N`` traces, assigned to both.

Building 100k traces takes several minutes, so a built store is kept under
``benchmarks/.cache/b3-<N>-v<GENERATOR_VERSION>/`` (gitignored; ``ALIGNBOARD_B3_CACHE``
moves it) and reused; the measurement always works on a copy, since it writes labels.
The builder runs in its own process, so its environment never leaks into the caller.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEMO_CRITERION, ROOT, _create_demo_criterion

#: Bump when the generated content changes, so cached stores are rebuilt.
GENERATOR_VERSION = 1
#: Where built stores are kept (``ALIGNBOARD_B3_CACHE`` overrides, e.g. for tests).
CACHE_ENV = "ALIGNBOARD_B3_CACHE"
EXPERIMENT = "bench-scale"
QUEUE = "scale-review"
REVIEWER = "bench.reviewer"
OTHER = "other.reviewer"
_CHUNK = 5000
_PHRASES = [
    ("I've issued your refund today", False),
    ("please send the full card number", False),
    ("delivery is guaranteed tomorrow", False),
    ("stop using it and we will replace it", True),
    ("a prepaid label is attached", True),
    ("I've connected you with a human agent", True),
]


def store_dir(n: int) -> Path:
    """Where the generated store with ``n`` traces is kept."""
    cache = Path(os.environ.get(CACHE_ENV) or ROOT / "benchmarks" / ".cache")
    return cache / f"b3-{n}-v{GENERATOR_VERSION}"


def _record(i: int, rng: random.Random) -> dict:
    phrase, ok = _PHRASES[rng.randrange(len(_PHRASES))]
    order = f"NW-{rng.randrange(10000, 99999)}"
    rec = {
        "id": f"scale-{i:07d}",
        "inputs": {
            "messages": [
                {"role": "user", "content": f"Hi, order {order} arrived damaged. What now? ({i})"}
            ]
        },
        "outputs": f"Sorry about order {order}. {phrase.capitalize()}. Anything else?",
        "tags": {"channel": rng.choice(["chat", "email"])},
    }
    who = REVIEWER if i % 10 == 3 else OTHER if i % 10 == 7 else None
    if who:
        rec["labels"] = [
            {
                "criterion": DEMO_CRITERION,
                "value": "pass" if ok else "fail",
                "reviewer": who,
                "rationale": f'The reply says "{phrase}".',
            }
        ]
    return rec


def build_store(n: int) -> Path:
    """Build (or reuse) the store with ``n`` traces, in a child process; return its folder."""
    folder = store_dir(n)
    if not (folder / "built.json").exists():
        subprocess.run([sys.executable, __file__, str(n)], check=True, cwd=ROOT)
    return folder


def _build(n: int, *, log=print) -> Path:
    folder = store_dir(n)
    done = folder / "built.json"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["ALIGNBOARD_HOME"] = str(folder)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    from core.io.importer import import_file
    from core.labeling.queues import add_traces, create_queue
    from core.store import config
    from core.store.experiments import get_or_create_experiment

    config.configure(os.environ["MLFLOW_TRACKING_URI"])
    started = time.perf_counter()
    exp = get_or_create_experiment(EXPERIMENT)
    _create_demo_criterion(exp.experiment_id)
    rng = random.Random(n)
    ids: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="b3-gen-"))
    try:
        for start in range(0, n, _CHUNK):
            path = tmp / f"chunk-{start}.jsonl"
            rows = [_record(i, rng) for i in range(start, min(n, start + _CHUNK))]
            path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
            ids += import_file(path, EXPERIMENT).trace_ids
            log(f"  b3 store {n}: {len(ids)} traces ({time.perf_counter() - started:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    queue = create_queue(exp.experiment_id, QUEUE, [DEMO_CRITERION], [REVIEWER, OTHER])
    add_traces(queue, ids)
    seconds = time.perf_counter() - started
    done.write_text(
        json.dumps({"traces": n, "experiment_id": exp.experiment_id, "build_seconds": seconds}),
        encoding="utf-8",
    )
    log(f"  b3 store {n}: built in {seconds:.0f} s")
    return folder


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [1000]:
        _build(size)
