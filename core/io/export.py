"""Exporting labels (and the traces they are on) to CSV or JSON Lines, or as an MLflow
evaluation dataset.

The JSON Lines export of current labels is in the import format: importing it into
another experiment recreates the same traces, expectations and labels.
:func:`export_eval_dataset` turns a criterion's labeled traces into an MLflow evaluation
dataset (inputs, outputs, the human label as expectations).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mlflow.tracing.client import TracingClient

from core.errors import ValidationError
from core.io.formats import CSV_COLUMNS
from core.io.span_records import export_fields
from core.labeling.labels import Label, current_from_assessments, is_human_feedback, to_label
from core.labeling.traces import (
    SOURCE_ID_TAG,
    expectations_of,
    root_io,
    root_span,
    user_tags,
)
from core.store import config

_PAGE = 200
_HISTORY_COLUMNS = ("trace_id", "assessment_id", "created_ms", "updated_ms", "overrides", "current")


def _iter_traces(experiment_id: str):
    """Yield full traces (with spans: exports need the complete inputs/outputs)."""
    config.configure()
    client = TracingClient()
    token = None
    while True:
        page = client.search_traces(
            locations=[str(experiment_id)],
            max_results=_PAGE,
            order_by=["timestamp_ms ASC", "request_id ASC"],
            page_token=token,
            include_spans=True,
        )
        yield from page
        token = page.token
        if not token or not page:
            return


def _root_io(trace) -> tuple[Any, Any]:
    # A trace without spans exports empty objects (the import format wants objects).
    if root_span(trace) is None:
        return {}, {}
    return root_io(trace)


def _labels(trace, criterion: str | None, include_history: bool) -> list[Label]:
    if not include_history:
        return current_from_assessments(trace.info.assessments, criterion)
    versions = [
        a
        for a in trace.info.assessments
        if is_human_feedback(a) and (criterion is None or a.name == criterion)
    ]
    versions.sort(key=lambda a: (a.name, a.source.source_id, a.create_time_ms or 0))
    return [to_label(a) for a in versions]


def export_labels(
    experiment_id: str,
    path: str | Path,
    *,
    fmt: Literal["csv", "jsonl"] = "csv",
    criterion: str | None = None,
    include_history: bool = False,
) -> int:
    """Write human labels (with their traces' inputs and outputs) to a file.

    Formats:
        * ``jsonl`` without history: one line per trace (every trace, labeled or not) in
          the import format; re-importable.
        * ``csv`` without history: one row per current label, in the import's CSV columns
          plus ``trace_id`` and label metadata; re-importable too.
        * with ``include_history``: one row (CSV) or line (JSONL) per label *version*,
          oldest first within a trace, with ``current`` telling which one counts. A log
          for audits, not for re-import.

    Args:
        experiment_id: The experiment.
        path: Output file (overwritten).
        fmt: ``csv`` or ``jsonl``.
        criterion: Only this criterion's labels.
        include_history: Include replaced versions.

    Returns:
        Rows (CSV) or lines (JSONL) written.
    """
    if fmt not in ("csv", "jsonl"):
        raise ValidationError(f"Unknown export format {fmt!r}: use 'csv' or 'jsonl'.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = None
        if fmt == "csv":
            writer = csv.DictWriter(fh, fieldnames=[*CSV_COLUMNS, *_HISTORY_COLUMNS])
            writer.writeheader()
        for trace in _iter_traces(experiment_id):
            inputs, outputs = _root_io(trace)
            source_id = trace.info.tags.get(SOURCE_ID_TAG) or trace.info.trace_id
            labels = _labels(trace, criterion, include_history)
            expectations = expectations_of(trace.info)
            tags = {
                k: v
                for k, v in user_tags(trace.info.tags).items()
                if not k.startswith("alignboard.")
            }
            if fmt == "jsonl" and not include_history:
                record: dict[str, Any] = {"id": source_id, "inputs": inputs, "outputs": outputs}
                if expectations:
                    record["expectations"] = expectations
                if tags:
                    record["tags"] = tags
                # Its time and, for an agent trace, its spans: a re-import rebuilds it.
                record.update(export_fields(trace))
                record["labels"] = [
                    {
                        "criterion": lab.criterion,
                        "value": lab.value,
                        "rationale": lab.rationale,
                        "reviewer": lab.reviewer,
                    }
                    for lab in labels
                ]
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                rows += 1
                continue
            for lab in labels:
                row = {
                    "id": source_id,
                    "criterion": lab.criterion,
                    "value": lab.value,
                    "rationale": lab.rationale,
                    "reviewer": lab.reviewer,
                    "trace_id": lab.trace_id,
                    "assessment_id": lab.assessment_id,
                    "created_ms": lab.created_ms,
                    "updated_ms": lab.updated_ms,
                    "overrides": lab.overrides,
                    "current": lab.valid,
                }
                if fmt == "jsonl":
                    fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                else:
                    assert writer is not None  # made above for csv
                    row.update(
                        inputs=json.dumps(inputs, ensure_ascii=False, default=str),
                        outputs=json.dumps(outputs, ensure_ascii=False, default=str),
                        expectations=json.dumps(expectations, ensure_ascii=False)
                        if expectations
                        else "",
                        tags=json.dumps(tags, ensure_ascii=False) if tags else "",
                    )
                    writer.writerow(row)
                rows += 1
    return rows


#: Record tags of an exported evaluation dataset: the trace and reviewer each came from.
TRACE_ID_TAG = "alignboard.trace_id"
REVIEWER_TAG = "alignboard.reviewer"
_DATASET_BATCH = 100


@dataclass(frozen=True)
class DatasetExport:
    """What :func:`export_eval_dataset` wrote."""

    dataset_id: str
    """MLflow's id of the evaluation dataset."""
    name: str
    """Its name."""
    records: int
    """Records written or updated (one per labeled trace)."""
    created: bool
    """False when the dataset existed and its records were merged (updated in place)."""
    duplicates: tuple[str, ...] = ()
    """Labeled traces left out because an earlier trace has the same inputs (MLflow keys
    records by their inputs)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["duplicates"] = list(self.duplicates)
        return d


def _as_dict(value: Any, key: str) -> dict[str, Any]:
    # MLflow's dataset records want mappings; a bare value is wrapped under one key.
    return dict(value) if isinstance(value, dict) else {key: value}


def export_eval_dataset(
    experiment_id: str,
    criterion: str,
    name: str,
    chosen: Mapping[str, Label],
) -> DatasetExport:
    """Write a criterion's labeled traces as an MLflow evaluation dataset.

    One record per labeled trace: the root span's ``inputs`` and ``outputs``, and the
    consolidated human label as expectations ``{criterion: value,
    criterion + "_rationale": rationale}`` (the rationale only when there is one); record
    tags name the trace and the reviewer, and its source is the trace. Idempotent by
    record: MLflow merges records by their inputs, so exporting again into the same
    dataset updates its records (a relabel changes the expectation) instead of adding
    copies; traces whose inputs an earlier trace already has are left out and listed.

    Args:
        experiment_id: The experiment holding the traces (and the dataset's link).
        criterion: The criterion whose labels become expectations.
        name: The dataset's name (created, or merged into when it exists).
        chosen: trace id -> the one label the trace gets
            (``core.optimization.dataset.consolidate`` of its current labels).

    Raises:
        ValidationError: nothing is labeled for the criterion, no name, several datasets
            share the name, or MLflow refuses the records.
    """

    from core.io.prompt_data import _client, _datasets_named, merge_into_dataset

    if not isinstance(name, str) or not name.strip():
        raise ValidationError("Name the evaluation dataset to write (--dataset NAME).")
    name = name.strip()
    if not chosen:
        raise ValidationError(
            f"No trace is labeled for {criterion!r} in this experiment: nothing to export. "
            "Label some traces first (Label page, or import labels)."
        )
    config.configure()
    tracing = TracingClient()
    ids = list(chosen)
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for start in range(0, len(ids), _DATASET_BATCH):
        batch = ids[start : start + _DATASET_BATCH]
        traces = {t.info.trace_id: t for t in tracing.batch_get_traces(batch)}
        for trace_id in batch:
            trace = traces.get(trace_id)
            if trace is None:
                continue
            inputs, outputs = _root_io(trace)
            key = json.dumps(inputs, sort_keys=True, default=str)
            if key in seen:
                duplicates.append(trace_id)
                continue
            seen.add(key)
            label = chosen[trace_id]
            expectations: dict[str, Any] = {criterion: label.value}
            if label.rationale:
                expectations[f"{criterion}_rationale"] = label.rationale
            records.append(
                {
                    "inputs": _as_dict(inputs, "inputs"),
                    "outputs": _as_dict(outputs, "response"),
                    "expectations": expectations,
                    "tags": {TRACE_ID_TAG: trace_id, REVIEWER_TAG: label.reviewer},
                    "source": {"source_type": "TRACE", "source_data": {"trace_id": trace_id}},
                }
            )
    client = _client()
    found = _datasets_named(client, name)
    if len(found) > 1:
        raise ValidationError(f"{len(found)} evaluation datasets are already named {name!r}.")
    dataset = merge_into_dataset(experiment_id, name, records, found[0] if found else None)
    return DatasetExport(
        dataset_id=str(dataset.dataset_id),
        name=name,
        records=len(records),
        created=not found,
        duplicates=tuple(duplicates),
    )
