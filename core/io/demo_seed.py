"""Seeding the demo: support-assistant traces, a criterion, expert labels, a queue, and the
demo application's prompt (Prompt Registry) and input dataset (an MLflow evaluation
dataset) for prompt optimization; and, in a second experiment, an order-tracking agent's
traces with their spans (tool calls, retrieved documents) and a ``{{ trace }}`` criterion.

Seeding is idempotent: every step checks what is already there, so ``make run`` can
call it on every start and a half-finished seed (a killed process) completes next time.
Each part marks itself done last (a tag on the experiment, the prompt and the dataset), so
a store seeded before the prompt and dataset existed gets them on the next start, and an
asset folder without them (an older one) seeds the rest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import NotFoundError
from core.io.importer import import_file
from core.io.prompt_data import create_eval_dataset, load_rows, parse_source
from core.labeling.criteria import create_criterion, list_criteria
from core.labeling.queues import add_traces, create_queue, get_queue, sync_done
from core.labeling.traces import all_trace_ids
from core.store import config
from core.store.experiments import get_or_create_experiment
from core.store.prompts import list_prompt_versions, register_prompt, set_prompt_alias

DEMO_EXPERIMENT = "alignboard-demo"
DEMO_QUEUE = "support-review"
DEMO_REVIEWERS = ("maria.chen", "dev.patel")
#: Tag set once every seed step of its part has completed (on the experiment, the demo
#: prompt and the demo dataset).
SEEDED_TAG = "alignboard.demo_seeded"
#: The demo application prompt (assets/demo/app_prompt.json names it).
APP_PROMPT_FILE = "app_prompt.json"
#: The demo application inputs, one JSON record per line.
APP_INPUTS_FILE = "app_inputs.jsonl"
#: Alias of the seeded prompt version.
DEMO_PROMPT_ALIAS = "production"
#: The MLflow evaluation dataset holding the demo inputs; source ``dataset:northwind-messages``.
DEMO_DATASET = "northwind-messages"
#: The second demo experiment: Northwind's order-tracking agent, traces with spans.
AGENT_EXPERIMENT = "northwind-agent"
#: Its traces (nested spans, labels) and its criterion, ``agent_groundedness``.
AGENT_TRACES_FILE = "agent_traces.jsonl"
AGENT_CRITERIA_FILE = "agent_criteria.json"
AGENT_QUEUE = "agent-review"
#: The larger synthetic demo set (assets/demo_large, for benchmarks and held-out figures
#: that mean something) and the experiment ``seed_demo(large=True)`` puts it in.
LARGE_DIR = "demo_large"
LARGE_EXPERIMENT = "alignboard-demo-large"


def assets_dir() -> Path:
    """Folder holding the demo data (``ALIGNBOARD_ASSETS`` overrides it)."""
    override = os.environ.get("ALIGNBOARD_ASSETS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "assets"


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed_demo` did."""

    experiment_id: str
    """The demo experiment."""
    already_seeded: bool
    """True when everything was already in place and nothing was written."""
    traces_written: int
    """Traces imported by this call."""
    labels_written: int
    """Labels imported by this call."""
    queue: str
    """Name of the demo review queue."""
    prompt_name: str | None = None
    """The demo application prompt; None when the assets have none."""
    prompt_version: int | None = None
    """The version its ``production`` alias points at."""
    prompt_registered: bool = False
    """True when this call registered the prompt."""
    dataset_name: str | None = None
    """The demo evaluation dataset; None when the assets have none."""
    dataset_rows_written: int = 0
    """Dataset rows written (upserted) by this call."""
    agent_experiment_id: str | None = None
    """The agent demo experiment; None when the assets have no agent traces (or it was skipped)."""
    agent_traces_written: int = 0
    """Agent traces imported by this call."""
    agent_labels_written: int = 0
    """Agent trace labels imported by this call."""

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


def seed_demo(
    experiment_name: str | None = None,
    *,
    agent_experiment: str | None = AGENT_EXPERIMENT,
    large: bool = False,
) -> SeedResult:
    """Load the demo data into ``experiment_name`` unless it is already there.

    ``experiment_name`` defaults to ``alignboard-demo`` (``alignboard-demo-large`` with
    ``large``). With ``large``, only the larger synthetic set of ``assets/demo_large`` is
    seeded (its traces, labels, criterion and queue; see :func:`seed_large_demo`).

    Creates the criterion from ``assets/demo/criteria.json``, imports
    ``assets/demo/support_traces.jsonl`` (with its expert labels) and a review queue
    holding every trace, assigned to the demo reviewers. Then registers the demo
    application prompt from ``app_prompt.json`` (version 1, alias ``production``) and
    writes ``app_inputs.jsonl`` as the evaluation dataset ``northwind-messages``, when
    those files exist. Last, the agent demo: ``agent_traces.jsonl`` (traces with spans)
    and the criterion of ``agent_criteria.json`` into the experiment ``agent_experiment``
    (None skips it) with its own queue; the first experiment gets nothing of it.
    """
    if large:
        return seed_large_demo(experiment_name or LARGE_EXPERIMENT)
    experiment_name = experiment_name or DEMO_EXPERIMENT
    config.configure()
    exp = get_or_create_experiment(experiment_name)
    traces_written = labels_written = 0
    traces_done = exp.tags.get(SEEDED_TAG) == "1"
    if not traces_done:
        traces_written, labels_written = _seed_traces(exp.experiment_id, experiment_name)
    demo = assets_dir() / "demo"
    prompt_name, prompt_version, registered, prompt_changed = _seed_prompt(demo / APP_PROMPT_FILE)
    dataset_name, rows_written = _seed_dataset(demo / APP_INPUTS_FILE, exp.experiment_id)
    agent_id, agent_traces, agent_labels, agent_changed = (
        _seed_agent(demo, agent_experiment) if agent_experiment else (None, 0, 0, False)
    )
    return SeedResult(
        exp.experiment_id,
        traces_done and not prompt_changed and not rows_written and not agent_changed,
        traces_written,
        labels_written,
        DEMO_QUEUE,
        prompt_name=prompt_name,
        prompt_version=prompt_version,
        prompt_registered=registered,
        dataset_name=dataset_name,
        dataset_rows_written=rows_written,
        agent_experiment_id=agent_id,
        agent_traces_written=agent_traces,
        agent_labels_written=agent_labels,
    )


def seed_large_demo(experiment_name: str = LARGE_EXPERIMENT) -> SeedResult:
    """Load the larger synthetic demo set (``assets/demo_large``) into its own experiment.

    Same criterion, format and policy as the demo, a few hundred labeled traces (a test
    split of 60 or more), some labeled by two or three reviewers who sometimes disagree,
    and some unlabeled ones, in a queue ``support-review``. Idempotent like
    :func:`seed_demo`; nothing of the prompt, dataset or agent demo.
    """
    config.configure()
    exp = get_or_create_experiment(experiment_name)
    if exp.tags.get(SEEDED_TAG) == "1":
        return SeedResult(exp.experiment_id, True, 0, 0, DEMO_QUEUE)
    folder = assets_dir() / LARGE_DIR
    traces, labels = _seed_experiment(
        exp.experiment_id,
        experiment_name,
        folder / "criteria.json",
        folder / "support_traces.jsonl",
        DEMO_QUEUE,
    )
    return SeedResult(exp.experiment_id, False, traces, labels, DEMO_QUEUE)


def _seed_traces(experiment_id: str, experiment_name: str) -> tuple[int, int]:
    demo = assets_dir() / "demo"
    return _seed_experiment(
        experiment_id,
        experiment_name,
        demo / "criteria.json",
        demo / "support_traces.jsonl",
        DEMO_QUEUE,
    )


def _seed_agent(demo: Path, experiment_name: str) -> tuple[str | None, int, int, bool]:
    """Seed the agent demo experiment once: (experiment id, traces, labels, anything written)."""
    if not (demo / AGENT_TRACES_FILE).is_file() or not (demo / AGENT_CRITERIA_FILE).is_file():
        return None, 0, 0, False
    exp = get_or_create_experiment(experiment_name)
    if exp.tags.get(SEEDED_TAG) == "1":
        return exp.experiment_id, 0, 0, False
    traces, labels = _seed_experiment(
        exp.experiment_id,
        experiment_name,
        demo / AGENT_CRITERIA_FILE,
        demo / AGENT_TRACES_FILE,
        AGENT_QUEUE,
    )
    return exp.experiment_id, traces, labels, True


def _seed_experiment(
    experiment_id: str,
    experiment_name: str,
    criteria_file: Path,
    traces_file: Path,
    queue_name: str,
) -> tuple[int, int]:
    """Criteria, traces (skipping those already there) and a queue of every trace; then the tag."""
    import mlflow

    existing = {c.name for c in list_criteria(experiment_id)}
    criteria = json.loads(criteria_file.read_text(encoding="utf-8"))
    for spec in criteria:
        if spec["name"] not in existing:
            create_criterion(
                experiment_id,
                spec["name"],
                spec["kind"],
                spec["instructions"],
                options=spec.get("options"),
                positive_label=spec.get("positive_label", "Pass"),
                negative_label=spec.get("negative_label", "Fail"),
            )
    result = import_file(traces_file, experiment_name, on_existing="skip")

    try:
        queue = get_queue(experiment_id, queue_name)
    except NotFoundError:
        queue = create_queue(
            experiment_id, queue_name, [c["name"] for c in criteria], DEMO_REVIEWERS
        )
    add_traces(queue, all_trace_ids(experiment_id))
    # The demo's labels were imported, not given in a queue: mark the items both demo
    # reviewers labeled complete, so MLflow's Review tab shows the queue's real progress.
    sync_done(queue)
    mlflow.MlflowClient().set_experiment_tag(experiment_id, SEEDED_TAG, "1")
    return result.traces_written, result.labels_written


def _seed_prompt(path: Path) -> tuple[str | None, int | None, bool, bool]:
    """Register the demo prompt once and alias its first version.

    Returns:
        (name, version ``production`` points at, registered by this call, anything written).
    """
    import mlflow

    if not path.is_file():
        return None, None, False, False
    spec = json.loads(path.read_text(encoding="utf-8"))
    name = spec["name"]
    client = mlflow.MlflowClient()
    prompt = client.get_prompt(name)
    if prompt is not None and prompt.tags.get(SEEDED_TAG) == "1":
        # Done before; whatever the team made of it since (new versions, a moved alias)
        # is theirs, so only report where production points now.
        try:
            version = client.get_prompt_version_by_alias(name, DEMO_PROMPT_ALIAS).version
        except mlflow.exceptions.MlflowException:
            return name, None, False, False
        return name, int(version), False, False
    versions = list_prompt_versions(name) if prompt is not None else []
    registered = not versions
    if registered:
        first = register_prompt(
            name, spec["template"], commit_message=spec.get("commit_message") or None
        )
    else:
        first = versions[0]
    set_prompt_alias(name, DEMO_PROMPT_ALIAS, first.version)
    client.set_prompt_tag(name, SEEDED_TAG, "1")
    return name, first.version, registered, True


def _seed_dataset(path: Path, experiment_id: str) -> tuple[str | None, int]:
    """Write the demo inputs as an evaluation dataset once; (name, rows written)."""
    import mlflow

    if not path.is_file():
        return None, 0
    client = mlflow.MlflowClient()
    found = client.search_datasets(filter_string=f'name = "{DEMO_DATASET}"', max_results=10)
    if any((d.tags or {}).get(SEEDED_TAG) == "1" for d in found):
        return DEMO_DATASET, 0
    rows = load_rows(parse_source(str(path)))
    # exist_ok: a dataset a killed seed left half-written is completed, not duplicated.
    dataset_id = create_eval_dataset(DEMO_DATASET, rows, experiment_id=experiment_id, exist_ok=True)
    client.set_dataset_tags(dataset_id, {SEEDED_TAG: "1"})
    return DEMO_DATASET, len(rows)
