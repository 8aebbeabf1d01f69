"""Import file formats: JSON Lines and CSV, read and validated without writing anything.

Every row is checked before anything is written, and every problem is reported with
its line number. See :mod:`core.io.records` for what a record may hold and
:mod:`core.io.importer` for the record format and the write path.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from core.errors import ImportFileError
from core.io.records import (
    ImportRecord,
    ParsedImport,
    RowErrors,
    check_duplicate_labels,
    check_record,
    decode_lines,
)
from core.labeling.criteria import Criterion

__all__ = ["CSV_COLUMNS", "ImportRecord", "ParsedImport", "parse_import_file"]

CSV_COLUMNS = (
    "id",
    "inputs",
    "outputs",
    "expectations",
    "tags",
    "criterion",
    "value",
    "rationale",
    "reviewer",
)
#: Columns our own CSV export adds; ignored on import so an export re-imports.
CSV_EXPORT_ONLY_COLUMNS = (
    "trace_id",
    "assessment_id",
    "created_ms",
    "updated_ms",
    "overrides",
    "current",
)
SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}


def _parse_jsonl(errs: RowErrors, data: bytes, criteria) -> list[ImportRecord]:
    records = []
    lines = decode_lines(errs, data)
    nonblank = [(n, t) for n, t in lines if t.strip()]
    if nonblank and nonblank[0][1].lstrip().startswith("["):
        # A whole array on line 1, or a pretty-printed one spread over many lines.
        try:
            json.loads(nonblank[0][1])
            is_array = True
        except ValueError:
            is_array = len(nonblank) > 1
        if is_array:
            errs.add(
                nonblank[0][0],
                "this looks like a JSON array; write one JSON object per line (JSON Lines)",
            )
            return []
    for n, text in nonblank:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            errs.add(n, f"malformed JSON: {exc.msg} at column {exc.colno}")
            continue
        except RecursionError:
            # A span tree (or any value) nested thousands deep: refuse it, do not crash.
            errs.add(n, "JSON nested too deeply to read")
            continue
        rec = check_record(errs, n, obj, criteria)
        if rec is not None:
            records.append(rec)
    return records


def cell_json(errs: RowErrors, line: int, column: str, text: str, text_key: str | None) -> Any:
    """A CSV cell holding either a JSON object or plain text."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            errs.add(line, f"{column} looks like JSON but is malformed: {exc.msg}")
            return None
    if text_key is None:
        errs.add(line, f"{column} must be a JSON object")
        return None
    return {text_key: text}


def _parse_csv(errs: RowErrors, data: bytes, criteria) -> list[ImportRecord]:
    lines = decode_lines(errs, data)
    bad_lines = {e.line for e in errs.errors}
    text = "\n".join(t for n, t in lines)
    if bad_lines:
        # Keep line numbers aligned: re-decode leniently, bad lines already reported.
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in CSV_COLUMNS + CSV_EXPORT_ONLY_COLUMNS]
    if unknown:
        errs.add(1, f"unknown column(s) {unknown}; allowed: {', '.join(CSV_COLUMNS)}")
    for col in ("inputs", "outputs"):
        if header and col not in header:
            errs.add(1, f"missing required column {col!r}")
    if unknown or not header or "inputs" not in header or "outputs" not in header:
        return []
    label_cols = ("criterion", "value", "rationale", "reviewer")
    by_id: dict[str, tuple[ImportRecord, dict]] = {}
    records: list[ImportRecord] = []
    prev_end = 1
    for row in reader:
        start, prev_end = prev_end + 1, reader.line_num
        if start in bad_lines:
            continue
        if None in row:
            errs.add(start, f"{len(row[None])} more cell(s) than columns in the header")
            continue
        if not any((v or "").strip() for v in row.values()):
            continue
        n_before = len(errs.errors)
        obj: dict[str, Any] = {}
        for col, key in (("inputs", "question"), ("outputs", "response")):
            cell = row.get(col) or ""
            if not cell.strip():
                errs.add(start, f"missing {col}")
            else:
                obj[col] = cell_json(errs, start, col, cell, key)
        if (row.get("expectations") or "").strip():
            obj["expectations"] = cell_json(
                errs, start, "expectations", row["expectations"], "expected_response"
            )
        if (row.get("tags") or "").strip():
            obj["tags"] = cell_json(errs, start, "tags", row["tags"], None)
        if (row.get("id") or "").strip():
            obj["id"] = row["id"].strip()
        cells = {c: (row.get(c) or "").strip() for c in label_cols}
        if any(cells.values()):
            obj["labels"] = [
                {
                    "criterion": cells["criterion"] or None,
                    "value": cells["value"] or None,
                    "reviewer": cells["reviewer"] or None,
                    "rationale": row.get("rationale") or None,
                }
            ]
        if len(errs.errors) > n_before:
            continue
        rec = check_record(errs, start, obj, criteria)
        if rec is None:
            continue
        if rec.source_id is None:
            records.append(rec)
            continue
        if rec.source_id not in by_id:
            by_id[rec.source_id] = (rec, obj)
            records.append(rec)
            continue
        first, first_obj = by_id[rec.source_id]
        mismatch = [
            k
            for k in ("inputs", "outputs", "expectations", "tags")
            if k in obj and k in first_obj and getattr(rec, k) != getattr(first, k)
        ]
        if mismatch:
            errs.add(
                start,
                f"rows with id {rec.source_id!r} must describe the same trace, but "
                f"{', '.join(mismatch)} differ from line {first.line}",
            )
            continue
        first.expectations = first.expectations or rec.expectations
        first.tags = first.tags or rec.tags
        first.labels.extend(rec.labels)
        before = len(errs.errors)
        check_duplicate_labels(errs, first.labels)
        if len(errs.errors) > before:
            first.labels[:] = first.labels[: len(first.labels) - len(rec.labels)]
    return records


def parse_import_file(
    path: str | Path,
    *,
    experiment_id: str | None = None,
    criteria: list[Criterion] | None = None,
) -> ParsedImport:
    """Read and validate an import file without writing anything (for a preview).

    Args:
        path: A ``.jsonl``/``.json`` (JSON Lines) or ``.csv`` file.
        experiment_id: Check label criteria and values against this experiment's criteria.
            Without it (and without ``criteria``) criteria are not checked.
        criteria: The criteria to check against, when the caller already has them.

    Returns:
        The valid records and, separately, every problem found (by line).

    Raises:
        ImportFileError: the file cannot be read at all (missing, unknown extension, empty).
    """
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImportFileError(
            str(path),
            message=f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
            "use .jsonl or .json (JSON Lines) or .csv. Nothing was written.",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(
            str(path), message=f"{path}: cannot read file: {exc.strerror}"
        ) from exc
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise ImportFileError(
            str(path), message=f"{path}: the file is empty; it needs at least one record."
        )
    if criteria is None and experiment_id is not None:
        from core.labeling.criteria import list_criteria

        criteria = list_criteria(experiment_id)
    by_name = None if criteria is None else {c.name: c for c in criteria}
    errs = RowErrors()
    parse = _parse_jsonl if fmt == "jsonl" else _parse_csv
    records = parse(errs, data, by_name)
    _check_duplicate_ids(errs, records, fmt)
    if not records and not errs.errors:
        errs.add(1, "no records found (only blank lines or a header)")
    errors = sorted(errs.errors, key=lambda e: e.line)
    bad = {e.line for e in errors}
    records = [r for r in records if r.line not in bad]
    return ParsedImport(str(path), records, errors, criteria_checked=by_name is not None)


def _check_duplicate_ids(errs: RowErrors, records: list[ImportRecord], fmt: str) -> None:
    if fmt == "csv":
        return  # rows sharing an id are one trace by design
    seen: dict[str, int] = {}
    for rec in records:
        if rec.source_id is None:
            continue
        if rec.source_id in seen:
            errs.add(
                rec.line,
                f"duplicate id {rec.source_id!r} (first used on line {seen[rec.source_id]})",
            )
        else:
            seen[rec.source_id] = rec.line
