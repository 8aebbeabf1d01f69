"""Files that come from, and go to, a browser: uploads to preview and import, label exports.

A browser hands over bytes and a file name rather than a path; these wrap
:mod:`core.io.importer` and :mod:`core.io.export`, which work on paths.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from core.errors import ImportFileError, ValidationError
from core.io.export import export_labels
from core.io.formats import SUFFIXES
from core.io.importer import ImportResult, ParsedImport, import_file, parse_import_file

#: Largest upload accepted (bytes).
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
#: Records shown in an import preview.
PREVIEW_ROWS = 20


def _suffix(filename: str) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise ImportFileError(
            filename,
            message=f"{filename}: unsupported file type {suffix or '(none)'!r}; "
            "use .jsonl or .json (JSON Lines) or .csv. Nothing was written.",
        )
    return suffix


def _with_temp_file(data: bytes, filename: str, fn):
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValidationError(
            f"{filename} is {len(data) / 1e6:.0f} MB; the limit is "
            f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB. Split the file, or import it with the CLI."
        )
    suffix = _suffix(filename)
    with tempfile.TemporaryDirectory(prefix="alignboard-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return fn(path)
        except ImportFileError as exc:
            # Report the user's file name, not our temporary path.
            exc.path = filename
            if exc.message:
                exc.message = exc.message.replace(str(path), filename)
            raise


@dataclass(frozen=True)
class UploadPreview:
    """What an uploaded file would import, checked without writing anything."""

    filename: str
    records: int
    """Valid records (traces)."""
    labels: int
    """Labels across the valid records."""
    errors: tuple[tuple[int, str], ...]
    """(line, reason) for every bad row; the file imports only when this is empty."""
    sample: tuple[dict[str, Any], ...]
    """The first valid records, as plain dicts (id, inputs, outputs, labels...)."""

    @property
    def ok(self) -> bool:
        """Whether the file can be imported as is."""
        return not self.errors and self.records > 0


def _summary(filename: str, parsed: ParsedImport) -> UploadPreview:
    sample = []
    for r in parsed.records[:PREVIEW_ROWS]:
        sample.append(
            {
                "line": r.line,
                "id": r.source_id or "",
                "inputs": r.inputs,
                "outputs": r.outputs,
                "labels": [asdict(lab) for lab in r.labels],
            }
        )
    return UploadPreview(
        filename=filename,
        records=len(parsed.records),
        labels=parsed.label_count,
        errors=tuple((e.line, e.reason) for e in parsed.errors),
        sample=tuple(sample),
    )


def preview_upload(data: bytes, filename: str, experiment_id: str | None) -> UploadPreview:
    """Validate an uploaded import file against the experiment's criteria; write nothing.

    Raises:
        ImportFileError: the file cannot be read at all (wrong type, empty).
    """
    parsed = _with_temp_file(
        data, filename, lambda p: parse_import_file(p, experiment_id=experiment_id)
    )
    return _summary(filename, parsed)


def import_upload(
    data: bytes,
    filename: str,
    experiment_name: str,
    on_existing: Literal["error", "skip"] = "skip",
) -> ImportResult:
    """Import an uploaded file (all or nothing; see :func:`core.io.importer.import_file`)."""
    return _with_temp_file(
        data, filename, lambda p: import_file(p, experiment_name, on_existing=on_existing)
    )


def export_bytes(
    experiment_id: str, fmt: Literal["csv", "jsonl"] = "csv", criterion: str | None = None
) -> bytes:
    """The experiment's labels as a CSV or JSONL file's bytes (see :func:`core.io.export.export_labels`)."""
    with tempfile.TemporaryDirectory(prefix="alignboard-export-") as tmp:
        path = Path(tmp) / f"labels.{fmt}"
        export_labels(experiment_id, path, fmt=fmt, criterion=criterion)
        return path.read_bytes()
