"""R5 secrets: an alignment run with sentinel API keys in the environment and in
``secrets.toml`` leaves no trace of them in the tracking store, artifacts or logs.

The alignment is real: ``jobs.launch`` starts the job subprocess (as the dashboard does)
on a copy of the demo store with the demo models. Searched afterwards, for every
sentinel (plain ASCII, so JSON or SQL encoding would store it verbatim):

- the sqlite file's bytes (plus any journal/WAL next to it);
- ``iterdump()`` of the whole database (every table, every row, as SQL text);
- every file under ``ALIGNBOARD_HOME`` (``jobs/<run>/job.log``, gepa state) and under
  the run's artifact folder (wherever its artifact_uri points);
- this process's captured log records and stdout/stderr.

Positive controls prove the search can fail: a sentinel written into a file under the
home folder, and one logged as an MLflow param in a throwaway run of a *copy* of the
store, are both found by the very same search functions.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sqlite3
from pathlib import Path

import mlflow
import pytest

from core.optimization import jobs
from core.store import config
from tests.optimization.demo_examples import demo_settings


def _db_path() -> Path:
    return Path(config.tracking_uri().removeprefix("sqlite:///"))


def store_hits(db: Path, needles: list[str]) -> list[str]:
    """Where in the sqlite store (raw bytes of db and companions, full SQL dump) a needle is."""
    hits = []
    for f in sorted(db.parent.glob(db.name + "*")):
        data = f.read_bytes()
        hits += [f"{f.name} bytes: {n}" for n in needles if n.encode() in data]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    assert "CREATE TABLE" in dump and "INSERT INTO" in dump  # the dump is not empty
    hits += [f"sql dump: {n}" for n in needles if n in dump]
    return hits


def tree_hits(root: Path, needles: list[str], skip: Path | None = None) -> tuple[list[str], int]:
    """Files under ``root`` (except the store ``skip``) containing a needle; and files read."""
    hits, read = [], 0
    for f in sorted(root.rglob("*")):
        if not f.is_file() or (skip is not None and f.name.startswith(skip.name)):
            continue
        data = f.read_bytes()
        read += 1
        hits += [f"{f.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return hits, read


def text_hits(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n in text]


@pytest.fixture
def sentinels(demo_store, tmp_path, monkeypatch) -> list[str]:
    """Two environment keys and one secrets.toml key, each unique to this run."""
    openai_key = f"sk-sentinel-R5-{secrets.token_hex(12)}"
    anthropic_key = f"sk-ant-sentinel-R5-{secrets.token_hex(12)}"
    toml_key = f"sentinel-R5-toml-{secrets.token_hex(12)}"
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_key)
    # Read by this process from ./.streamlit and by the job (cwd = repo root) from
    # <parent of ALIGNBOARD_HOME>/.streamlit: both are tmp_path/.streamlit here.
    assert config.data_dir().parent == tmp_path
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        f'GEMINI_API_KEY = "{toml_key}"\nMY_SERVICE_TOKEN = "{toml_key}-2"\n'
    )
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    from core.models.secrets import get_secret

    assert get_secret("GEMINI_API_KEY") == toml_key
    return [openai_key, anthropic_key, toml_key]


def test_search_finds_a_planted_sentinel(sentinels, tmp_path):
    """Positive controls: the searches below are not vacuous."""
    home, db = config.data_dir(), _db_path()
    assert store_hits(db, sentinels) == []
    # 1. A file in the searched tree.
    planted = home / "artifacts" / "deep" / "planted.txt"
    planted.parent.mkdir(parents=True)
    planted.write_text(f"oops {sentinels[0]}")
    hits, _ = tree_hits(home, sentinels, skip=db)
    assert hits == [f"artifacts/deep/planted.txt: {sentinels[0]}"]
    planted.unlink()
    # 2. A param and a tag in a throwaway run of a copy of the store.
    copy = tmp_path / "copy" / "mlflow.db"
    copy.parent.mkdir()
    shutil.copy(db, copy)
    mlflow.set_tracking_uri(f"sqlite:///{copy}")
    try:
        with mlflow.start_run(experiment_id="0"):
            mlflow.log_param("leak", sentinels[1])
            mlflow.set_tag("leak", sentinels[2])
    finally:
        mlflow.set_tracking_uri(config.tracking_uri())
    found = store_hits(copy, sentinels)
    assert f"sql dump: {sentinels[1]}" in found and f"sql dump: {sentinels[2]}" in found
    assert any(h.startswith("mlflow.db bytes: ") for h in found)
    assert store_hits(db, sentinels) == []  # the real store was not touched
    # 3. Captured text.
    assert text_hits(f"log line {sentinels[2]}", sentinels) == [sentinels[2]]


def test_alignment_job_leaks_no_secret(sentinels, demo_store, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    settings = demo_settings(demo_store, "gepa", max_metric_calls=60)
    run_id = jobs.launch(settings)
    final = jobs.wait(run_id, timeout_s=240)
    assert final.status == "finished", final

    home, db = config.data_dir(), _db_path()
    log = jobs.log_path(run_id)
    assert log.is_file() and log.stat().st_size > 0
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params and run.data.metrics  # the run really recorded things
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    assert artifacts, "the run logged no artifacts"
    # The demo_store fixture copies a db whose experiment keeps the session template's
    # artifact location, so a run's artifacts may sit outside ALIGNBOARD_HOME: search
    # that folder too.
    from urllib.parse import urlparse

    run_artifacts = Path(urlparse(run.info.artifact_uri).path)
    assert run_artifacts.is_dir()

    assert store_hits(db, sentinels) == []
    hits, files_read = tree_hits(home, sentinels, skip=db)
    art_hits, art_read = tree_hits(run_artifacts, sentinels)
    assert files_read >= 1 and art_read >= len(artifacts)  # job.log and artifacts were read
    assert hits == [] and art_hits == []
    out, err = capfd.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert text_hits(out + err + logs, sentinels) == []
