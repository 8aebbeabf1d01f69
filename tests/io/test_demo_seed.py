"""Seeding the demo data into a real sqlite store: complete, and idempotent."""

from __future__ import annotations

import json

import mlflow

from core.io.demo_seed import (
    APP_INPUTS_FILE,
    APP_PROMPT_FILE,
    DEMO_DATASET,
    DEMO_PROMPT_ALIAS,
    DEMO_QUEUE,
    DEMO_REVIEWERS,
    assets_dir,
    seed_demo,
)
from core.io.prompt_data import create_eval_dataset, load_rows, parse_source
from core.labeling.labels import current_labels
from core.labeling.queues import get_queue, queue_items, reviewer_progress
from core.labeling.traces import count_traces
from core.store.prompts import list_prompt_versions, list_prompts, load_prompt, register_prompt


def _asset_counts() -> tuple[int, int]:
    lines = (assets_dir() / "demo" / "support_traces.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in lines.splitlines() if line.strip()]
    return len(records), sum(len(r.get("labels", [])) for r in records)


def test_seed_writes_every_trace_label_and_a_queue_then_nothing(store_uri):
    n_traces, n_labels = _asset_counts()
    first = seed_demo("demo-test")
    assert not first.already_seeded
    assert first.traces_written == n_traces
    assert first.labels_written == n_labels
    exp_id = first.experiment_id
    assert count_traces(exp_id) == n_traces

    labels = current_labels(exp_id, criterion="support_quality")
    assert len(labels) == n_labels
    assert {lab.reviewer for lab in labels} == set(DEMO_REVIEWERS)
    # Labels are real MLflow HUMAN feedback, readable with MLflow's own API.
    trace = mlflow.get_trace(labels[0].trace_id)
    human = [a for a in trace.info.assessments if a.source.source_type == "HUMAN"]
    assert any(a.name == "support_quality" and a.rationale for a in human)

    queue = get_queue(exp_id, DEMO_QUEUE)
    assert len(queue_items(queue)) == n_traces
    progress = {p.reviewer: p.done for p in reviewer_progress(queue)}
    assert 0 < progress["dev.patel"] < progress["maria.chen"] < n_traces

    second = seed_demo("demo-test")
    assert second.already_seeded
    assert second.traces_written == 0
    assert count_traces(exp_id) == n_traces
    assert len(current_labels(exp_id, criterion="support_quality")) == n_labels


# --- the demo application prompt and dataset (issue 10) ----------------------------------

APP_PROMPT = {
    "name": "tiny-support",
    "template": "You are a support assistant.\n\nCustomer message:\n{{ message }}",
    "commit_message": "Seed version",
}
APP_INPUTS = [
    {"id": "m-1", "inputs": {"message": "Can I return boots?"}, "tags": {"topic": "returns"}},
    {
        "id": "m-2",
        "inputs": {"message": "Where is my parcel?"},
        "expectations": {"expected_facts": ["tracking link"]},
        "tags": {"topic": "shipping"},
    },
    {"id": "m-3", "inputs": {"message": "I was charged twice."}, "tags": {"topic": "billing"}},
]


def _assets(tmp_path, monkeypatch, *, app: bool) -> None:
    """Point ALIGNBOARD_ASSETS at a folder with the real demo traces and tiny app files."""
    real = assets_dir() / "demo"
    demo = tmp_path / "assets" / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    for name in ("criteria.json", "support_traces.jsonl"):
        if not (demo / name).exists():
            (demo / name).symlink_to(real / name)
    if app:
        (demo / APP_PROMPT_FILE).write_text(json.dumps(APP_PROMPT), encoding="utf-8")
        lines = "".join(json.dumps(r) + "\n" for r in APP_INPUTS)
        (demo / APP_INPUTS_FILE).write_text(lines, encoding="utf-8")
    monkeypatch.setenv("ALIGNBOARD_ASSETS", str(tmp_path / "assets"))


def _dataset_ids() -> list[str]:
    return sorted(r.id for r in load_rows(parse_source(f"dataset:{DEMO_DATASET}")))


def test_seed_registers_the_app_prompt_and_dataset_once(store_uri, tmp_path, monkeypatch):
    _assets(tmp_path, monkeypatch, app=True)
    first = seed_demo("demo-test")
    assert not first.already_seeded
    assert (first.prompt_name, first.prompt_version, first.prompt_registered) == (
        "tiny-support",
        1,
        True,
    )
    assert (first.dataset_name, first.dataset_rows_written) == (DEMO_DATASET, 3)
    info = load_prompt(f"tiny-support@{DEMO_PROMPT_ALIAS}")
    assert info.version == 1 and info.template == APP_PROMPT["template"]
    assert info.commit_message == "Seed version"
    assert _dataset_ids() == ["m-1", "m-2", "m-3"]
    rows = {r.id: r for r in load_rows(parse_source(f"dataset:{DEMO_DATASET}"))}
    assert rows["m-2"].expectations == {"expected_facts": ["tracking link"]}
    assert rows["m-3"].tags == {"topic": "billing"}

    again = seed_demo("demo-test")
    assert again.already_seeded
    assert (again.prompt_version, again.prompt_registered, again.dataset_rows_written) == (
        1,
        False,
        0,
    )
    assert [v.version for v in list_prompt_versions("tiny-support")] == [1]
    assert len(mlflow.MlflowClient().search_datasets(filter_string=f"name = '{DEMO_DATASET}'")) == 1
    assert _dataset_ids() == ["m-1", "m-2", "m-3"]
    assert again.to_dict()["prompt_name"] == "tiny-support"


def test_a_half_finished_app_seed_completes_without_duplicates(store_uri, tmp_path, monkeypatch):
    _assets(tmp_path, monkeypatch, app=True)
    exp = seed_demo("demo-test").experiment_id
    client = mlflow.MlflowClient()
    # What a seed killed midway leaves: the prompt without its alias and done-tag, and a
    # dataset holding one row without its done-tag.
    client.delete_prompt("tiny-support")
    for d in client.search_datasets(filter_string=f"name = '{DEMO_DATASET}'"):
        client.delete_dataset(d.dataset_id)
    register_prompt("tiny-support", APP_PROMPT["template"])
    rows = load_rows(parse_source(str(tmp_path / "assets" / "demo" / APP_INPUTS_FILE)))
    create_eval_dataset(DEMO_DATASET, rows[:1], experiment_id=exp)

    done = seed_demo("demo-test")
    assert not done.already_seeded
    assert done.traces_written == 0
    assert (done.prompt_version, done.prompt_registered) == (1, False)
    assert [v.version for v in list_prompt_versions("tiny-support")] == [1]
    assert load_prompt(f"tiny-support@{DEMO_PROMPT_ALIAS}").version == 1
    assert _dataset_ids() == ["m-1", "m-2", "m-3"]
    assert len(client.search_datasets(filter_string=f"name = '{DEMO_DATASET}'")) == 1
    assert seed_demo("demo-test").already_seeded


def test_older_assets_seed_without_the_app_parts_and_a_later_seed_adds_them(
    store_uri, tmp_path, monkeypatch
):
    _assets(tmp_path, monkeypatch, app=False)
    old = seed_demo("demo-test")
    assert not old.already_seeded and old.traces_written > 0
    assert (old.prompt_name, old.prompt_version, old.dataset_name) == (None, None, None)
    assert list_prompts() == []
    assert seed_demo("demo-test").already_seeded

    # A store seeded before the app files existed gets them on the next start.
    _assets(tmp_path, monkeypatch, app=True)
    new = seed_demo("demo-test")
    assert not new.already_seeded
    assert new.traces_written == 0 and new.labels_written == 0
    assert (new.prompt_name, new.prompt_version, new.dataset_rows_written) == ("tiny-support", 1, 3)
    assert count_traces(new.experiment_id) == old.traces_written
