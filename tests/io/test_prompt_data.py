"""Dataset sources of prompt optimization: files, MLflow evaluation datasets, traces.

Every source kind is read from real things: files on disk, an evaluation dataset written
to the test's own sqlite store, traces imported with core.io.importer and a real review
queue.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from core.errors import ImportFileError, NotFoundError, ValidationError
from core.io.prompt_data import (
    ROW_ID_TAG,
    DatasetRow,
    DatasetSource,
    check_mapping,
    create_eval_dataset,
    field_paths,
    get_field,
    load_rows,
    parse_source,
    resolve_mapping,
    row_id_for,
    split_rows,
    values_for,
)
from core.labeling.splits import assign_split

MESSAGES = [
    ("msg-001", "Can I return a kettle after 40 days?", "returns"),
    ("msg-002", "My parcel is late, where is it?", "shipping"),
    ("msg-003", "I was charged twice.", "billing"),
    ("msg-004", "Does the blender have a warranty?", "product"),
]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _records(with_ids: bool = True) -> list[dict]:
    out = []
    for rid, text, topic in MESSAGES:
        rec: dict = {
            "inputs": {"message": text, "customer": {"tier": "gold"}},
            "tags": {"topic": topic},
        }
        if with_ids:
            rec["id"] = rid
        if topic == "returns":
            rec["expectations"] = {"expected_facts": ["30-day return window"]}
        out.append(rec)
    return out


# --- parse_source ------------------------------------------------------------------------


def test_parse_source_reads_the_three_kinds():
    assert parse_source("dataset:northwind-messages") == DatasetSource(
        "dataset", "northwind-messages"
    )
    src = parse_source(
        " experiment:demo ", queue="support-review", tags={"topic": "returns", "a": "b"}
    )
    assert src == DatasetSource(
        "experiment", "demo", "support-review", (("a", "b"), ("topic", "returns"))
    )
    assert src.text() == "experiment:demo"
    assert parse_source("data/inputs.csv").kind == "file"
    assert parse_source("data/inputs.jsonl").text() == "data/inputs.jsonl"


@pytest.mark.parametrize(
    ("text", "kwargs", "needle"),
    [
        ("", {}, "dataset:NAME"),
        ("dataset:", {}, "dataset name"),
        ("inputs.txt", {}, ".jsonl/.csv"),
        ("dataset:x", {"queue": "q"}, "experiment:NAME"),
        ("x.jsonl", {"tags": {"k": 1}}, "key=value"),
    ],
)
def test_parse_source_refuses_what_it_cannot_read(text, kwargs, needle):
    with pytest.raises(ValidationError) as err:
        parse_source(text, **kwargs)
    assert needle in str(err.value)


# --- files -------------------------------------------------------------------------------


def test_jsonl_file_rows_keep_given_ids_and_hash_the_rest(tmp_path):
    records = _records()
    del records[1]["id"]
    path = _write_jsonl(tmp_path / "inputs.jsonl", records)
    rows = load_rows(parse_source(str(path)))
    assert [r.id for r in rows] == [
        "msg-001",
        row_id_for(records[1]["inputs"]),
        "msg-003",
        "msg-004",
    ]
    assert rows[1].id.startswith("row-") and len(rows[1].id) == 16
    assert [r.line for r in rows] == [1, 2, 3, 4]
    assert rows[0].expectations == {"expected_facts": ["30-day return window"]}
    assert rows[2].expectations == {}
    assert rows[0].tags == {"topic": "returns"}
    assert rows[0].trace_id is None
    assert [DatasetRow.from_dict(json.loads(json.dumps(r.to_dict()))) for r in rows] == rows


def test_a_hashed_id_ignores_key_order():
    assert row_id_for({"a": 1, "b": [1, 2]}) == row_id_for({"b": [1, 2], "a": 1})
    assert row_id_for({"a": 1}) != row_id_for({"a": 2})


def test_a_file_row_keeps_its_id_and_split_when_the_file_is_reordered(tmp_path):
    records = [{"inputs": {"message": f"question {i}"}} for i in range(30)]
    first = load_rows(parse_source(str(_write_jsonl(tmp_path / "a.jsonl", records))))
    random.Random(7).shuffle(records)
    second = load_rows(parse_source(str(_write_jsonl(tmp_path / "b.jsonl", records))))
    assert {r.id: r.split for r in first} == {r.id: r.split for r in second}
    assert [r.line for r in second] == list(range(1, 31))
    assert {r.split for r in first} == {"train", "val", "test"}


def test_csv_file_follows_the_trace_import_convention(tmp_path):
    path = tmp_path / "inputs.csv"
    path.write_text(
        "id,inputs,expectations,tags,outputs\n"
        'm1,"{""message"": ""Where is my order?""}","{""expected_response"": ""Tracking link""}","{""topic"": ""shipping""}",ignored\n'
        ",Plain text question,,,\n"
        '"m3","{""message"": ""two"",\n ""lines"": 2}",A plain expected answer,,\n'
        'm4,"{""message"": ""after""}",,,\n',
        encoding="utf-8",
    )
    rows = load_rows(parse_source(str(path)))
    assert [r.id for r in rows] == [
        "m1",
        row_id_for({"question": "Plain text question"}),
        "m3",
        "m4",
    ]
    assert rows[0].inputs == {"message": "Where is my order?"}
    assert rows[0].expectations == {"expected_response": "Tracking link"}
    assert rows[0].tags == {"topic": "shipping"}
    assert rows[1].inputs == {"question": "Plain text question"}
    assert rows[2].inputs == {"message": "two", "lines": 2}
    assert rows[2].expectations == {"expected_response": "A plain expected answer"}
    # A row spanning two physical lines: the next row's line number still matches the file.
    assert [r.line for r in rows] == [2, 3, 4, 6]


def test_csv_rows_sharing_an_id_are_one_row_as_in_the_trace_import(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "id,inputs,outputs,criterion,value,reviewer\n"
        "a,Is it waterproof?,Yes,quality,pass,ana\n"
        "a,Is it waterproof?,Yes,quality,fail,ben\n"
        "b,Does it fit?,Maybe,quality,pass,ana\n",
        encoding="utf-8",
    )
    rows = load_rows(parse_source(str(path)))
    assert [(r.id, r.inputs, r.line) for r in rows] == [
        ("a", {"question": "Is it waterproof?"}, 2),
        ("b", {"question": "Does it fit?"}, 4),
    ]


def test_a_trace_import_file_is_a_dataset_file(tmp_path):
    rec = {
        "id": "t1",
        "inputs": {"question": "hi"},
        "outputs": {"response": "hello"},
        "labels": [{"criterion": "c", "value": "pass", "reviewer": "r"}],
    }
    rows = load_rows(parse_source(str(_write_jsonl(tmp_path / "t.jsonl", [rec]))))
    assert [(r.id, r.inputs) for r in rows] == [("t1", {"question": "hi"})]


def _problems(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(ImportFileError) as err:
        load_rows(parse_source(str(path)))
    assert isinstance(err.value, ValidationError)
    assert "no rows were read" in str(err.value)
    return [(e.line, e.reason) for e in err.value.errors]


def test_a_malformed_jsonl_file_is_one_error_naming_every_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "inputs": {"message": "ok"}}),
                '{"id": "b", "inputs": {"message": "unterminated"',
                json.dumps({"id": "c"}),
                json.dumps({"id": "d", "inputs": "a string"}),
                json.dumps({"id": "a", "inputs": {"message": "again"}}),
                json.dumps({"inputs": {"message": "x"}, "outputz": 1}),
                json.dumps({"inputs": {"message": "same"}}),
                json.dumps({"inputs": {"message": "same"}}),
                json.dumps({"id": "e", "inputs": {"m": 1}, "expectations": [1]}),
                "[1, 2]",
            ]
        ),
        encoding="utf-8",
    )
    problems = _problems(path)
    assert [line for line, _ in problems] == [2, 3, 4, 5, 6, 8, 9, 10]
    reasons = dict(problems)
    assert reasons[2].startswith("malformed JSON")
    assert reasons[3].startswith("missing inputs")
    assert "inputs must be a JSON object" in reasons[4] and "string" in reasons[4]
    assert reasons[5] == "duplicate id 'a' (first used on line 1)"
    assert "unknown field(s) ['outputz']" in reasons[6]
    assert "same inputs as line 7" in reasons[8]
    assert "expectations must be a JSON object" in reasons[9]
    assert "expected a JSON object, got array" in reasons[10]


def test_a_malformed_csv_file_names_its_lines(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        'id,inputs\nx,"{""message"": ""ok""}"\ny,\nz,"{""message"": bro"\nx,"{""message"": ""dup""}"\n',
        encoding="utf-8",
    )
    problems = _problems(path)
    assert [line for line, _ in problems] == [3, 4, 5]
    assert problems[0][1].startswith("missing inputs")
    assert "malformed" in problems[1][1]
    assert "rows with id 'x' must hold the same inputs" in problems[2][1]
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("id,input\na,b\n", encoding="utf-8")
    assert [line for line, _ in _problems(bad_header)] == [1, 1]


def test_missing_empty_and_array_files(tmp_path):
    with pytest.raises(NotFoundError):
        load_rows(parse_source(str(tmp_path / "nope.jsonl")))
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValidationError) as err:
        load_rows(parse_source(str(tmp_path / "empty.jsonl")))
    assert "empty" in str(err.value)
    (tmp_path / "array.json").write_text('[{"inputs": {"a": 1}}]', encoding="utf-8")
    assert "JSON array" in _problems(tmp_path / "array.json")[0][1]


def test_tag_filters_apply_to_file_rows(tmp_path):
    path = _write_jsonl(tmp_path / "inputs.jsonl", _records())
    rows = load_rows(parse_source(str(path), tags={"topic": "billing"}))
    assert [r.id for r in rows] == ["msg-003"]
    with pytest.raises(ValidationError) as err:
        load_rows(parse_source(str(path), tags={"topic": "weather"}))
    assert "no rows with tags topic=weather (of 4)" in str(err.value)


# --- MLflow evaluation datasets ----------------------------------------------------------


def test_an_evaluation_dataset_round_trips_ids_inputs_expectations_and_tags(tmp_path, experiment):
    path = _write_jsonl(tmp_path / "inputs.jsonl", _records())
    rows = load_rows(parse_source(str(path)))
    dataset_id = create_eval_dataset("messages", rows, experiment_id=experiment.experiment_id)
    assert dataset_id.startswith("d-")

    back = load_rows(parse_source("dataset:messages"))
    assert sorted((r.id, json.dumps(r.inputs, sort_keys=True)) for r in back) == sorted(
        (r.id, json.dumps(r.inputs, sort_keys=True)) for r in rows
    )
    by_id = {r.id: r for r in back}
    assert by_id["msg-001"].expectations == {"expected_facts": ["30-day return window"]}
    assert by_id["msg-002"].expectations == {}
    assert by_id["msg-003"].tags == {"topic": "billing"}
    assert {r.id: r.split for r in back} == {r.id: r.split for r in rows}
    assert sorted(r.line for r in back) == [1, 2, 3, 4]
    assert [
        r.id for r in load_rows(parse_source("dataset:messages", tags={"topic": "product"}))
    ] == ["msg-004"]

    # MLflow's own API reads the same dataset, with the row ids as record tags.
    from mlflow.genai.datasets import get_dataset

    df = get_dataset(name="messages").to_df()
    assert len(df) == 4
    assert {t[ROW_ID_TAG] for t in df["tags"]} == {r.id for r in rows}
    assert experiment.experiment_id in get_dataset(name="messages").experiment_ids


def test_create_eval_dataset_refuses_a_taken_name_and_duplicate_inputs_but_completes_with_exist_ok(
    tmp_path, experiment
):
    rows = load_rows(parse_source(str(_write_jsonl(tmp_path / "i.jsonl", _records()))))
    create_eval_dataset("messages", rows[:2], experiment_id=experiment.experiment_id)
    with pytest.raises(ValidationError) as err:
        create_eval_dataset("messages", rows, experiment_id=experiment.experiment_id)
    assert "already exists" in str(err.value)
    create_eval_dataset("messages", rows, experiment_id=experiment.experiment_id, exist_ok=True)
    assert sorted(r.id for r in load_rows(parse_source("dataset:messages"))) == sorted(
        r.id for r in rows
    )

    twin = DatasetRow(id="other", inputs=dict(rows[0].inputs), expectations={})
    with pytest.raises(ValidationError) as err:
        create_eval_dataset("twins", [rows[0], twin], experiment_id=experiment.experiment_id)
    assert "same inputs" in str(err.value)


def test_an_unknown_dataset_names_the_existing_ones(tmp_path, experiment):
    rows = load_rows(parse_source(str(_write_jsonl(tmp_path / "i.jsonl", _records()))))
    create_eval_dataset("messages", rows, experiment_id=experiment.experiment_id)
    with pytest.raises(NotFoundError) as err:
        load_rows(parse_source("dataset:nope"))
    assert "Existing datasets: messages" in str(err.value)


def test_a_dataset_written_with_mlflows_api_gets_its_record_ids(experiment):
    from mlflow.genai.datasets import create_dataset

    ds = create_dataset(name="native", experiment_id=experiment.experiment_id)
    ds.merge_records(
        [{"inputs": {"question": "a"}}, {"inputs": {"question": "b"}, "expectations": {"x": 1}}]
    )
    rows = load_rows(parse_source("dataset:native"))
    assert all(r.id.startswith("dr-") for r in rows)
    assert {r.inputs["question"]: r.expectations for r in rows} == {"a": {}, "b": {"x": 1}}


# --- traces ------------------------------------------------------------------------------


@pytest.fixture
def traced(tmp_path, experiment):
    """Four imported traces (two tagged billing/returns), a criterion and a queue of two."""
    from core.io.importer import import_file
    from core.labeling.criteria import create_criterion
    from core.labeling.queues import add_traces, create_queue

    records = []
    for rec in _records():
        rec["outputs"] = {"response": "An answer."}
        records.append(rec)
    result = import_file(_write_jsonl(tmp_path / "traces.jsonl", records), "test")
    create_criterion(experiment.experiment_id, "quality", "pass_fail", "Is it good?")
    queue = create_queue(experiment.experiment_id, "review", ["quality"], ["ana"])
    add_traces(queue, [result.trace_ids[3], result.trace_ids[1]])
    return result.trace_ids


def test_experiment_rows_are_the_root_span_inputs_with_trace_ids_and_expectations(traced):
    rows = load_rows(parse_source("experiment:test"))
    assert [r.id for r in rows] == list(traced)
    assert [r.trace_id for r in rows] == list(traced)
    assert rows[0].inputs == {"message": MESSAGES[0][1], "customer": {"tier": "gold"}}
    assert rows[0].expectations == {"expected_facts": ["30-day return window"]}
    assert rows[1].expectations == {}
    assert rows[2].tags["topic"] == "billing"
    assert [r.split for r in rows] == [assign_split(t) for t in traced]


def test_experiment_rows_filtered_by_queue_and_by_tags(traced):
    in_queue = load_rows(parse_source("experiment:test", queue="review"))
    assert sorted(r.id for r in in_queue) == sorted([traced[1], traced[3]])
    tagged = load_rows(parse_source("experiment:test", tags={"topic": "billing"}))
    assert [r.id for r in tagged] == [traced[2]]
    both = load_rows(parse_source("experiment:test", queue="review", tags={"topic": "product"}))
    assert [r.id for r in both] == [traced[3]]
    with pytest.raises(ValidationError):
        load_rows(parse_source("experiment:test", queue="review", tags={"topic": "billing"}))
    with pytest.raises(NotFoundError) as err:
        load_rows(parse_source("experiment:test", queue="nope"))
    assert "review" in str(err.value)
    with pytest.raises(NotFoundError):
        load_rows(parse_source("experiment:missing"))


def test_trace_rows_written_as_a_dataset_keep_their_trace_ids(traced, experiment):
    rows = load_rows(parse_source("experiment:test"))
    create_eval_dataset("from-traces", rows, experiment_id=experiment.experiment_id)
    back = {r.id: r for r in load_rows(parse_source("dataset:from-traces"))}
    assert set(back) == set(traced)
    assert all(back[t].trace_id == t for t in traced)


# --- fields and mapping ------------------------------------------------------------------

CHAT_ROW = DatasetRow(
    id="c1",
    inputs={
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Refund please"},
        ],
        "meta": {"order.id": 12, "flags": [True]},
        "message": "top",
    },
    expectations={},
    line=4,
)


def test_field_paths_list_nested_fields_and_list_ends():
    paths = field_paths([CHAT_ROW])
    for p in (
        "messages",
        "messages.0.role",
        "messages.-1.content",
        "meta",
        "meta.order.id",
        "meta.flags.0",
        "message",
    ):
        assert p in paths
    assert len(paths) == len(set(paths))


def test_get_field_follows_dotted_paths_and_negative_indices():
    assert get_field(CHAT_ROW.inputs, "messages.-1.content") == "Refund please"
    assert get_field(CHAT_ROW.inputs, "messages.0.role") == "user"
    assert get_field(CHAT_ROW.inputs, "meta.order.id") == 12
    for bad in ("messages.3.content", "messages.-4", "messages.x", "message.deeper", "nope", ""):
        with pytest.raises(KeyError):
            get_field(CHAT_ROW.inputs, bad)


def test_resolve_mapping_by_name_unless_explicit_and_checks_explicit_paths():
    rows = [CHAT_ROW, DatasetRow(id="r2", inputs={"message": "x"}, expectations={}, line=5)]
    assert resolve_mapping(["message", "tier"], rows) == {"message": "message"}
    assert resolve_mapping(
        ["message", "last"], rows, {"last": "messages.-1.content", "message": ""}
    ) == {
        "message": "message",
        "last": "messages.-1.content",
    }
    with pytest.raises(ValidationError) as err:
        resolve_mapping(["message"], rows, {"message": "messages.9.content"})
    assert "messages.-1.content" in str(err.value)
    with pytest.raises(ValidationError) as err:
        resolve_mapping(["message"], rows, {"other": "message"})
    assert "'other'" in str(err.value)


def test_check_mapping_names_unmapped_variables_and_rows_missing_a_field():
    rows = [CHAT_ROW] + [
        DatasetRow(id=f"r{i}", inputs={"message": "x"}, expectations={}, line=10 + i)
        for i in range(7)
    ]
    mapping = resolve_mapping(["message", "last", "tier"], rows, {"last": "messages.-1.content"})
    check = check_mapping(["message", "last", "tier"], rows, mapping)
    assert not check.ok
    assert check.unmapped == ("tier",)
    assert "messages.-1.content" in check.available
    assert check.missing_rows == {"last": (7, (10, 11, 12, 13, 14))}
    text = " ".join(check.problems())
    assert "tier" in text and "lines 10, 11, 12, 13, 14 ..." in text
    assert json.loads(json.dumps(check.to_dict()))["missing_rows"]["last"]["count"] == 7
    assert check_mapping(["message"], rows, {"message": "message"}).ok


def test_values_for_writes_text_chat_lines_and_json():
    mapping = {"m": "message", "chat": "messages", "n": "meta.order.id", "flags": "meta.flags"}
    assert values_for(CHAT_ROW, mapping) == {
        "m": "top",
        "chat": "user: Hi\nassistant: Hello\nuser: Refund please",
        "n": "12",
        "flags": "[true]",
    }
    with pytest.raises(ValidationError) as err:
        values_for(CHAT_ROW, {"x": "nope"})
    assert "line 4" in str(err.value)


def test_split_rows_uses_the_alignment_hash_and_keeps_order():
    rows = [DatasetRow(id=f"row-{i}", inputs={"i": i}, expectations={}) for i in range(50)]
    train, val, test = split_rows(rows)
    assert len(train) + len(val) + len(test) == 50
    for part, name in ((train, "train"), (val, "val"), (test, "test")):
        assert part and all(assign_split(r.id) == name for r in part)
        assert part == sorted(part, key=rows.index)
    assert split_rows(list(reversed(rows)))[2] == list(reversed(test))


def test_a_trace_without_object_inputs_stays_a_row_the_mapping_check_names(
    traced, experiment, monkeypatch
):
    import mlflow

    # The environment, not mlflow.set_experiment: no active experiment outlives the test.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment.experiment_id)
    with mlflow.start_span("app") as span:
        span.set_inputs("just a text")
    mlflow.flush_trace_async_logging()
    rows = load_rows(parse_source("experiment:test"))
    assert len(rows) == 5
    odd = rows[-1]
    assert odd.inputs == {"input": "just a text"} and odd.trace_id == odd.id
    check = check_mapping(["message"], rows, resolve_mapping(["message"], rows))
    assert check.missing_rows == {"message": (1, (5,))}
