"""What one import record is, and how a record is validated.

Validation never stops at the first problem: every problem of every row is collected
with its line number, so a user fixes a file in one pass. File formats live in
:mod:`core.io.formats`; the write path in :mod:`core.io.importer`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_TRACE_TAG_VAL_LENGTH, _validate_trace_tag

from core.errors import ImportFileError, RowError, ValidationError
from core.io.span_records import ImportSpan, check_spans
from core.labeling.criteria import Criterion, normalize_value, validate_name
from core.labeling.labels import MAX_RATIONALE_CHARS, MAX_REVIEWER_CHARS, check_rationale

#: Largest inputs, outputs or expectations of one record, as UTF-8 JSON.
MAX_FIELD_BYTES = 256 * 1024
#: Most labels one trace may carry in a file.
MAX_LABELS_PER_RECORD = 1_000
#: Most tags one trace may carry in a file.
MAX_TAGS_PER_RECORD = 100
MAX_ID_CHARS = 250
MAX_NAME_CHARS = 250
#: Earliest and latest record timestamp accepted (epoch ms): 1973-03-03 (a smaller number is
#: almost surely seconds, not milliseconds) to 9999-12-31.
MIN_TIMESTAMP_MS = 100_000_000_000
MAX_TIMESTAMP_MS = 253_402_300_799_999
#: Tag keys alignboard writes itself.
RESERVED_TAG_PREFIXES = ("mlflow.", "alignboard.")

RECORD_FIELDS = (
    "id",
    "name",
    "timestamp",
    "inputs",
    "outputs",
    "expectations",
    "tags",
    "labels",
    "spans",
)
LABEL_FIELDS = ("criterion", "value", "rationale", "reviewer", "instructions")
#: How an unknown criterion's error starts (the import notices it and offers to create it).
UNKNOWN_CRITERION = "unknown criterion"
#: Most distinct values a categorical criterion inferred from a file may have: more is
#: almost surely free text or ids, not categories.
MAX_INFERRED_OPTIONS = 20
#: Instructions of a criterion an import creates when the file gives none.
PLACEHOLDER_INSTRUCTIONS = (
    "TODO: created by an import without instructions. Lead: replace this text with what "
    "reviewers (and the judge) are asked to decide for {name}."
)


@dataclass(frozen=True)
class ImportLabel:
    """One validated label of an import record."""

    criterion: str
    value: Any
    """Canonical value (already normalised for the criterion)."""
    reviewer: str
    rationale: str | None
    line: int
    """Line in the file it came from."""
    instructions: str | None = None
    """The criterion's instructions, if the label carries them (used only when the
    import creates the criterion)."""


@dataclass
class ImportRecord:
    """One validated trace of an import file."""

    line: int
    """Line in the file where the record starts."""
    source_id: str | None
    """The record's ``id``, if any."""
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    expectations: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    labels: list[ImportLabel] = field(default_factory=list)
    name: str | None = None
    """Root span name (default ``alignboard_import``)."""
    spans: list[ImportSpan] = field(default_factory=list)
    """The trace's spans, root first (pre-order); empty for a trace of one span."""
    timestamp_ms: int | None = None
    """The trace's request time (epoch ms) from the record's ``timestamp``, if given."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class ParsedImport:
    """Result of validating a file: the records, or every problem found."""

    path: str
    records: list[ImportRecord]
    errors: list[RowError]
    criteria_checked: bool = True
    """False when no experiment was given, so label criteria could not be checked."""

    @property
    def ok(self) -> bool:
        """Whether the file can be imported as is."""
        return not self.errors

    @property
    def label_count(self) -> int:
        """Labels across all records."""
        return sum(len(r.labels) for r in self.records)

    def raise_if_errors(self) -> None:
        """Raise ImportFileError listing every bad row, if there is any."""
        if self.errors:
            raise ImportFileError(self.path, list(self.errors))


class RowErrors:
    """Collects the errors of one file."""

    def __init__(self) -> None:
        self.errors: list[RowError] = []

    def add(self, line: int, reason: str) -> None:
        """Record a problem on ``line``."""
        self.errors.append(RowError(line, reason))


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))


def _check_size(errs: RowErrors, line: int, name: str, value: Any) -> bool:
    size = _json_size(value)
    if size > MAX_FIELD_BYTES:
        errs.add(
            line,
            f"{name} is {size // 1024} KiB; the limit is {MAX_FIELD_BYTES // 1024} KiB per field",
        )
        return False
    return True


def _coerce_io(errs: RowErrors, line: int, name: str, value: Any, text_key: str) -> dict | None:
    if value is None:
        errs.add(line, f"missing {name} (required: a JSON object or a string)")
        return None
    if isinstance(value, str):
        value = {text_key: value}
    if not isinstance(value, dict):
        errs.add(line, f"{name} must be a JSON object or a string, got {_type(value)}")
        return None
    return value if _check_size(errs, line, name, value) else None


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _check_tags(errs: RowErrors, line: int, tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        errs.add(line, f"tags must be an object of string -> string, got {_type(tags)}")
        return {}
    if len(tags) > MAX_TAGS_PER_RECORD:
        errs.add(line, f"{len(tags)} tags; the limit is {MAX_TAGS_PER_RECORD} per trace")
        return {}
    out = {}
    for k, v in tags.items():
        if not isinstance(v, str):
            errs.add(line, f"tag {k!r} must have a string value, got {_type(v)}")
            continue
        if k.startswith(RESERVED_TAG_PREFIXES):
            errs.add(line, f"tag {k!r} is reserved (keys starting with mlflow. or alignboard.)")
            continue
        if len(v) > MAX_TRACE_TAG_VAL_LENGTH:
            errs.add(line, f"tag {k!r} value is {len(v)} characters; MLflow keeps at most 8000")
            continue
        try:
            _validate_trace_tag(k, v)
        except MlflowException as exc:
            errs.add(line, f"invalid tag key {k!r}: {exc.message}")
            continue
        out[k] = v
    return out


def _check_label(
    errs: RowErrors, line: int, raw: Any, criteria: dict[str, Criterion] | None
) -> ImportLabel | None:
    if not isinstance(raw, dict):
        errs.add(
            line, f"each label must be an object with criterion, value, reviewer; got {_type(raw)}"
        )
        return None
    unknown = sorted(set(raw) - set(LABEL_FIELDS))
    if unknown:
        errs.add(line, f"unknown label field(s) {unknown}; allowed: {', '.join(LABEL_FIELDS)}")
        return None
    crit_name, value, reviewer = raw.get("criterion"), raw.get("value"), raw.get("reviewer")
    ok = True
    if not isinstance(crit_name, str) or not crit_name.strip():
        errs.add(line, "label is missing its criterion")
        ok = False
    if value is None or (isinstance(value, str) and not value.strip()):
        errs.add(line, f"label for criterion {crit_name!r} is missing its value")
        ok = False
    if not isinstance(reviewer, str) or not reviewer.strip():
        errs.add(line, f"label for criterion {crit_name!r} is missing its reviewer")
        ok = False
    elif len(reviewer.strip()) > MAX_REVIEWER_CHARS:
        errs.add(line, f"reviewer name is longer than {MAX_REVIEWER_CHARS} characters")
        ok = False
    rationale = raw.get("rationale")
    try:
        rationale = check_rationale(rationale)
    except ValidationError:
        if isinstance(rationale, str):
            errs.add(
                line,
                f"rationale is {len(rationale)} characters; the limit is {MAX_RATIONALE_CHARS}",
            )
        else:
            errs.add(line, f"rationale must be a string, got {_type(rationale)}")
        ok = False
    instructions = raw.get("instructions")
    if instructions is not None and (
        not isinstance(instructions, str) or len(instructions) > MAX_RATIONALE_CHARS
    ):
        errs.add(
            line, f"label instructions must be a string of at most {MAX_RATIONALE_CHARS} characters"
        )
        ok = False
    if not ok:
        return None
    assert isinstance(crit_name, str) and isinstance(reviewer, str)  # checked above
    crit_name = crit_name.strip()
    if criteria is not None:
        crit = criteria.get(crit_name)
        if crit is None:
            known = ", ".join(sorted(criteria)) or "none"
            errs.add(
                line,
                f"{UNKNOWN_CRITERION} {crit_name!r} (existing: {known}); create it first: "
                f"alignboard criterion create --experiment EXPERIMENT --name {crit_name} "
                "--kind pass_fail|categorical|numeric --instructions '...'; or let the import "
                "create it from the file's values: alignboard import --create-criteria "
                '(Traces page: tick "Create missing criteria")',
            )
            return None
        try:
            value = normalize_value(crit, value)
        except ValidationError as exc:
            errs.add(line, str(exc))
            return None
    return ImportLabel(
        crit_name,
        value,
        reviewer.strip(),
        rationale,
        line,
        (instructions.strip() or None) if isinstance(instructions, str) else None,
    )


def check_record(
    errs: RowErrors, line: int, obj: Any, criteria: dict[str, Criterion] | None
) -> ImportRecord | None:
    """Validate one parsed record; return it, or None after adding its problems to ``errs``.

    Args:
        errs: Where problems go.
        line: The record's line in the file.
        obj: The parsed JSON value.
        criteria: Known criteria by name; None skips criterion and value checks.
    """
    if not isinstance(obj, dict):
        errs.add(line, f"expected a JSON object, got {_type(obj)}")
        return None
    before = len(errs.errors)
    unknown = sorted(set(obj) - set(RECORD_FIELDS))
    if unknown:
        errs.add(line, f"unknown field(s) {unknown}; allowed: {', '.join(RECORD_FIELDS)}")
    source_id = obj.get("id")
    if source_id is not None and (not isinstance(source_id, str) or not source_id.strip()):
        errs.add(line, f"id must be a non-empty string, got {_type(source_id)}")
    elif isinstance(source_id, str) and len(source_id) > MAX_ID_CHARS:
        errs.add(line, f"id is longer than {MAX_ID_CHARS} characters")
    name = obj.get("name")
    if name is not None and (
        not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS
    ):
        errs.add(line, f"name must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    timestamp_ms = _check_timestamp(errs, line, obj.get("timestamp"))
    spans: list[ImportSpan] = []
    if "spans" in obj:
        checked = check_spans(
            lambda reason: errs.add(line, reason),
            source_id.strip() if isinstance(source_id, str) else None,
            obj["spans"],
        )
        spans = checked or []
    if spans:
        inputs, outputs, name = _root_fields(errs, line, obj, spans)
    elif "spans" in obj:
        # Bad spans were reported; inputs/outputs may have been meant to come from the root.
        inputs = outputs = {}
        for key, text_key in (("inputs", "question"), ("outputs", "response")):
            if obj.get(key) is not None:
                _coerce_io(errs, line, key, obj[key], text_key)
    else:
        inputs = _coerce_io(errs, line, "inputs", obj.get("inputs"), "question")
        outputs = _coerce_io(errs, line, "outputs", obj.get("outputs"), "response")
    expectations = obj.get("expectations")
    if expectations is None:
        expectations = {}
    elif not isinstance(expectations, dict):
        errs.add(line, f"expectations must be a JSON object, got {_type(expectations)}")
    else:
        _check_size(errs, line, "expectations", expectations)
    tags = _check_tags(errs, line, obj.get("tags"))
    raw_labels = obj.get("labels")
    labels: list[ImportLabel] = []
    if raw_labels is not None:
        if not isinstance(raw_labels, list):
            errs.add(line, f"labels must be an array, got {_type(raw_labels)}")
        elif len(raw_labels) > MAX_LABELS_PER_RECORD:
            errs.add(
                line, f"{len(raw_labels)} labels; the limit is {MAX_LABELS_PER_RECORD} per trace"
            )
        else:
            for raw in raw_labels:
                lab = _check_label(errs, line, raw, criteria)
                if lab is not None:
                    labels.append(lab)
    check_duplicate_labels(errs, labels)
    if len(errs.errors) > before:
        return None
    # _coerce_io returns None only after adding an error.
    assert inputs is not None and outputs is not None
    return ImportRecord(
        line=line,
        source_id=source_id.strip() if isinstance(source_id, str) else None,
        inputs=inputs,
        outputs=outputs,
        expectations=expectations,
        tags=tags,
        labels=labels,
        name=name.strip() if isinstance(name, str) else None,
        spans=spans,
        timestamp_ms=timestamp_ms,
    )


def _check_timestamp(errs: RowErrors, line: int, value: Any) -> int | None:
    """The record's request time as epoch ms: ISO-8601 (UTC unless it says) or epoch ms."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            errs.add(
                line,
                f"timestamp {value[:40]!r} is not ISO-8601 (e.g. 2026-03-02T14:05:00Z) "
                "nor a number of epoch milliseconds",
            )
            return None
        if when.tzinfo is None:
            # A time without a zone is read as UTC, the zone tracing backends export in.
            when = when.replace(tzinfo=UTC)
        ms = int(when.timestamp() * 1000)
    elif isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        errs.add(
            line,
            f"timestamp must be an ISO-8601 string or epoch milliseconds, got {_type(value)}",
        )
        return None
    else:
        ms = int(value)
    if not MIN_TIMESTAMP_MS <= ms <= MAX_TIMESTAMP_MS:
        hint = " (seconds? give milliseconds)" if 0 < ms < MIN_TIMESTAMP_MS else ""
        errs.add(line, f"timestamp {value!r} is out of range{hint}: 1973 to 9999 accepted")
        return None
    return ms


def _root_fields(
    errs: RowErrors, line: int, obj: dict[str, Any], spans: list[ImportSpan]
) -> tuple[dict | None, dict | None, Any]:
    """The record's inputs, outputs and name, which are its root span's.

    Given once (on the record or on the root span) they are taken from where they are;
    given twice they must agree, so nothing a file says is silently dropped.
    """
    root = spans[0]
    found: dict[str, dict | None] = {}
    for key, text_key, has in (
        ("inputs", "question", root.has_inputs),
        ("outputs", "response", root.has_outputs),
    ):
        top = obj.get(key)
        own = root.inputs if key == "inputs" else root.outputs
        if top is not None and has and own is not None:
            a = _coerce_io(errs, line, key, top, text_key)
            b = _coerce_io(RowErrors(), line, key, own, text_key)
            if a is not None and a != b:
                errs.add(
                    line,
                    f"{key} differs from the root span's {key}; the record's {key} are the "
                    "root span's: give them once (on the record or on the root span)",
                )
                a = None
            found[key] = a
        elif top is not None:
            found[key] = _coerce_io(errs, line, key, top, text_key)
        else:
            found[key] = _coerce_io(
                errs, line, f"{key} (of the record or its root span)", own, text_key
            )
    name = obj.get("name")
    if name is not None and isinstance(name, str) and name.strip() != root.name:
        errs.add(
            line,
            f"name {name.strip()!r} differs from the root span's name {root.name!r}; "
            "the record's name is its root span's: give it once",
        )
    spans[0] = replace(root, inputs=found["inputs"], outputs=found["outputs"])
    return found["inputs"], found["outputs"], name if name is not None else root.name


def check_duplicate_labels(errs: RowErrors, labels: list[ImportLabel]) -> None:
    """Report a second label by the same reviewer for the same criterion on one trace."""
    seen: dict[tuple[str, str], int] = {}
    for lab in labels:
        key = (lab.criterion, lab.reviewer)
        if key in seen:
            errs.add(
                lab.line,
                f"duplicate label: reviewer {lab.reviewer!r} already labels criterion "
                f"{lab.criterion!r} for this trace (line {seen[key]}); keep one",
            )
        else:
            seen[key] = lab.line


def decode_lines(errs: RowErrors, data: bytes) -> list[tuple[int, str]]:
    """Split into (line number, text); undecodable lines are reported, not returned."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        try:
            out.append((i, raw.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as exc:
            errs.add(
                i,
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}; "
                "save the file as UTF-8",
            )
    return out


# ---- criteria an import creates ---------------------------------------------------------


@dataclass(frozen=True)
class NewCriterion:
    """A criterion an import would create, inferred from the values its file gives."""

    name: str
    kind: str
    """``pass_fail``, ``categorical`` or ``numeric``."""
    instructions: str
    """From the file, else :data:`PLACEHOLDER_INSTRUCTIONS` (for the lead to edit)."""
    options: tuple[str, ...] = ()
    """A categorical criterion's options: the distinct values, in first-seen order."""
    min_value: float | None = None
    """A numeric criterion's lowest observed value (its range's lower bound)."""
    max_value: float | None = None
    """A numeric criterion's highest observed value (its range's upper bound)."""
    labels: int = 0
    """Labels in the file for it."""
    instructions_from_file: bool = False

    def describe(self) -> str:
        """What the criterion accepts, in a few words (for the preview)."""
        if self.kind == "categorical":
            return "options: " + ", ".join(self.options)
        if self.kind == "numeric":
            if self.min_value is None or self.max_value is None:
                return "any number"
            return f"range: {_fmt(self.min_value)} to {_fmt(self.max_value)}"
        return "Pass / Fail"

    def criterion(self, experiment_id: str | None = None) -> Criterion:
        """The criterion as it will be created (no schema id yet), to check values with."""
        return Criterion(
            name=self.name,
            kind=self.kind,  # type: ignore[arg-type]  # one of KINDS by construction
            instructions=self.instructions,
            options=self.options,
            min_value=self.min_value,
            max_value=self.max_value,
            experiment_id=experiment_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["options"] = list(self.options)
        return d


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


_PASS_FAIL_WORDS = frozenset(
    {
        "true",
        "false",
        "pass",
        "passed",
        "fail",
        "failed",
        "yes",
        "no",
        "y",
        "n",
        "ok",
        "good",
        "bad",
    }
)


def _value_class(value: Any) -> str:
    """``bool``, ``number`` or ``word`` (a pass/fail word is ``passfail``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number == number and abs(number) != float("inf"):
        return "number"
    return "passfail" if text.lower() in _PASS_FAIL_WORDS else "word"


def infer_criterion(name: str, values: list[Any], instructions: list[str]) -> NewCriterion:
    """Infer a new criterion's kind from every value a file gives for it.

    Rule: only booleans and pass/fail words (pass, fail, yes, no, true, false, ...) make a
    pass/fail criterion; only numbers (JSON numbers or numeric text, as in CSV) make a
    numeric one whose range is the observed min to max; only words make a categorical one
    whose options are the distinct values (first spelling seen; at most
    :data:`MAX_INFERRED_OPTIONS`, at least two). Anything else is refused.

    Args:
        name: The criterion's name (must be a valid criterion name).
        values: Its label values, as the file gives them.
        instructions: Instructions the file's labels carry for it (all must agree).

    Raises:
        ValidationError: the name is invalid, the values mix kinds, there are too many or
            too few categories, or the instructions differ; the message says what to do.
    """
    validate_name(name)
    distinct_instructions = list(dict.fromkeys(i for i in instructions if i))
    if len(distinct_instructions) > 1:
        raise ValidationError(
            f"Criterion {name!r}: the file gives {len(distinct_instructions)} different "
            "instructions for it; give the same instructions on every label (or on one)."
        )
    text = (
        distinct_instructions[0]
        if distinct_instructions
        else PLACEHOLDER_INSTRUCTIONS.format(name=name)
    )
    classes = {_value_class(v) for v in values}
    common: dict[str, Any] = {
        "name": name,
        "instructions": text,
        "labels": len(values),
        "instructions_from_file": bool(distinct_instructions),
    }
    if not values:
        raise ValidationError(f"Criterion {name!r}: the file has no values to infer its kind from.")
    if classes <= {"bool", "passfail"}:
        return NewCriterion(kind="pass_fail", **common)
    if classes == {"number"}:
        numbers = [float(v) for v in values]
        lo, hi = min(numbers), max(numbers)
        if lo == hi:
            # One observed value is no range: leave it open rather than refuse every other.
            return NewCriterion(kind="numeric", **common)
        return NewCriterion(kind="numeric", min_value=lo, max_value=hi, **common)
    if classes <= {"word", "passfail"}:
        options: dict[str, str] = {}
        for v in values:
            options.setdefault(str(v).strip().lower(), str(v).strip())
        if len(options) > MAX_INFERRED_OPTIONS:
            raise ValidationError(
                f"Criterion {name!r}: the file gives {len(options)} different values; a "
                f"categorical criterion inferred from a file takes at most "
                f"{MAX_INFERRED_OPTIONS}. These look like free text: create the criterion "
                "yourself (alignboard criterion create) or fix the values."
            )
        if len(options) < 2:
            only = next(iter(options.values()))
            raise ValidationError(
                f"Criterion {name!r}: every label says {only!r}; a categorical criterion "
                "needs at least two options. Create it yourself with its options "
                "(alignboard criterion create --kind categorical --options ...)."
            )
        return NewCriterion(kind="categorical", options=tuple(options.values()), **common)
    seen = sorted(
        {"bool": "booleans", "passfail": "pass/fail words", "number": "numbers", "word": "words"}[c]
        for c in classes
    )
    raise ValidationError(
        f"Criterion {name!r}: the file's values mix kinds ({', '.join(seen)}), so its kind "
        "cannot be inferred. Use one kind of value (pass/fail, numbers or category words), "
        "or create the criterion yourself first."
    )
