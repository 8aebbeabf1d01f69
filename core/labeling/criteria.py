"""Criteria: what reviewers judge, stored as MLflow label schemas.

A criterion is an MLflow ``feedback`` label schema scoped to an experiment. Its name is
also the name of every human label (assessment) given for it and of the LLM judge aligned
on those labels, so MLflow's Reviews page, its assessment filters and alignboard all agree.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.genai import label_schemas as ls

from core.errors import NotFoundError, ValidationError
from core.store import config

Kind = Literal["pass_fail", "categorical", "numeric"]
KINDS: tuple[str, ...] = ("pass_fail", "categorical", "numeric")

# The name becomes a judge name, an assessment name and part of ``feedback.<name>`` search
# filters: an identifier keeps all three working without quoting.
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_TRUE_WORDS = {"true", "pass", "passed", "yes", "y", "1", "ok", "good"}
_FALSE_WORDS = {"false", "fail", "failed", "no", "n", "0", "bad"}
#: Longest instructions accepted (an MLflow experiment tag holds 20,000 characters).
_MAX_INSTRUCTIONS = 20_000
#: MLflow caps a label schema's ``instruction`` at 1,000 characters; judge instructions
#: are often longer. Longer text is kept whole in an experiment tag and the schema gets a
#: shortened copy (what MLflow's review UI shows).
SCHEMA_INSTRUCTION_LIMIT = 1000
INSTRUCTIONS_TAG_PREFIX = "alignboard.instructions."
_ELLIPSIS = " [...]"
#: The template variables an MLflow judge reads (the names of
#: ``core.optimization.spec.TEMPLATE_VARIABLES``; labeling may not import optimization,
#: so a test checks the two agree). Any other ``{{ name }}`` makes MLflow refuse the judge
#: at alignment time, long after the lead wrote it: refuse it when the criterion is written.
TEMPLATE_VARIABLE_NAMES: tuple[str, ...] = ("inputs", "outputs", "expectations", "trace")
# MLflow's own pattern (PROMPT_TEMPLATE_VARIABLE_PATTERN), loosened to catch anything
# between the braces (``{{ my var }}``, ``{{ }}``) so a typo is named rather than ignored.
_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
#: ``update_criterion``: leave this field as it is.
KEEP: Any = object()


@dataclass(frozen=True)
class Criterion:
    """One thing reviewers judge, backed by an MLflow label schema."""

    name: str
    """Identifier; also the assessment name of labels and the judge name."""
    kind: Kind
    """``pass_fail``, ``categorical`` or ``numeric``."""
    instructions: str
    """What reviewers (and the judge) are asked to decide."""
    options: tuple[str, ...] = ()
    """Allowed values of a categorical criterion."""
    min_value: float | None = None
    """Lowest allowed value of a numeric criterion (inclusive), if bounded."""
    max_value: float | None = None
    """Highest allowed value of a numeric criterion (inclusive), if bounded."""
    positive_label: str = "Pass"
    """Display text of ``True`` for a pass/fail criterion."""
    negative_label: str = "Fail"
    """Display text of ``False`` for a pass/fail criterion."""
    schema_id: str | None = None
    """MLflow's id of the label schema."""
    experiment_id: str | None = None
    """The experiment the criterion belongs to."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["options"] = list(self.options)
        return d

    def allowed_values(self) -> str:
        """Describe the values this criterion accepts, for error messages and help text."""
        if self.kind == "pass_fail":
            return (
                f"{self.positive_label} or {self.negative_label} "
                "(also true/false, pass/fail, yes/no)"
            )
        if self.kind == "categorical":
            return "one of " + ", ".join(repr(o) for o in self.options)
        lo = "-inf" if self.min_value is None else _fmt_number(self.min_value)
        hi = "+inf" if self.max_value is None else _fmt_number(self.max_value)
        return f"a number from {lo} to {hi}"


def validate_name(name: Any) -> str:
    """Return ``name`` if it can name a criterion, else raise ValidationError."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValidationError(
            f"Invalid criterion name {name!r}: use 1-64 letters, digits or underscores, "
            "starting with a letter (e.g. 'answer_correct'). The name becomes the judge's name "
            "and the label name in MLflow."
        )
    return name


def check_instructions(instructions: Any) -> str:
    """Return the stripped instructions if a criterion can use them, else raise.

    Raises:
        ValidationError: empty, too long, or a ``{{ variable }}`` MLflow judges do not know.
    """
    text = (instructions if isinstance(instructions, str) else "").strip()
    if not text:
        raise ValidationError(
            "Instructions cannot be empty: say what reviewers (and the judge) decide, "
            "e.g. 'Does {{ outputs }} answer {{ inputs }} correctly?'."
        )
    if len(text) > _MAX_INSTRUCTIONS:
        raise ValidationError(
            f"Instructions are {len(text)} characters; the limit is {_MAX_INSTRUCTIONS}."
        )
    unknown = [
        m.group(0)
        for m in _TEMPLATE_RE.finditer(text)
        if m.group(1).strip() not in TEMPLATE_VARIABLE_NAMES
    ]
    if unknown:
        known = ", ".join("{{ " + v + " }}" for v in TEMPLATE_VARIABLE_NAMES)
        raise ValidationError(
            f"Unknown template variable {', '.join(dict.fromkeys(unknown))} in the "
            f"instructions: a judge can only read {known}. Fix the spelling or remove the braces."
        )
    return text


def create_criterion(
    experiment_id: str,
    name: str,
    kind: str,
    instructions: str,
    options: list[str] | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
    positive_label: str = "Pass",
    negative_label: str = "Fail",
) -> Criterion:
    """Create a criterion (an MLflow feedback label schema) in an experiment.

    Args:
        experiment_id: The experiment.
        name: Identifier (letters, digits, underscores); becomes the judge and label name.
        kind: ``pass_fail``, ``categorical`` or ``numeric``.
        instructions: What reviewers are asked to decide.
        options: Allowed values, for a categorical criterion (at least two, distinct).
        min_value: Optional inclusive lower bound, for a numeric criterion.
        max_value: Optional inclusive upper bound, for a numeric criterion.
        positive_label: Display text of a pass.
        negative_label: Display text of a fail.

    Returns:
        The created criterion.

    Raises:
        ValidationError: bad name, kind, options or instructions (empty, or an unknown
            template variable), or the name is taken; nothing is written.
    """
    config.configure()
    validate_name(name)
    instructions = check_instructions(instructions)
    schema_input = _schema_input(
        kind, options, min_value, max_value, positive_label, negative_label
    )
    if name in {c.name for c in list_criteria(experiment_id)}:
        raise ValidationError(
            f"A criterion named {name!r} already exists in this experiment; choose another name."
        )
    short = _store_instructions(experiment_id, name, instructions)
    try:
        schema = ls.create_label_schema(
            name,
            type="feedback",
            input=schema_input,
            instruction=short or None,
            enable_comment=True,
            experiment_id=str(experiment_id),
        )
    except MlflowException as exc:
        raise ValidationError(f"MLflow refused criterion {name!r}: {exc.message}") from exc
    return _checked(schema, experiment_id)


def _checked(schema: Any, experiment_id: str) -> Criterion:
    crit = _from_schema(schema, _experiment_tags(experiment_id))
    if crit is None:  # pragma: no cover - we just wrote a supported schema
        raise ValidationError(f"MLflow returned an unsupported schema for {schema.name!r}.")
    return crit


def _store_instructions(experiment_id: str, name: str, instructions: str) -> str:
    """Keep long instructions whole in the experiment tag; return the schema's copy.

    A short text removes a long copy left by an earlier version, so the tag never
    outlives the instructions it holds.
    """
    client = MlflowClient()
    key = INSTRUCTIONS_TAG_PREFIX + name
    if len(instructions) > SCHEMA_INSTRUCTION_LIMIT:
        client.set_experiment_tag(str(experiment_id), key, instructions)
        return instructions[: SCHEMA_INSTRUCTION_LIMIT - len(_ELLIPSIS)] + _ELLIPSIS
    if key in _experiment_tags(experiment_id):
        client.delete_experiment_tag(str(experiment_id), key)
    return instructions


def update_criterion(
    experiment_id: str,
    name: str,
    *,
    kind: str | None = None,
    instructions: str | None = None,
    options: list[str] | None = None,
    min_value: Any = KEEP,
    max_value: Any = KEEP,
    positive_label: str | None = None,
    negative_label: str | None = None,
) -> Criterion:
    """Edit a criterion: its MLflow label schema is updated in place and keeps its name.

    Every argument left at its default keeps the criterion's current value (for
    ``min_value`` / ``max_value``, ``None`` means unbounded and ``KEEP`` keeps the bound).

    Changing what a label may be is refused while existing labels would no longer fit:
    another kind once any label exists (the labels would be unreadable; create a new
    criterion instead), a categorical option some label uses, or a numeric range that
    leaves a labeled value outside. With no labels, a change of kind re-creates the
    schema under the same name (MLflow fixes a schema's kind at creation) and moves the
    queues that ask for it to the new schema.

    Raises:
        NotFoundError: no such criterion.
        ValidationError: bad definition or instructions, or a change existing labels
            refuse (the message says which labels); nothing is written.
    """
    config.configure()
    old = get_criterion(experiment_id, name)
    new_kind = old.kind if kind is None else kind
    text = check_instructions(old.instructions if instructions is None else instructions)
    same_kind = new_kind == old.kind
    schema_input = _schema_input(
        new_kind,
        options if options is not None else (list(old.options) if same_kind else None),
        (old.min_value if same_kind else None) if min_value is KEEP else min_value,
        (old.max_value if same_kind else None) if max_value is KEEP else max_value,
        old.positive_label if positive_label is None else positive_label,
        old.negative_label if negative_label is None else negative_label,
    )
    _check_labels_fit(experiment_id, old, new_kind, schema_input)
    short = _store_instructions(experiment_id, name, text)
    try:
        if same_kind:
            schema = ls.update_label_schema(
                str(old.schema_id), instruction=short, input=schema_input
            )
        else:
            schema = _recreate(experiment_id, old, schema_input, short)
    except MlflowException as exc:
        raise ValidationError(f"MLflow refused the edit of {name!r}: {exc.message}") from exc
    return _checked(schema, experiment_id)


def _check_labels_fit(experiment_id: str, old: Criterion, new_kind: str, schema_input: Any) -> None:
    """Refuse a definition the criterion's existing labels would not fit."""
    # labels imports this module: import it here, where it is needed.
    from core.labeling.labels import current_labels

    labels = current_labels(experiment_id, criterion=old.name)
    if not labels:
        return
    if new_kind != old.kind:
        raise ValidationError(
            f"Criterion {old.name!r} already has {len(labels)} label(s) as {old.kind}; its kind "
            f"cannot change to {new_kind} without making them unreadable. Create a new "
            "criterion instead."
        )
    if new_kind == "categorical":
        used: dict[str, int] = {}
        for lab in labels:
            used[str(lab.value)] = used.get(str(lab.value), 0) + 1
        gone = {v: n for v, n in used.items() if v not in schema_input.options}
        if gone:
            listed = ", ".join(f"{v!r} ({n} label(s))" for v, n in sorted(gone.items()))
            raise ValidationError(
                f"Existing labels of {old.name!r} use option(s) {listed}; keep those options "
                "(you may add new ones)."
            )
    if new_kind == "numeric":
        lo, hi = schema_input.min_value, schema_input.max_value
        out = [
            float(lab.value)
            for lab in labels
            if isinstance(lab.value, int | float)
            and ((lo is not None and lab.value < lo) or (hi is not None and lab.value > hi))
        ]
        if out:
            shown = ", ".join(_fmt_number(v) for v in sorted(set(out))[:5])
            raise ValidationError(
                f"{len(out)} existing label(s) of {old.name!r} fall outside the new range "
                f"(values {shown}); widen the range to include them."
            )


def _recreate(experiment_id: str, old: Criterion, schema_input: Any, short: str) -> Any:
    """A new schema of another kind under the same name; queues follow it."""
    from mlflow.genai import review_queues as rq

    ls.delete_label_schema(schema_id=str(old.schema_id))
    schema = ls.create_label_schema(
        old.name,
        type="feedback",
        input=schema_input,
        instruction=short or None,
        enable_comment=True,
        experiment_id=str(experiment_id),
    )
    token = None
    while True:
        page = rq.list_review_queues(
            experiment_id=str(experiment_id), max_results=100, page_token=token
        )
        for q in page:
            if old.schema_id in q.schema_ids:
                ids = [schema.schema_id if s == old.schema_id else s for s in q.schema_ids]
                rq.update_review_queue(q.queue_id, schema_ids=ids)
        token = page.token
        if not token:
            break
    return schema


def _schema_input(kind, options, min_value, max_value, positive_label, negative_label):
    if kind == "pass_fail":
        pos, neg = (positive_label or "").strip(), (negative_label or "").strip()
        if not pos or not neg or pos.lower() == neg.lower():
            raise ValidationError("positive_label and negative_label must be two different words.")
        return ls.InputPassFail(positive_label=pos, negative_label=neg)
    if kind == "categorical":
        opts = [str(o).strip() for o in (options or [])]
        if len(opts) < 2 or any(not o for o in opts):
            raise ValidationError(
                "A categorical criterion needs at least two non-empty options, "
                "e.g. options=['good', 'partial', 'bad']."
            )
        if len({o.lower() for o in opts}) != len(opts):
            raise ValidationError(f"Options must differ (ignoring case): {opts}.")
        return ls.InputCategorical(options=opts)
    if kind == "numeric":
        for label, v in (("min_value", min_value), ("max_value", max_value)):
            if v is not None and (isinstance(v, bool) or not math.isfinite(float(v))):
                raise ValidationError(f"{label} must be a finite number, got {v!r}.")
        if min_value is not None and max_value is not None and float(min_value) >= float(max_value):
            raise ValidationError(f"min_value ({min_value}) must be below max_value ({max_value}).")
        return ls.InputNumeric(
            min_value=None if min_value is None else float(min_value),
            max_value=None if max_value is None else float(max_value),
        )
    raise ValidationError(f"Unknown criterion kind {kind!r}: use one of {', '.join(KINDS)}.")


def _experiment_tags(experiment_id: str) -> dict[str, str]:
    return MlflowClient().get_experiment(str(experiment_id)).tags


def _full_instructions(schema: Any, tags: dict[str, str]) -> str:
    short = schema.instruction or ""
    full = tags.get(INSTRUCTIONS_TAG_PREFIX + schema.name)
    # Use the long copy only while the schema still shows its shortened form: if someone
    # edited the instruction in MLflow since, the schema is the truth.
    if full and short.endswith(_ELLIPSIS) and full.startswith(short[: -len(_ELLIPSIS)]):
        return full
    return short


def _from_schema(schema: Any, tags: dict[str, str]) -> Criterion | None:
    """Map an MLflow label schema to a Criterion; None for kinds alignboard does not use."""
    if str(schema.type) != "feedback":
        return None
    inp = schema.input
    common = {
        "name": schema.name,
        "instructions": _full_instructions(schema, tags),
        "schema_id": schema.schema_id,
        "experiment_id": None if schema.experiment_id is None else str(schema.experiment_id),
    }
    if isinstance(inp, ls.InputPassFail):
        return Criterion(
            kind="pass_fail",
            positive_label=inp.positive_label,
            negative_label=inp.negative_label,
            **common,
        )
    if isinstance(inp, ls.InputCategorical) and not inp.multi_select:
        return Criterion(kind="categorical", options=tuple(inp.options), **common)
    if isinstance(inp, ls.InputNumeric):
        return Criterion(kind="numeric", min_value=inp.min_value, max_value=inp.max_value, **common)
    return None


def list_criteria(experiment_id: str) -> list[Criterion]:
    """Return the experiment's criteria, sorted by name.

    Label schemas of other types (expectations, free text, multi-select) are not criteria
    and are left out.
    """
    config.configure()
    out: list[Criterion] = []
    tags = _experiment_tags(experiment_id)
    token = None
    while True:
        page = ls.list_label_schemas(str(experiment_id), max_results=100, page_token=token)
        out.extend(c for c in (_from_schema(s, tags) for s in page) if c is not None)
        token = page.token
        if not token:
            break
    return sorted(out, key=lambda c: c.name)


def get_criterion(experiment_id: str, name: str) -> Criterion:
    """Return the criterion called ``name``.

    Raises:
        NotFoundError: no such criterion (the message lists the ones that exist).
    """
    crits = list_criteria(experiment_id)
    for c in crits:
        if c.name == name:
            return c
    names = ", ".join(c.name for c in crits) or "none"
    raise NotFoundError(
        f"No criterion named {name!r} in this experiment. Existing criteria: {names}. "
        "Create it with: alignboard criterion create --experiment EXPERIMENT "
        f"--name {name} --kind pass_fail --instructions '...'"
    )


def normalize_value(criterion: Criterion, raw: Any) -> bool | str | float:
    """Turn a user-supplied value into the canonical stored value for ``criterion``.

    Pass/fail becomes a bool (accepting true/false, pass/fail, yes/no and the criterion's
    own labels, any case); categorical becomes the matching option (exact, else ignoring
    case); numeric becomes a float within the range.

    Raises:
        ValidationError: the value is not allowed; the message says what is.
    """
    if criterion.kind == "pass_fail":
        result = _to_bool(criterion, raw)
        if result is not None:
            return result
    elif criterion.kind == "categorical":
        if isinstance(raw, str):
            text = raw.strip()
            if text in criterion.options:
                return text
            matches = [o for o in criterion.options if o.lower() == text.lower()]
            if len(matches) == 1:
                return matches[0]
    elif criterion.kind == "numeric":
        number = _to_float(raw)
        if number is not None:
            too_low = criterion.min_value is not None and number < criterion.min_value
            too_high = criterion.max_value is not None and number > criterion.max_value
            if not (too_low or too_high):
                return number
    raise ValidationError(
        f"Invalid value {raw!r} for criterion {criterion.name!r} ({criterion.kind}): "
        f"use {criterion.allowed_values()}."
    )


def _to_bool(criterion: Criterion, raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE_WORDS or text == criterion.positive_label.lower():
            return True
        if text in _FALSE_WORDS or text == criterion.negative_label.lower():
            return False
    return None


def _to_float(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        number = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def display_value(criterion: Criterion, value: Any) -> str:
    """Return how a stored value reads in the UI (``Pass``, ``partial``, ``4``)."""
    if value is None:
        return ""
    if criterion.kind == "pass_fail":
        b = _to_bool(criterion, value)
        if b is None:
            return str(value)
        return criterion.positive_label if b else criterion.negative_label
    if criterion.kind == "numeric":
        number = _to_float(value)
        return str(value) if number is None else _fmt_number(number)
    return str(value)


def _fmt_number(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"
