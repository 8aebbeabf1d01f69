"""Deterministic hash-based train/val/test splits."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from core.errors import ValidationError
from core.labeling.splits import (
    DEFAULT_FRACTIONS,
    SPLIT_SALT,
    SplitSpec,
    assign_split,
    split_ids,
)

ROOT = Path(__file__).resolve().parents[2]
IDS = [f"tr-{i:05d}" for i in range(10_000)]


def test_same_id_same_split_in_this_process() -> None:
    first = [assign_split(t) for t in IDS[:500]]
    assert [assign_split(t) for t in IDS[:500]] == first
    assert set(first) == {"train", "val", "test"}


def test_same_split_in_another_process() -> None:
    # A fresh interpreter has a different str-hash seed; the split must not depend on it.
    code = (
        "import json, sys; from core.labeling.splits import assign_split; "
        "print(json.dumps([assign_split(t) for t in json.loads(sys.stdin.read())]))"
    )
    ids = IDS[:300]
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert json.loads(out.stdout) == [assign_split(t) for t in ids]


def test_known_assignments_are_pinned() -> None:
    # Guards against accidental changes to the hash recipe, which would reshuffle
    # every stored trace's split.
    assert SplitSpec().unit("tr-1") == pytest.approx(0.006709925757805046, abs=1e-15)
    ids = ("tr-1", "tr-2", "abc", "tr-5", "tr-6", "tr-00042")
    assert {t: assign_split(t) for t in ids} == {
        "tr-1": "train",
        "tr-2": "train",
        "abc": "val",
        "tr-5": "val",
        "tr-6": "test",
        "tr-00042": "train",
    }


def test_fractions_close_to_target_on_10k_ids() -> None:
    counts = Counter(assign_split(t) for t in IDS)
    for name, frac in zip(("train", "val", "test"), DEFAULT_FRACTIONS, strict=True):
        assert abs(counts[name] / len(IDS) - frac) < 0.02
    custom = Counter(assign_split(t, (0.8, 0.1, 0.1)) for t in IDS)
    assert abs(custom["train"] / len(IDS) - 0.8) < 0.02


def test_adding_ids_does_not_move_existing_ones() -> None:
    before = split_ids(IDS[:1000])
    after = split_ids(["new-1", *IDS[:3000], "new-2"])
    for name, ids in before.items():
        assert set(ids) <= set(after[name])


def test_split_ids_keeps_order_dedupes_and_always_has_three_keys() -> None:
    out = split_ids(["b", "a", "b", "c"])
    assert set(out) == {"train", "val", "test"}
    assert sorted(t for ids in out.values() for t in ids) == ["a", "b", "c"]
    for ids in out.values():
        assert ids == [t for t in ["b", "a", "c"] if t in ids]
    assert split_ids([]) == {"train": [], "val": [], "test": []}


def test_zero_fraction_splits_stay_empty() -> None:
    no_test = Counter(assign_split(t, (0.7, 0.3, 0.0)) for t in IDS)
    assert no_test["test"] == 0
    only_train = Counter(assign_split(t, {"train": 1.0}) for t in IDS)
    assert only_train == {"train": len(IDS)}
    only_test = Counter(assign_split(t, (0.0, 0.0, 1.0)) for t in IDS)
    assert only_test == {"test": len(IDS)}


def test_shrinking_train_only_moves_train_traces() -> None:
    # With fixed hash positions, a smaller train share only moves traces out of train.
    a = split_ids(IDS[:2000], (0.6, 0.2, 0.2))
    b = split_ids(IDS[:2000], (0.5, 0.3, 0.2))
    assert set(b["train"]) <= set(a["train"])
    assert set(b["test"]) == set(a["test"])


def test_salt_changes_reshuffle() -> None:
    other = SplitSpec(salt="alignboard-split-v2")
    moved = sum(assign_split(t) != other.assign(t) for t in IDS[:1000])
    assert moved > 300
    assert SplitSpec().salt == SPLIT_SALT == "alignboard-split-v1"
    assert assign_split("tr-7", SplitSpec()) == assign_split("tr-7")


def test_split_spec_round_trip() -> None:
    spec = SplitSpec(fractions=(0.5, 0.25, 0.25), salt="s")
    assert spec.to_dict() == {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "salt": "s"}
    assert SplitSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(AttributeError):
        spec.salt = "x"  # type: ignore[misc]
    assert spec.split(["x", "y"]) == split_ids(["x", "y"], spec)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.6, 0.2), "three values"),
        ((0.6, 0.3, 0.3), "add up to 1"),
        ((0.7, 0.4, -0.1), ">= 0"),
        ((float("nan"), 0.5, 0.5), ">= 0"),
        (("0.6", 0.2, 0.2), ">= 0"),
        ({"train": 0.5, "dev": 0.5}, "Unknown split"),
        (0.6, "fractions must be"),
        ("abc", "fractions must be"),
    ],
)
def test_bad_fractions_raise(fractions: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        assign_split("tr-1", fractions)  # type: ignore[arg-type]


def test_bad_trace_ids_and_salts_raise() -> None:
    with pytest.raises(ValidationError, match="non-empty string"):
        assign_split("")
    with pytest.raises(ValidationError, match="non-empty string"):
        assign_split(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="single string"):
        split_ids("tr-1")
    with pytest.raises(ValidationError, match="salt"):
        SplitSpec(salt="")


def test_hash_position_is_uniform_in_unit_interval() -> None:
    spec = SplitSpec()
    units = [spec.unit(t) for t in IDS]
    assert all(0.0 <= u < 1.0 for u in units)
    assert abs(sum(units) / len(units) - 0.5) < 0.01
