"""What the Optimize page offers: prompt and judge references, dataset sources, fields.

The page builds its settings with
:func:`core.optimization.prompt_preflight.build_prompt_settings` and checks them with
``check_prompt_optimization``; this module only lists the choices the form shows (every
registered prompt version and alias, every registered judge version and alias, the
experiment's MLflow evaluation datasets) and reads a dataset's field paths for the
variable mapping, so the page holds no logic of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import NotFoundError, ValidationError
from core.store import config

#: Dataset source kinds, as the page names them (``core.io.prompt_data.parse_source``).
SOURCE_KINDS: dict[str, str] = {
    "dataset": "An MLflow evaluation dataset",
    "experiment": "Inputs of this experiment's traces",
    "file": "A JSONL or CSV file",
}
#: Optimizers for prompts, as the page names them.
OPTIMIZER_LABELS: dict[str, str] = {
    "gepa": "GEPA: reflective (ours; reads each judge's rationale)",
    "mlflow-gepa": "MLflow GEPA (mlflow.genai.optimize_prompts baseline)",
    "metaprompt": "MLflow MetaPrompt (baseline)",
}
#: Built-in scorers, as the page names them.
SCORER_LABELS: dict[str, str] = {
    "correctness": "Correctness (MLflow; uses expected_facts / expected_response)",
    "exact_match": "Exact match against expected_response",
}
#: Application models that are stand-ins, not LLMs.
DEMO_PREFIX = "demo:/"
#: What the page says wherever the demo application model is selected.
DEMO_APP_NOTE = (
    "demo:/app is a deterministic stand-in application, not an LLM: it follows the prompt's "
    'explicit rules ("Never ...", "Always ...") and otherwise a few fixed habits, so '
    "the dashboard runs offline. Its scores say nothing about a real application."
)


@dataclass(frozen=True)
class RefChoice:
    """One reference a picker offers: ``name@production`` or ``name@3``."""

    ref: str
    """What is passed on (``name@alias``, ``name@3``)."""
    label: str
    """How the picker shows it (``production -> v1``, ``v3``)."""
    version: int
    """The version it names now."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class DatasetFields:
    """What a dataset source provides, for the variable mapping."""

    source: str
    """The source text (``dataset:NAME``, ``experiment:NAME``, a path)."""
    rows: int = 0
    """Rows read."""
    paths: tuple[str, ...] = ()
    """Dotted input field paths, in order of first appearance."""
    with_expectations: int = 0
    """Rows carrying expectations (what Correctness and exact match need)."""
    error: str | None = None
    """Why the source could not be read (then nothing else is set)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class PromptChoiceView:
    """The chosen prompt version as the mapping needs it."""

    name: str
    version: int
    template: str
    """The template text (a chat template as ``role: content`` blocks)."""
    variables: tuple[str, ...] = ()
    """Template variables, in order of first appearance."""
    is_chat: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _client():
    from mlflow import MlflowClient

    config.configure()
    return MlflowClient()


def prompt_names() -> list[str]:
    """Every prompt in MLflow's Prompt Registry, by name."""
    from core.store.prompts import list_prompts

    return list_prompts()


def prompt_refs(name: str) -> list[RefChoice]:
    """A prompt's aliases (``production`` first), then its versions, newest first."""
    from core.store.prompts import list_prompt_versions

    versions = list_prompt_versions(name)
    aliases = sorted(
        ((a, v.version) for v in versions for a in v.aliases),
        key=lambda av: (av[0] != "production", av[0]),
    )
    out = [RefChoice(f"{name}@{a}", f"{a} -> v{v}", v) for a, v in aliases]
    out += [
        RefChoice(f"{name}@{v.version}", f"v{v.version}", v.version)
        for v in sorted(versions, key=lambda v: -v.version)
    ]
    return out


def prompt_choice(ref: str) -> PromptChoiceView:
    """The prompt version ``ref`` names now.

    Raises:
        NotFoundError: no such prompt, version or alias.
        ValidationError: a malformed reference.
    """
    from core.store.prompts import load_prompt

    info = load_prompt(ref)
    return PromptChoiceView(
        info.name, info.version, info.text(), tuple(info.variables), info.is_chat, info.aliases
    )


def judge_refs(experiment_id: str) -> list[RefChoice]:
    """Every registered judge of the experiment: its aliases first, then its versions."""
    from core.optimization.registry import list_judges, list_versions

    out: list[RefChoice] = []
    for name in list_judges(experiment_id):
        versions = list_versions(experiment_id, name)
        aliases = sorted(
            ((a, v.version) for v in versions for a in v.aliases),
            key=lambda av: (av[0] != "production", av[0]),
        )
        out += [RefChoice(f"{name}@{a}", f"{name}: {a} -> v{v}", v) for a, v in aliases]
        out += [
            RefChoice(f"{name}@{v.version}", f"{name}: v{v.version}", v.version)
            for v in sorted(versions, key=lambda v: -v.version)
        ]
    return out


def default_judges(choices: Sequence[RefChoice]) -> list[str]:
    """What the judge picker starts with: each judge's ``production`` alias, else nothing."""
    return [c.ref for c in choices if c.ref.endswith("@production")]


def eval_datasets(experiment_id: str) -> list[str]:
    """Names of the MLflow evaluation datasets linked to the experiment, sorted."""
    try:
        page = _client().search_datasets(experiment_ids=[str(experiment_id)], max_results=100)
    except Exception:
        # A store without evaluation-dataset tables (an old server) simply offers none.
        return []
    return sorted({d.name for d in page})


def source_text(kind: str, *, dataset: str = "", experiment: str = "", path: str = "") -> str:
    """The dataset source text of the form's choice (``dataset:NAME``, ...)."""
    if kind == "dataset":
        return f"dataset:{dataset}" if dataset else ""
    if kind == "experiment":
        return f"experiment:{experiment}" if experiment else ""
    return path.strip()


def parse_tag_filter(text: str) -> dict[str, str]:
    """``key=value, key2=value2`` as a dict.

    Raises:
        ValidationError: a part without ``=``.
    """
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValidationError(
                f"Tag filter {part!r} is not key=value; write e.g. topic=returns, "
                "several separated by commas."
            )
        out[key.strip()] = value.strip()
    return out


def dataset_fields(
    source: str, queue: str | None = None, tags: Mapping[str, str] | None = None
) -> DatasetFields:
    """The rows and input field paths of a dataset source (errors as data, for the form)."""
    from core.io.prompt_data import field_paths, load_rows, parse_source

    if not source:
        return DatasetFields(source, error="Choose a dataset source.")
    try:
        rows = load_rows(parse_source(source, queue=queue or None, tags=tags or None))
    except (ValidationError, NotFoundError) as exc:
        return DatasetFields(source, error=str(exc))
    return DatasetFields(
        source,
        rows=len(rows),
        paths=tuple(field_paths(rows)),
        with_expectations=sum(1 for r in rows if r.expectations),
    )


def default_field(variable: str, paths: Sequence[str]) -> str | None:
    """The field a variable maps to unless the user picks another: the same-named one."""
    return variable if variable in paths else None


def uses_demo(models: Sequence[str]) -> bool:
    """True when any of ``models`` is a demo stand-in."""
    return any((m or "").strip().startswith(DEMO_PREFIX) for m in models)


def dataset_name_for(filename: str) -> str:
    """The evaluation dataset name an uploaded file gets by default (its stem)."""
    from pathlib import Path

    return Path(filename or "upload").stem.strip() or "upload"


def save_upload_as_dataset(payload: bytes, filename: str, name: str, *, experiment_id: str) -> str:
    """Store an uploaded JSONL/CSV file as an MLflow evaluation dataset of the experiment.

    The rows go to MLflow rather than to a file on this server, so a job on any worker
    host reads the same rows (``dataset:NAME``).

    Returns:
        The source text to optimize on: ``dataset:NAME``.

    Raises:
        ValidationError: an unreadable file (naming its bad lines), a file type other than
            JSONL/CSV, or a name already taken.
    """
    import tempfile
    from pathlib import Path

    from core.io.prompt_data import create_eval_dataset, load_rows, parse_source

    suffix = Path(filename or "").suffix.lower()
    with tempfile.TemporaryDirectory(prefix="alignboard-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(payload)
        rows = load_rows(parse_source(str(path)))
    create_eval_dataset(name, rows, experiment_id=str(experiment_id))
    return f"dataset:{name.strip()}"
