"""Dataset sources of a prompt optimization: rows of application inputs, mapped to variables.

A source is one of

- ``dataset:NAME``: an MLflow evaluation dataset (``mlflow.genai.datasets``);
- ``experiment:NAME``: the root-span inputs of that experiment's traces, optionally only
  those in a review queue or with given tags;
- a file path, JSON Lines or CSV: one record per row with ``inputs`` as an object and
  optional ``id``, ``expectations`` and ``tags``: the trace import format
  (:mod:`core.io.importer`) without outputs. Its CSV convention holds too: columns ``id,
  inputs, expectations, tags``, each cell a JSON object; a plain-text ``inputs`` cell is
  ``{"question": text}``; CSV rows sharing an ``id`` are one row. A trace import file is
  accepted as is (outputs and labels are ignored).

Every row has an ``id``: the one it was given, the record id of an evaluation dataset
row, the trace id of a trace, else ``row-`` + the first 12 hex digits of the SHA-256 of
its inputs (JSON, sorted keys). The split is a hash of that id
(:func:`core.labeling.splits.assign_split`, the same as judge alignment's), so a row keeps
its split when a file is reordered or grows.

A prompt's template variables map to input fields by dotted path (``message``,
``customer.name``, ``messages.-1.content``); by default a variable takes the top-level
field of the same name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.errors import ImportFileError, NotFoundError, ValidationError
from core.labeling.splits import Split, assign_split

if TYPE_CHECKING:
    from core.io.records import RowErrors

__all__ = [
    "ROW_ID_TAG",
    "DatasetRow",
    "DatasetSource",
    "MappingCheck",
    "check_mapping",
    "create_eval_dataset",
    "field_paths",
    "get_field",
    "load_rows",
    "parse_source",
    "resolve_mapping",
    "row_id_for",
    "split_rows",
    "values_for",
]

SourceKind = Literal["dataset", "experiment", "file"]
#: Record tag of an evaluation dataset row holding the row's own id, so the ids (and so
#: the splits) of rows written by :func:`create_eval_dataset` survive the round trip.
ROW_ID_TAG = "alignboard.row_id"
FILE_SUFFIXES = (".jsonl", ".json", ".csv")
#: Fields of a dataset file record.
ROW_FIELDS = ("id", "inputs", "expectations", "tags")
#: Trace import fields a dataset file may carry; read past, so an import file is a dataset.
IGNORED_FIELDS = ("outputs", "labels", "name")
#: CSV columns of the trace import format (and of our export) that a dataset ignores.
IGNORED_COLUMNS = (
    "outputs",
    "criterion",
    "value",
    "rationale",
    "reviewer",
    "trace_id",
    "assessment_id",
    "created_ms",
    "updated_ms",
    "overrides",
    "current",
)
#: How deep :func:`field_paths` looks into nested inputs.
MAX_PATH_DEPTH = 4
#: Line numbers a mapping check keeps per variable.
SHOWN_LINES = 5
_BATCH = 100
_SOURCE_FORMS = "dataset:NAME (an MLflow evaluation dataset), experiment:NAME (its traces' inputs) or a .jsonl/.csv file"


@dataclass(frozen=True)
class DatasetRow:
    """One input of the application, with what a correct answer is expected to hold."""

    id: str
    """Stable id: given, the dataset record's, the trace's, or a hash of the inputs."""
    inputs: dict[str, Any]
    """The application's input fields."""
    expectations: dict[str, Any]
    """Ground truth for scorers that use it (``expected_facts``, ``expected_response``)."""
    line: int | None = None
    """File line, or 1-based record number for datasets and traces."""
    trace_id: str | None = None
    """The MLflow trace the row came from, if any."""
    tags: dict[str, str] = field(default_factory=dict)
    """The row's own tags (file ``tags``, dataset record tags, trace tags)."""

    @property
    def split(self) -> Split:
        """``train``, ``val`` or ``test``, from a hash of the id."""
        return assign_split(self.id)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (with the split)."""
        return {
            "id": self.id,
            "inputs": self.inputs,
            "expectations": self.expectations,
            "line": self.line,
            "trace_id": self.trace_id,
            "tags": dict(self.tags),
            "split": self.split,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetRow:
        """Inverse of ``to_dict`` (the split is recomputed from the id, never read)."""
        return cls(
            id=str(data["id"]),
            inputs=dict(data["inputs"]),
            expectations=dict(data.get("expectations") or {}),
            line=data.get("line"),
            trace_id=data.get("trace_id"),
            tags=dict(data.get("tags") or {}),
        )


@dataclass(frozen=True)
class DatasetSource:
    """Where the rows come from."""

    kind: SourceKind
    """``dataset`` (MLflow evaluation dataset), ``experiment`` (traces) or ``file``."""
    name: str
    """The dataset or experiment name, or the file path."""
    queue: str | None = None
    """Experiment sources only: just the traces in this review queue."""
    tags: tuple[tuple[str, str], ...] = ()
    """Just the rows carrying all these tags (key, value), sorted by key."""

    def text(self) -> str:
        """The source as typed: ``dataset:NAME``, ``experiment:NAME`` or the path."""
        return self.name if self.kind == "file" else f"{self.kind}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "kind": self.kind,
            "name": self.name,
            "queue": self.queue,
            "tags": dict(self.tags),
            "text": self.text(),
        }


def parse_source(
    text: str, *, queue: str | None = None, tags: Mapping[str, str] | None = None
) -> DatasetSource:
    """Read a dataset source as the CLI and the Optimize page give it.

    Args:
        text: ``dataset:NAME``, ``experiment:NAME`` or a ``.jsonl``/``.json``/``.csv`` path.
        queue: Only the traces in this review queue (``experiment:`` sources).
        tags: Only rows with all these tags (trace tags for ``experiment:``, record or
            file tags otherwise).

    Raises:
        ValidationError: empty text or name, a file type we cannot read, a queue on a
            source that is not an experiment, or non-string tags.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"A dataset source is needed: {_SOURCE_FORMS}.")
    raw = text.strip()
    kind: SourceKind = "file"
    name = raw
    prefixes: tuple[SourceKind, ...] = ("dataset", "experiment")
    for prefix in prefixes:
        if raw.startswith(prefix + ":"):
            kind = prefix
            name = raw[len(prefix) + 1 :].strip()
            if not name:
                raise ValidationError(f"{raw!r}: give the {prefix} name after '{prefix}:'.")
    if kind == "file" and Path(name).suffix.lower() not in FILE_SUFFIXES:
        raise ValidationError(f"{raw!r} is not a dataset source we can read; use {_SOURCE_FORMS}.")
    if queue is not None and not queue.strip():
        queue = None
    if queue is not None and kind != "experiment":
        raise ValidationError(
            f"A review queue filter applies to experiment:NAME sources, not to {raw!r}."
        )
    pairs = []
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key.strip() or not isinstance(value, str):
            raise ValidationError(f"Tag filters are text key=value pairs; got {key!r}={value!r}.")
        pairs.append((key.strip(), value))
    return DatasetSource(kind, name, queue.strip() if queue else None, tuple(sorted(pairs)))


def row_id_for(inputs: Mapping[str, Any]) -> str:
    """The id of a row that was given none: a hash of its inputs (JSON, sorted keys)."""
    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=str)
    return "row-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_rows(source: DatasetSource) -> list[DatasetRow]:
    """Read every row of a source (after its queue and tag filters).

    Returns:
        The rows, in file order, dataset record order or trace order (oldest first; a
        queue's working order for a queue).

    Raises:
        ValidationError: a malformed file (one error listing the bad lines; no rows are
            returned), duplicate ids, or no rows left.
        NotFoundError: no such file, dataset, experiment or queue (the message names
            what exists).
    """
    if source.kind == "file":
        rows = _file_rows(Path(source.name))
    elif source.kind == "dataset":
        rows = _dataset_rows(source.name)
    elif source.kind == "experiment":
        rows = _experiment_rows(source.name, source.queue, dict(source.tags))
    else:
        raise ValidationError(f"Unknown dataset source kind {source.kind!r}; use {_SOURCE_FORMS}.")
    total = len(rows)
    if source.tags and source.kind != "experiment":
        rows = [r for r in rows if all(r.tags.get(k) == v for k, v in source.tags)]
    if not rows:
        where = f" in queue {source.queue!r}" if source.queue else ""
        if source.tags:
            where += " with tags " + ", ".join(f"{k}={v}" for k, v in source.tags)
            if source.kind != "experiment":
                where += f" (of {total})"
        raise ValidationError(
            f"{source.text()} has no rows{where}; pick another source or loosen the filter."
        )
    return rows


# --- files -------------------------------------------------------------------------------


def _kind_of(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _check_row(errs: RowErrors, line: int, obj: Any) -> DatasetRow | None:
    from core.io.records import MAX_FIELD_BYTES, MAX_ID_CHARS

    if not isinstance(obj, dict):
        errs.add(line, f"expected a JSON object, got {_kind_of(obj)}")
        return None
    before = len(errs.errors)
    unknown = sorted(set(obj) - set(ROW_FIELDS) - set(IGNORED_FIELDS))
    if unknown:
        errs.add(line, f"unknown field(s) {unknown}; allowed: {', '.join(ROW_FIELDS)}")
    row_id = obj.get("id")
    if row_id is not None and (not isinstance(row_id, str) or not row_id.strip()):
        errs.add(line, f"id must be a non-empty string, got {_kind_of(row_id)}")
    elif isinstance(row_id, str) and len(row_id) > MAX_ID_CHARS:
        errs.add(line, f"id is longer than {MAX_ID_CHARS} characters")
    inputs = obj.get("inputs")
    if inputs is None:
        errs.add(line, 'missing inputs (a JSON object of input fields, e.g. {"message": "..."})')
    elif not isinstance(inputs, dict):
        errs.add(
            line,
            f'inputs must be a JSON object such as {{"message": "..."}}, got {_kind_of(inputs)}',
        )
    elif not inputs:
        errs.add(line, "inputs is empty; give the application's input fields")
    expectations = obj.get("expectations")
    if expectations is None:
        expectations = {}
    elif not isinstance(expectations, dict):
        errs.add(line, f"expectations must be a JSON object, got {_kind_of(expectations)}")
    tags = obj.get("tags")
    if tags is None:
        tags = {}
    elif not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        errs.add(line, "tags must be an object of string -> string")
    for name, value in (("inputs", inputs), ("expectations", expectations)):
        if isinstance(value, dict):
            size = len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))
            if size > MAX_FIELD_BYTES:
                errs.add(
                    line,
                    f"{name} is {size // 1024} KiB; the limit is {MAX_FIELD_BYTES // 1024} KiB",
                )
    if len(errs.errors) > before:
        return None
    assert isinstance(inputs, dict)  # checked above
    rid = row_id.strip() if isinstance(row_id, str) else row_id_for(inputs)
    return DatasetRow(id=rid, inputs=inputs, expectations=expectations, line=line, tags=tags)


def _jsonl_rows(errs: RowErrors, data: bytes) -> list[DatasetRow]:
    from core.io.records import decode_lines

    nonblank = [(n, t) for n, t in decode_lines(errs, data) if t.strip()]
    if nonblank and nonblank[0][1].lstrip().startswith("["):
        errs.add(
            nonblank[0][0],
            "this looks like a JSON array; write one JSON object per line (JSON Lines)",
        )
        return []
    rows = []
    for n, text in nonblank:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            errs.add(n, f"malformed JSON: {exc.msg} at column {exc.colno}")
            continue
        row = _check_row(errs, n, obj)
        if row is not None:
            rows.append(row)
    return rows


def _csv_rows(errs: RowErrors, data: bytes) -> list[DatasetRow]:
    # A cell as the trace import reads it: JSON when it opens an object, else plain text.
    from core.io.formats import cell_json
    from core.io.records import decode_lines

    lines = decode_lines(errs, data)
    bad_lines = {e.line for e in errs.errors}
    text = "\n".join(t for _, t in lines)
    if bad_lines:
        # Keep line numbers aligned with the file: bad lines are already reported.
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in ROW_FIELDS + IGNORED_COLUMNS]
    if unknown:
        errs.add(1, f"unknown column(s) {unknown}; allowed: {', '.join(ROW_FIELDS)}")
    if header and "inputs" not in header:
        errs.add(1, "missing required column 'inputs'")
    if unknown or "inputs" not in header:
        return []
    rows = []
    by_id: dict[str, DatasetRow] = {}
    prev_end = 1
    for record in reader:
        start, prev_end = prev_end + 1, reader.line_num
        if start in bad_lines:
            continue
        if None in record:
            errs.add(start, f"{len(record[None])} more cell(s) than columns in the header")
            continue
        if not any((v or "").strip() for v in record.values()):
            continue
        before = len(errs.errors)
        obj: dict[str, Any] = {}
        cell = record.get("inputs") or ""
        if cell.strip():
            obj["inputs"] = cell_json(errs, start, "inputs", cell, "question")
        for column, key in (("expectations", "expected_response"), ("tags", None)):
            if (record.get(column) or "").strip():
                obj[column] = cell_json(errs, start, column, record[column], key)
        if (record.get("id") or "").strip():
            obj["id"] = record["id"].strip()
        if len(errs.errors) > before:
            continue
        row = _check_row(errs, start, obj)
        if row is None:
            continue
        first = by_id.get(row.id) if "id" in obj else None
        if first is None:
            by_id[row.id] = row
            rows.append(row)
        elif (first.inputs, first.expectations) != (row.inputs, row.expectations):
            # Rows sharing an id are one record in the trace import CSV (one per label).
            errs.add(
                start,
                f"rows with id {row.id!r} must hold the same inputs and expectations, but "
                f"differ from line {first.line}",
            )
    return rows


def _check_duplicates(errs: RowErrors, rows: list[DatasetRow]) -> None:
    seen: dict[str, int | None] = {}
    for row in rows:
        if row.id in seen:
            first = seen[row.id]
            if row.id.startswith("row-"):
                errs.add(
                    row.line or 0,
                    f"the same inputs as line {first}; remove the duplicate or give both rows "
                    "an id",
                )
            else:
                errs.add(row.line or 0, f"duplicate id {row.id!r} (first used on line {first})")
        else:
            seen[row.id] = row.line


def _file_rows(path: Path) -> list[DatasetRow]:
    from core.io.records import RowErrors

    if not path.is_file():
        raise NotFoundError(f"No dataset file {path}; check the path (relative to {Path.cwd()}).")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read the file: {exc.strerror}.") from exc
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise ValidationError(f"{path}: the file is empty; it needs one record per line.")
    errs = RowErrors()
    parse = _csv_rows if path.suffix.lower() == ".csv" else _jsonl_rows
    rows = parse(errs, data)
    _check_duplicates(errs, rows)
    if not rows and not errs.errors:
        errs.add(1, "no records found (only blank lines or a header)")
    if errs.errors:
        errors = sorted(errs.errors, key=lambda e: e.line)
        raise ImportFileError(
            str(path),
            errors,
            message=f"{path}: {len(errors)} problem(s); fix them and load the file again "
            "(no rows were read)",
        )
    return rows


# --- MLflow evaluation datasets ----------------------------------------------------------


def _name_filter(name: str) -> str:
    # The search filter has no escape for the quote it is written in; pick the other one.
    if '"' not in name:
        return f'name = "{name}"'
    if "'" not in name:
        return f"name = '{name}'"
    return "name = '{}'".format(name.replace("'", "''"))


def _datasets_named(client: Any, name: str) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_datasets(
            filter_string=_name_filter(name), max_results=100, page_token=token
        )
        found.extend(d for d in page if d.name == name)
        token = page.token
        if not token or not page:
            return found


def _dataset_names(client: Any) -> list[str]:
    page = client.search_datasets(max_results=100, order_by=["name ASC"])
    return sorted({d.name for d in page})


def _find_dataset(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    found = _datasets_named(client, name)
    if len(found) > 1:
        ids = ", ".join(d.dataset_id for d in found)
        raise ValidationError(
            f"{len(found)} evaluation datasets are named {name!r} ({ids}); give one by id: "
            f"dataset:{found[0].dataset_id}"
        )
    if found:
        return found[0]
    if name.startswith("d-"):
        try:
            return client.get_dataset(name)
        except MlflowException:
            pass
    names = _dataset_names(client)
    raise NotFoundError(
        f"No evaluation dataset named {name!r}. Existing datasets: "
        f"{', '.join(names) or 'none'}. Create one from a file with create_eval_dataset, or "
        "use the file itself as the source."
    )


def _client() -> Any:
    import mlflow

    from core.store import config

    config.configure()
    return mlflow.MlflowClient()


def _user_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    return {
        k: str(v) for k, v in (tags or {}).items() if not k.startswith(("mlflow.", "alignboard."))
    }


def _dataset_rows(name: str) -> list[DatasetRow]:
    client = _client()
    dataset = _find_dataset(client, name)
    records = sorted(
        dataset.records,
        key=lambda r: (r.created_time or 0, (r.tags or {}).get(ROW_ID_TAG, r.dataset_record_id)),
    )
    rows = []
    for n, rec in enumerate(records, start=1):
        inputs = rec.inputs if isinstance(rec.inputs, dict) else {"input": rec.inputs}
        tags = rec.tags or {}
        trace_id = rec.source_id if str(rec.source_type or "").upper() == "TRACE" else None
        rows.append(
            DatasetRow(
                id=tags.get(ROW_ID_TAG) or rec.dataset_record_id or row_id_for(inputs),
                inputs=inputs,
                expectations=dict(rec.expectations or {}),
                line=n,
                trace_id=trace_id,
                tags=_user_tags(tags),
            )
        )
    return rows


def merge_into_dataset(
    experiment_id: str, name: str, records: list[dict[str, Any]], dataset: Any = None
) -> Any:
    """Merge records into the evaluation dataset ``dataset`` (created as ``name`` in the
    experiment when None), 500 at a time (MLflow merges records with equal inputs).

    Raises:
        ValidationError: MLflow refused the records.
    """
    from mlflow.exceptions import MlflowException

    try:
        if dataset is None:
            from mlflow.genai.datasets import create_dataset

            dataset = create_dataset(name=name, experiment_id=[str(experiment_id)])
        for start in range(0, len(records), 500):
            dataset.merge_records(records[start : start + 500])
    except MlflowException as exc:
        raise ValidationError(
            f"MLflow refused the records of dataset {name!r}: {exc.message}"
        ) from exc
    return dataset


def create_eval_dataset(
    name: str,
    rows: Sequence[DatasetRow],
    *,
    experiment_id: str,
    exist_ok: bool = False,
) -> str:
    """Write rows as an MLflow evaluation dataset (readable back as ``dataset:NAME``).

    Each record holds the row's inputs and expectations, its tags, and its id (record tag
    ``alignboard.row_id``), so the ids, and so the splits, are the same when read back.
    MLflow keys records by their inputs: two rows with the same inputs would become one
    record, so they are refused.

    Args:
        name: The dataset's name (unique: MLflow itself allows duplicates, we do not).
        rows: The rows, e.g. from :func:`load_rows` on a file.
        experiment_id: The experiment the dataset is linked to (its Datasets tab).
        exist_ok: Add the rows to a dataset of that name if there is one (rows already
            there are updated, not duplicated): completes a half-written dataset.

    Returns:
        The dataset id.

    Raises:
        ValidationError: no rows, duplicate ids or inputs, the name is taken (without
            ``exist_ok``), or MLflow refuses the records.
    """

    if not isinstance(name, str) or not name.strip():
        raise ValidationError("An evaluation dataset needs a name.")
    name = name.strip()
    if not rows:
        raise ValidationError(f"No rows to write to dataset {name!r}.")
    by_id: dict[str, DatasetRow] = {}
    by_inputs: dict[str, DatasetRow] = {}
    for row in rows:
        key = json.dumps(row.inputs, sort_keys=True, default=str)
        if row.id in by_id:
            raise ValidationError(f"Two rows have the id {row.id!r}; ids must be unique.")
        if key in by_inputs:
            raise ValidationError(
                f"Rows {by_inputs[key].id!r} and {row.id!r} have the same inputs; MLflow would "
                "store them as one record. Remove one of them."
            )
        by_id[row.id] = by_inputs[key] = row
    client = _client()
    found = _datasets_named(client, name)
    if len(found) > 1:
        raise ValidationError(f"{len(found)} evaluation datasets are already named {name!r}.")
    if found and not exist_ok:
        raise ValidationError(
            f"An evaluation dataset named {name!r} already exists ({found[0].dataset_id}); "
            f"pick another name, or use it as is: dataset:{name}"
        )
    records = []
    for row in rows:
        record: dict[str, Any] = {"inputs": row.inputs, "tags": {**row.tags, ROW_ID_TAG: row.id}}
        if row.expectations:
            record["expectations"] = row.expectations
        if row.trace_id:
            record["source"] = {"source_type": "TRACE", "source_data": {"trace_id": row.trace_id}}
        records.append(record)
    dataset = merge_into_dataset(experiment_id, name, records, found[0] if found else None)
    written = {
        (r.tags or {}).get(ROW_ID_TAG) for r in client.get_dataset(dataset.dataset_id).records
    }
    lost = [rid for rid in by_id if rid not in written]
    if lost:
        raise ValidationError(
            f"Dataset {name!r} is missing {len(lost)} row(s) after writing (first: {lost[0]!r}); "
            "write it again with exist_ok=True to complete it."
        )
    return str(dataset.dataset_id)


# --- traces ------------------------------------------------------------------------------


#: The tag of a trace holding an application output sent to reviewers
#: (``core.optimization.prompt_review.TAG_OUTPUT_SHA``; io may not import optimization).
OUTPUT_TRACE_TAG = "alignboard.output_sha"


def _experiment_rows(name: str, queue: str | None, tags: Mapping[str, str]) -> list[DatasetRow]:
    from mlflow.tracing.client import TracingClient

    from core.labeling.labels import iter_trace_infos
    from core.labeling.traces import expectations_of, root_io, user_tags
    from core.store.experiments import get_experiment

    exp = get_experiment(name)
    ids: list[str] | None = None
    if queue is not None:
        from core.labeling.queues import get_queue, queue_items

        ids = [item.trace_id for item in queue_items(get_queue(exp.experiment_id, queue))]
    infos = {i.trace_id: i for i in iter_trace_infos(exp.experiment_id, trace_ids=ids)}
    order = ids if ids is not None else list(infos)
    # Application outputs sent to reviewers (core.optimization.prompt_review tags them) are
    # not application inputs of this experiment, unless a tag filter asks for them.
    want_outputs = any(k.startswith("alignboard.") for k in tags)
    wanted = [
        tid
        for tid in order
        if tid in infos
        and all(infos[tid].tags.get(k) == v for k, v in tags.items())
        and (want_outputs or OUTPUT_TRACE_TAG not in infos[tid].tags)
    ]
    client = TracingClient()
    rows: list[DatasetRow] = []
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start : start + _BATCH]
        traces = {t.info.trace_id: t for t in client.batch_get_traces(chunk)}
        for tid in chunk:
            trace = traces.get(tid)
            if trace is None:
                continue
            raw, _ = root_io(trace)
            # A trace without usable inputs stays a row, so the mapping check names it.
            inputs = raw if isinstance(raw, dict) else ({} if raw is None else {"input": raw})
            rows.append(
                DatasetRow(
                    id=tid,
                    inputs=inputs,
                    expectations=expectations_of(trace.info),
                    line=len(rows) + 1,
                    trace_id=tid,
                    tags=user_tags(trace.info.tags),
                )
            )
    return rows


# --- fields and mapping ------------------------------------------------------------------


def _walk(value: Any, prefix: str, depth: int, out: dict[str, None]) -> None:
    if depth >= MAX_PATH_DEPTH:
        return
    if isinstance(value, Mapping):
        for key, sub in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out[path] = None
            _walk(sub, path, depth + 1, out)
    elif isinstance(value, list) and value and prefix:
        for index in (0, -1):
            path = f"{prefix}.{index}"
            out[path] = None
            _walk(value[index], path, depth + 1, out)


def field_paths(rows: Sequence[DatasetRow]) -> list[str]:
    """Dotted paths of the input fields the rows have, in order of first appearance.

    Nested objects give ``a.b``; lists give their first and last element (``messages.0``,
    ``messages.-1.content``), up to four levels deep.
    """
    out: dict[str, None] = {}
    for row in rows:
        _walk(row.inputs, "", 0, out)
    return list(out)


def get_field(inputs: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; list indices are integers, negatives from the end.

    A key that itself contains dots is found too (the longest matching key wins).

    Raises:
        KeyError: the path is not there.
    """
    if not isinstance(path, str) or not path:
        raise KeyError(path)
    parts = path.split(".")
    value: Any = inputs
    i = 0
    while i < len(parts):
        if isinstance(value, Mapping):
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if key in value:
                    value, i = value[key], j
                    break
            else:
                raise KeyError(path)
        elif isinstance(value, list):
            try:
                index = int(parts[i])
            except ValueError:
                raise KeyError(path) from None
            if not -len(value) <= index < len(value):
                raise KeyError(path)
            value, i = value[index], i + 1
        else:
            raise KeyError(path)
    return value


def _has(inputs: Mapping[str, Any], path: str) -> bool:
    try:
        get_field(inputs, path)
    except KeyError:
        return False
    return True


def _shown(paths: Sequence[str]) -> str:
    return ", ".join(paths[:30]) + (" ..." if len(paths) > 30 else "") if paths else "none"


def resolve_mapping(
    variables: Sequence[str],
    rows: Sequence[DatasetRow],
    explicit: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Which input field feeds each template variable.

    A variable takes the field the explicit mapping names, else the top-level field of
    its own name if some row has it; a variable no field provides is left out (see
    :func:`check_mapping`). An empty explicit path means "by name".

    Raises:
        ValidationError: the explicit mapping names a variable the template does not
            have, or a path no row has (the message lists the fields available).
    """
    chosen = {k: v.strip() for k, v in (explicit or {}).items() if v and v.strip()}
    unknown = [k for k in chosen if k not in variables]
    if unknown:
        raise ValidationError(
            f"The mapping names {', '.join(map(repr, unknown))}, which the template does not "
            f"use; its variables: {', '.join(variables) or 'none'}."
        )
    out: dict[str, str] = {}
    for var in variables:
        path = chosen.get(var)
        if path is not None:
            if not any(_has(row.inputs, path) for row in rows):
                raise ValidationError(
                    f"Variable {var!r} is mapped to {path!r}, which no dataset row has. "
                    f"Fields available: {_shown(field_paths(rows))}."
                )
            out[var] = path
        elif any(var in row.inputs for row in rows):
            out[var] = var
    return out


@dataclass(frozen=True)
class MappingCheck:
    """Whether every template variable gets a value on every row."""

    unmapped: tuple[str, ...]
    """Variables no field provides."""
    available: tuple[str, ...]
    """Field paths the rows have (what the variables could map to)."""
    missing_rows: dict[str, tuple[int, tuple[int, ...]]]
    """Variable -> (rows lacking its field, their first line numbers)."""

    @property
    def ok(self) -> bool:
        """True when every variable has a field on every row."""
        return not self.unmapped and not self.missing_rows

    def problems(self) -> list[str]:
        """The problems as sentences that say what to do."""
        out = []
        if self.unmapped:
            out.append(
                f"No dataset field provides template variable(s) {', '.join(self.unmapped)}; "
                f"map them to one of: {_shown(self.available)}."
            )
        for var, (count, lines) in self.missing_rows.items():
            more = " ..." if count > len(lines) else ""
            out.append(
                f"{count} row(s) lack the field for {var!r} (lines "
                f"{', '.join(map(str, lines))}{more}); fix those rows or map {var!r} elsewhere."
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "ok": self.ok,
            "unmapped": list(self.unmapped),
            "available": list(self.available),
            "missing_rows": {
                k: {"count": c, "lines": list(lines)} for k, (c, lines) in self.missing_rows.items()
            },
        }


def check_mapping(
    variables: Sequence[str], rows: Sequence[DatasetRow], mapping: Mapping[str, str]
) -> MappingCheck:
    """Check a mapping against the rows: variables without a field, rows without a value.

    Args:
        variables: The template's variables.
        rows: The dataset rows.
        mapping: Variable -> field path (from :func:`resolve_mapping`).
    """
    unmapped = tuple(v for v in variables if not mapping.get(v))
    missing: dict[str, tuple[int, tuple[int, ...]]] = {}
    for var in variables:
        path = mapping.get(var)
        if not path:
            continue
        lines = [
            row.line if row.line is not None else n
            for n, row in enumerate(rows, start=1)
            if not _has(row.inputs, path)
        ]
        if lines:
            missing[var] = (len(lines), tuple(lines[:SHOWN_LINES]))
    return MappingCheck(unmapped, tuple(field_paths(rows)), missing)


def _is_chat(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value)
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def values_for(row: DatasetRow, mapping: Mapping[str, str]) -> dict[str, str]:
    """The template variable values of one row, as text.

    Strings stay as they are; a list of chat messages becomes ``role: content`` lines;
    anything else is written as JSON.

    Raises:
        ValidationError: the row lacks a mapped field (names the row and the field).
    """
    out = {}
    for var, path in mapping.items():
        try:
            value = get_field(row.inputs, path)
        except KeyError:
            where = f" (line {row.line})" if row.line is not None else ""
            raise ValidationError(
                f"Row {row.id!r}{where} has no field {path!r} for variable {var!r}."
            ) from None
        if _is_chat(value):
            out[var] = "\n".join(f"{m['role']}: {_text(m['content'])}" for m in value)
        else:
            out[var] = _text(value)
    return out


def split_rows(
    rows: Sequence[DatasetRow],
) -> tuple[list[DatasetRow], list[DatasetRow], list[DatasetRow]]:
    """Divide rows into ``(train, val, test)`` by the hash of their ids, keeping order."""
    parts: dict[str, list[DatasetRow]] = {"train": [], "val": [], "test": []}
    for row in rows:
        parts[row.split].append(row)
    return parts["train"], parts["val"], parts["test"]
