"""R4 bad input: malformed files and API calls each get a specific error and leave the
store untouched.

Unchanged-ness is checked on the **raw bytes**: sha256 of the sqlite file (and of any
``-wal``/``-journal`` companion) plus a listing (path, size, sha256) of every other file
under ``ALIGNBOARD_HOME`` (artifacts, jobs). MLflow's sqlite store opens the database in
rollback-journal mode and a read never rewrites the file, so a byte hash is exact here;
``test_reads_leave_the_file_bytes_alone`` proves that assumption on every run, so a
future MLflow that touches the file on reads fails loudly instead of making R4 flaky.
As a second, readable witness, every row of every table is also dumped sorted; when the
bytes differ the assertion names the tables whose rows changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from core.errors import (
    CredentialsError,
    ImportFileError,
    ModelError,
    NotFoundError,
    ValidationError,
)
from core.io.importer import import_file, parse_import_file
from core.io.records import MAX_FIELD_BYTES
from core.labeling.criteria import create_criterion, get_criterion, list_criteria, normalize_value
from core.labeling.labels import current_labels, set_label
from core.labeling.queues import create_queue, list_queues
from core.labeling.traces import count_traces
from core.models.secrets import require_credentials
from core.models.uris import parse_model
from core.optimization.engine import run_alignment
from core.optimization.jobs import launch
from core.optimization.preflight import preflight
from core.optimization.spec import AlignmentSettings, JudgeSpec
from core.store import config

GOOD_INSTRUCTIONS = "Is {{ outputs }} a good answer to {{ inputs }}? Answer pass or fail."


# --------------------------------------------------------------------------- snapshots


def _db_path() -> Path:
    return Path(config.tracking_uri().removeprefix("sqlite:///"))


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables() -> dict[str, list[str]]:
    con = sqlite3.connect(f"file:{_db_path()}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in sorted(names)}
    finally:
        con.close()


@dataclass(frozen=True)
class Snapshot:
    db_bytes: dict[str, str]
    """sha256 of mlflow.db and any journal/WAL file next to it."""
    files: tuple[tuple[str, int, str], ...]
    """Every other file under ALIGNBOARD_HOME: (relative path, size, sha256)."""
    tables: dict[str, list[str]]
    """Every table's rows, sorted (readable witness; not the primary check)."""


def snapshot() -> Snapshot:
    db = _db_path()
    home = config.data_dir()
    db_files = {p.name: _file_digest(p) for p in sorted(db.parent.glob(db.name + "*"))}
    files = tuple(
        (str(p.relative_to(home)), p.stat().st_size, _file_digest(p))
        for p in sorted(home.rglob("*"))
        if p.is_file() and not p.name.startswith(db.name)
    )
    return Snapshot(db_files, files, _tables())


def assert_unchanged(before: Snapshot) -> None:
    after = snapshot()
    changed = [
        t
        for t in before.tables.keys() | after.tables.keys()
        if before.tables.get(t) != after.tables.get(t)
    ]
    assert after.db_bytes == before.db_bytes, f"store bytes changed; tables changed: {changed}"
    assert after.files == before.files, "files under ALIGNBOARD_HOME changed"
    assert not changed


# --------------------------------------------------------------------------- fixture


@dataclass
class Ctx:
    experiment_id: str
    experiment_name: str
    tmp: Path
    trace_ids: list[str]

    def crit(self, name: str):
        return get_criterion(self.experiment_id, name)

    def write(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def settings(self, judge: str, instructions: str, model: str = "demo:/judge", **kw):
        spec = JudgeSpec(judge, instructions, "pass_fail", model)
        return AlignmentSettings(
            self.experiment_id, spec, kw.pop("optimizer", "gepa"), "demo:/reflect", **kw
        )


@pytest.fixture
def ctx(demo_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    """The demo store plus a categorical, a numeric and a sparsely labeled criterion."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # no ./.streamlit/secrets.toml to supply keys
    eid = demo_store
    create_criterion(eid, "tone", "categorical", "Tone?", options=["friendly", "curt"])
    create_criterion(eid, "score", "numeric", "Score?", min_value=1, max_value=5)
    sparse = create_criterion(eid, "sparse", "pass_fail", GOOD_INSTRUCTIONS)
    ids = sorted({lab.trace_id for lab in current_labels(eid, "support_quality")})
    for i, tid in enumerate(ids[:4]):
        set_label(tid, sparse, "ann", i % 2 == 0)
    files = tmp_path / "files"
    files.mkdir()
    return Ctx(eid, mlflow.get_experiment(eid).name, files, ids)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    exc: type[Exception]
    match: str
    """Regex that must occur in the message (for import errors: in the row's reason)."""
    call: Callable[[Ctx], object]
    line: int | None = None
    """For import errors: the line the error must be reported on."""


def _imp(name: str, data: bytes) -> Callable[[Ctx], object]:
    return lambda c: import_file(c.write(name, data), c.experiment_name)


_LABEL = b'{"inputs": "q", "outputs": "a", "labels": [%s]}\n'
_BIG = b'{"inputs": "q", "outputs": "' + b"x" * (MAX_FIELD_BYTES + 10) + b'"}\n'

CASES: dict[str, Case] = {
    # ---- files
    "jsonl_malformed_json": Case(
        ImportFileError,
        r"malformed JSON: Expecting .* at column \d+",
        _imp("a.jsonl", b'{"inputs": "q", "outputs": "a"}\n{"inputs": "q", "outputs":\n'),
        2,
    ),
    "jsonl_non_object_line": Case(
        ImportFileError,
        "expected a JSON object, got string",
        _imp("a.jsonl", b'{"inputs": "q", "outputs": "a"}\n\n"just a string"\n'),
        3,
    ),
    "jsonl_missing_inputs": Case(
        ImportFileError, r"missing inputs \(required", _imp("a.jsonl", b'{"outputs": "a"}\n'), 1
    ),
    "jsonl_missing_outputs": Case(
        ImportFileError,
        r"missing outputs \(required",
        _imp("a.jsonl", b'{"inputs": "q", "outputs": "a"}\n{"inputs": "q"}\n'),
        2,
    ),
    "jsonl_non_utf8": Case(
        ImportFileError,
        "not valid UTF-8: byte 0xff at column 14",
        _imp("a.jsonl", b'{"inputs": "q\xff", "outputs": "a"}\n'),
        1,
    ),
    "jsonl_field_over_cap": Case(
        ImportFileError,
        r"outputs is \d+ KiB; the limit is 256 KiB per field",
        _imp("a.jsonl", _BIG),
        1,
    ),
    "jsonl_unknown_criterion": Case(
        ImportFileError,
        r"unknown criterion 'politeness' \(existing: .*support_quality",
        _imp("a.jsonl", _LABEL % b'{"criterion": "politeness", "value": "x", "reviewer": "a"}'),
        1,
    ),
    "jsonl_invalid_pass_fail_value": Case(
        ImportFileError,
        r"Invalid value 'maybe' for criterion 'support_quality' \(pass_fail\)",
        _imp(
            "a.jsonl",
            _LABEL % b'{"criterion": "support_quality", "value": "maybe", "reviewer": "a"}',
        ),
        1,
    ),
    "jsonl_missing_reviewer": Case(
        ImportFileError,
        "label for criterion 'support_quality' is missing its reviewer",
        _imp("a.jsonl", _LABEL % b'{"criterion": "support_quality", "value": "pass"}'),
        1,
    ),
    "jsonl_duplicate_ids": Case(
        ImportFileError,
        r"duplicate id 'x' \(first used on line 1\)",
        _imp(
            "a.jsonl",
            b'{"id": "x", "inputs": "q", "outputs": "a"}\n'
            b'{"id": "x", "inputs": "q2", "outputs": "a2"}\n',
        ),
        2,
    ),
    "empty_file": Case(ImportFileError, "the file is empty", _imp("a.jsonl", b"\n \n")),
    "csv_missing_column": Case(
        ImportFileError, "missing required column 'outputs'", _imp("a.csv", b"id,inputs\n1,q\n"), 1
    ),
    "csv_bad_json_in_inputs": Case(
        ImportFileError,
        "inputs looks like JSON but is malformed",
        _imp("a.csv", b'inputs,outputs\nq,a\n"{""question"": ",a\n'),
        3,
    ),
    "unknown_extension": Case(
        ImportFileError, r"unsupported file type '\.xml'", _imp("a.xml", b"<x/>")
    ),
    "file_does_not_exist": Case(
        ImportFileError,
        "cannot read file: No such file or directory",
        lambda c: import_file(c.tmp / "nope.jsonl", c.experiment_name),
    ),
    "directory_instead_of_file": Case(
        ImportFileError,
        "cannot read file: Is a directory",
        lambda c: (
            (c.tmp / "dir.jsonl").mkdir() or import_file(c.tmp / "dir.jsonl", c.experiment_name)
        ),
    ),
    "preview_of_missing_file": Case(
        ImportFileError,
        "cannot read file",
        lambda c: parse_import_file(c.tmp / "gone.csv", experiment_id=c.experiment_id),
    ),
    # ---- labels
    "set_label_empty_reviewer": Case(
        ValidationError,
        r"A reviewer name is required",
        lambda c: set_label(c.trace_ids[0], c.crit("support_quality"), "  ", True),
    ),
    "set_label_categorical_outside_options": Case(
        ValidationError,
        r"Invalid value 'grumpy' for criterion 'tone' \(categorical\)",
        lambda c: set_label(c.trace_ids[0], c.crit("tone"), "ann", "grumpy"),
    ),
    "set_label_numeric_out_of_range": Case(
        ValidationError,
        r"Invalid value 7 for criterion 'score' \(numeric\)",
        lambda c: set_label(c.trace_ids[0], c.crit("score"), "ann", 7),
    ),
    "set_label_unknown_trace": Case(
        NotFoundError,
        r"No trace with id 'tr-0000000000000000000000000000dead'",
        lambda c: set_label(
            "tr-0000000000000000000000000000dead", c.crit("support_quality"), "ann", True
        ),
    ),
    "normalize_pass_fail_value": Case(
        ValidationError,
        r"Invalid value 'perhaps' for criterion 'support_quality'",
        lambda c: normalize_value(c.crit("support_quality"), "perhaps"),
    ),
    # ---- criteria and queues
    "create_criterion_invalid_name": Case(
        ValidationError,
        r"Invalid criterion name '2 bad-name': use 1-64 letters",
        lambda c: create_criterion(c.experiment_id, "2 bad-name", "pass_fail", "x"),
    ),
    "create_criterion_duplicate_name": Case(
        ValidationError,
        r"A criterion named 'support_quality' already exists",
        lambda c: create_criterion(c.experiment_id, "support_quality", "pass_fail", "x"),
    ),
    "create_criterion_unknown_kind": Case(
        ValidationError,
        r"Unknown criterion kind 'stars'",
        lambda c: create_criterion(c.experiment_id, "stars", "stars", "x"),
    ),
    "create_queue_unknown_criterion": Case(
        NotFoundError,
        r"politeness",
        lambda c: create_queue(c.experiment_id, "new-queue", ["politeness"], ["ann"]),
    ),
    # ---- models
    "parse_model_unknown_provider": Case(
        ModelError,
        r"unknown provider 'nosuchprovider'",
        lambda c: parse_model("nosuchprovider:/m1"),
    ),
    "parse_model_malformed_uri": Case(
        ModelError,
        r"no ':/' between provider and model \(did you mean 'openai:/gpt-4o'\?\)",
        lambda c: parse_model("openai/gpt-4o"),
    ),
    "require_credentials_without_key": Case(
        CredentialsError,
        r"^openai:/gpt-4\.1-mini needs OPENAI_API_KEY",
        lambda c: require_credentials("openai:/gpt-4.1-mini"),
    ),
    # ---- alignments (refused before any run is created)
    "align_instructions_without_template_variables": Case(
        ValidationError,
        r"(?s)Alignment refused before spending anything:.*use no template variable",
        lambda c: run_alignment(c.settings("support_quality", "Is this a good answer?")),
    ),
    "align_gepa_with_fewer_than_10_labels": Case(
        ValidationError,
        r"gepa needs at least 10 labeled traces for 'sparse'; 4 are labeled",
        lambda c: run_alignment(c.settings("sparse", GOOD_INSTRUCTIONS)),
    ),
    "align_model_without_credentials": Case(
        ValidationError,
        r"judge model cannot be used: openai:/gpt-4\.1-mini needs OPENAI_API_KEY",
        lambda c: run_alignment(
            c.settings("support_quality", GOOD_INSTRUCTIONS, model="openai:/gpt-4.1-mini")
        ),
    ),
    "launch_job_without_credentials": Case(
        ValidationError,
        r"needs OPENAI_API_KEY",
        lambda c: launch(
            c.settings("support_quality", GOOD_INSTRUCTIONS, model="openai:/gpt-4.1-mini")
        ),
    ),
    "align_unknown_optimizer": Case(
        ValidationError,
        r"Unknown optimizer 'annealing'",
        lambda c: run_alignment(
            c.settings("support_quality", GOOD_INSTRUCTIONS, optimizer="annealing")
        ),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_specific_error_and_writes_nothing(ctx: Ctx, name: str):
    case = CASES[name]
    runs_before = len(mlflow.search_runs(experiment_ids=[ctx.experiment_id]))
    before = snapshot()
    with pytest.raises(case.exc) as info:
        case.call(ctx)
    err = info.value
    if isinstance(err, ImportFileError) and case.line is not None:
        assert any(e.line == case.line for e in err.errors), err.errors
        hits = [e for e in err.errors if e.line == case.line]
        assert any(re.search(case.match, e.reason) for e in hits), err.errors
        assert "nothing was written" in str(err)
    else:
        assert info.match(case.match)
    assert_unchanged(before)
    assert len(mlflow.search_runs(experiment_ids=[ctx.experiment_id])) == runs_before


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_preflight_reports_missing_template_variables_as_an_error(ctx: Ctx):
    findings = preflight(ctx.settings("support_quality", "Is this good?"), [])
    assert [f.code for f in findings if f.level == "error"][:1] == ["no_template_variables"]


def test_reads_leave_the_file_bytes_alone(ctx: Ctx):
    """The byte-hash check above is sound only if reads do not rewrite the sqlite file."""
    before = snapshot()
    list_criteria(ctx.experiment_id)
    current_labels(ctx.experiment_id, "support_quality")
    list_queues(ctx.experiment_id)
    count_traces(ctx.experiment_id)
    mlflow.search_runs(experiment_ids=[ctx.experiment_id])
    assert_unchanged(before)


def test_the_snapshot_sees_a_write(ctx: Ctx):
    """Positive control: a real write changes the snapshot."""
    before = snapshot()
    set_label(ctx.trace_ids[0], ctx.crit("tone"), "ann", "friendly")
    with pytest.raises(AssertionError, match=r"store bytes changed; tables changed: .*assessments"):
        assert_unchanged(before)
    before = snapshot()
    (config.artifact_root() / "x.txt").write_text("x")
    with pytest.raises(AssertionError, match="files under ALIGNBOARD_HOME changed"):
        assert_unchanged(before)
    assert os.environ["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
