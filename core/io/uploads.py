"""Files that come from, and go to, a browser: uploads to preview and import, label exports.

A browser hands over bytes and a file name rather than a path; these wrap
:mod:`core.io.importer` and :mod:`core.io.export`, which work on paths.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from core.errors import ImportFileError, ValidationError
from core.io.export import export_labels
from core.io.formats import SUFFIXES
from core.io.importer import ImportPlan, ImportResult, import_file, plan_import
from core.io.records import NewCriterion

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
    new_criteria: tuple[NewCriterion, ...] = ()
    """Criteria the file names that the experiment lacks, as they would be created."""
    criteria_problems: tuple[str, ...] = ()
    """Why some of those cannot be created from the file's values."""
    create_criteria: bool = False
    """Whether this preview checked the labels against the criteria to be created."""

    @property
    def ok(self) -> bool:
        """Whether the file can be imported as is (with the criteria choice it was made with)."""
        return (
            not self.errors
            and self.records > 0
            and not (self.create_criteria and self.criteria_problems)
        )

    def criteria_table(self) -> list[dict[str, Any]]:
        """The criteria to be created, one row each, for the preview."""
        return [
            {
                "criterion": n.name,
                "kind": n.kind,
                "options / range": n.describe(),
                "labels": n.labels,
                "instructions": "from the file"
                if n.instructions_from_file
                else "placeholder: edit it after the import",
            }
            for n in self.new_criteria
        ]


def _summary(filename: str, plan: ImportPlan) -> UploadPreview:
    parsed = plan.parsed
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
        new_criteria=plan.new_criteria,
        criteria_problems=plan.problems,
        create_criteria=plan.create_criteria,
    )


def preview_upload(
    data: bytes, filename: str, experiment_id: str | None, create_criteria: bool = False
) -> UploadPreview:
    """Validate an uploaded import file against the experiment's criteria; write nothing.

    Criteria the file names that the experiment lacks are inferred from its values
    (``new_criteria``); with ``create_criteria`` the labels are checked against them, so
    the preview is ``ok`` exactly when the import would succeed.

    Raises:
        ImportFileError: the file cannot be read at all (wrong type, empty).
    """
    plan = _with_temp_file(
        data,
        filename,
        lambda p: plan_import(p, experiment_id, create_criteria=create_criteria),
    )
    return _summary(filename, plan)


def import_upload(
    data: bytes,
    filename: str,
    experiment_name: str,
    on_existing: Literal["error", "skip"] = "skip",
    *,
    create_criteria: bool = False,
    queue: str | None = None,
    reviewers: Iterable[str] = (),
    queue_criteria: Sequence[str] = (),
) -> ImportResult:
    """Import an uploaded file (all or nothing; see :func:`core.io.importer.import_file`)."""
    return _with_temp_file(
        data,
        filename,
        lambda p: import_file(
            p,
            experiment_name,
            on_existing=on_existing,
            create_criteria=create_criteria,
            queue=queue,
            reviewers=tuple(reviewers),
            queue_criteria=tuple(queue_criteria),
        ),
    )


def export_bytes(
    experiment_id: str, fmt: Literal["csv", "jsonl"] = "csv", criterion: str | None = None
) -> bytes:
    """The experiment's labels as a CSV or JSONL file's bytes (see :func:`core.io.export.export_labels`)."""
    with tempfile.TemporaryDirectory(prefix="alignboard-export-") as tmp:
        path = Path(tmp) / f"labels.{fmt}"
        export_labels(experiment_id, path, fmt=fmt, criterion=criterion)
        return path.read_bytes()
