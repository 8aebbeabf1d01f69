"""Exporting labels (and the traces they are on) to CSV or JSON Lines.

The JSON Lines export of current labels is in the import format: importing it into
another experiment recreates the same traces, expectations and labels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

from mlflow.entities import Expectation
from mlflow.tracing.client import TracingClient

from core.errors import ValidationError
from core.io.formats import CSV_COLUMNS
from core.io.span_records import export_fields
from core.labeling.labels import Label, current_from_assessments, is_human_feedback, to_label
from core.labeling.traces import SOURCE_ID_TAG, user_tags
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
    spans = trace.data.spans
    root = next((s for s in spans if s.parent_id is None), spans[0] if spans else None)
    if root is None:
        return {}, {}
    return root.inputs, root.outputs


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


def _expectations(trace) -> dict[str, Any]:
    return {
        a.name: a.value
        for a in trace.info.assessments
        if isinstance(a, Expectation) and a.valid is not False
    }


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
            expectations = _expectations(trace)
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
