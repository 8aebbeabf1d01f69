"""Re-aligning and unaligning a MemAlign judge: each makes a recorded run and a new version."""

from __future__ import annotations

import pytest

from core.errors import NotFoundError
from core.labeling.criteria import get_criterion
from core.labeling.labels import set_label
from core.labeling.splits import assign_split
from core.labeling.traces import all_trace_ids
from core.optimization.engine import run_alignment
from core.optimization.registry import list_versions, load_version
from core.optimization.runners import memalign as memalign_runner
from core.optimization.runners.memalign_versions import realign, unalign
from tests.optimization.demo_examples import CRITERION, demo_settings


def test_realign_and_unalign_register_new_versions_with_their_runs(demo_store):
    with pytest.raises(NotFoundError, match="no MemAlign"):
        realign(demo_store, CRITERION)
    first = run_alignment(demo_settings(demo_store, "memalign"))
    v1 = load_version(demo_store, CRITERION, first.judge_version)
    in_memory = {e["trace_id"] for e in memalign_runner.episodes(v1)}

    # A new train-split label arrives on an unlabeled trace.
    labeled = set(in_memory)
    fresh = next(
        t for t in all_trace_ids(demo_store) if t not in labeled and assign_split(t) == "train"
    )
    crit = get_criterion(demo_store, CRITERION)
    set_label(fresh, crit, "maria.chen", "fail", 'Says "issued a full refund" itself.')

    second = realign(demo_store, CRITERION)
    assert second.judge_version == first.judge_version + 1
    v2 = load_version(demo_store, CRITERION, second.judge_version)
    assert {e["trace_id"] for e in memalign_runner.episodes(v2)} == in_memory | {fresh}
    assert second.test_accuracy_after is not None

    gone = sorted(in_memory)[:3]
    third = unalign(demo_store, CRITERION, gone)
    assert third.judge_version == second.judge_version + 1
    v3 = load_version(demo_store, CRITERION, third.judge_version)
    assert {e["trace_id"] for e in memalign_runner.episodes(v3)} == (in_memory | {fresh}) - set(
        gone
    )
    versions = {v.version: v for v in list_versions(demo_store, CRITERION)}
    assert {versions[n].run_id for n in (1, 2, 3)} == {
        first.run_id,
        second.run_id,
        third.run_id,
    }
    assert all(versions[n].is_memalign for n in (1, 2, 3))
