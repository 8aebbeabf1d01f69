"""B4 (real-model quality) without a real model: the benchmark's code path against a
loopback OpenAI-compatible server that behaves like llama-cpp-python 0.2.60's (it refuses
``response_format`` ``json_schema`` with HTTP 500), and the model assembly on fake parts.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from benchmarks import real_model
from benchmarks.real_model import ModelInfo, RealModelError, ensure_model

# --- a fake llama.cpp server ----------------------------------------------------------

_REFUSAL = {
    "error": {
        "message": (
            "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
            "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
            "'input': 'json_schema'}"
        ),
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}


class _FakeLlama(BaseHTTPRequestHandler):
    """Judge: Fail when the reply promises a refund "today", else Pass. Reflection: the
    first answer parrots the reflection prompt back (the guard must reject it), later
    ones add a rule to the instructions they were shown."""

    reflections: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()
    stats: ClassVar[dict[str, int]] = {}

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        fmt = (body.get("response_format") or {}).get("type")
        with self.lock:
            self.stats[fmt or "text"] = self.stats.get(fmt or "text", 0) + 1
        if fmt == "json_schema":
            self._send(500, _REFUSAL)
            return
        text = "\n".join(str(m.get("content") or "") for m in body.get("messages", []))
        if "expert judge" in text:
            verdict = "today" not in text.split("outputs:")[-1].lower()
            content = json.dumps({"result": verdict, "rationale": "Checked against the policy."})
        else:
            with self.lock:
                type(self).reflections += 1
                first = type(self).reflections == 1
            if first:
                content = "```\n" + text + "\n```"  # the reflection prompt, parroted
            else:
                shown = re.search(r"```\n?(.*?)```", text, re.S)
                base = shown.group(1).strip() if shown else text[:2000]
                content = (
                    "```\n" + base + "\n\nRule: a reply that promises a refund today fails.\n```"
                )
        self._send(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            },
        )


@pytest.fixture
def fake_llama() -> Iterator[str]:
    from core.models.structured import reset_endpoint_modes

    _FakeLlama.reflections = 0
    _FakeLlama.stats = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLlama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    reset_endpoint_modes()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        reset_endpoint_modes()


def test_b4_runs_against_a_llama_like_server_and_computes_its_checks(
    fake_llama: str, tmp_path: Path
) -> None:
    from benchmarks import b4_real_quality as b4

    cfg = {"train": 4, "val": 3, "test": 4, "budget": 10, "workers": 2, "retrieval_k": 1}
    out = b4.run(
        cfg,
        base_url=fake_llama,
        model="openai:/fake",
        only=["gepa"],
        noise=True,
        judge_output="text",
    )

    row, demo_reflected = out["runs"]
    assert demo_reflected["reflection_model"] == "demo:/reflect"
    # Both runs were compared with the same seed verdicts (scored once), and asking the
    # seed again (the noise check) compares every test trace.
    assert demo_reflected["acc_before"] == row["acc_before"]
    assert out["seed_noise"]["compared"] == 4
    assert "error" not in row, row.get("error")
    assert row["optimizer"] == "gepa" and row["test_n"] == 4
    for key in ("acc_before", "acc_after", "kappa_before", "acc_before_ci", "wall_s", "tokens"):
        assert key in row
    assert row["llm_calls"] > 0 and row["tokens"] > 0
    assert set(row["flips"]) >= {"fixed", "broken", "unchanged", "summary"}
    # The server refused json_schema (HTTP 500) and the fallback answered every request.
    formats = out["structured_output"]
    assert _FakeLlama.stats.get("json_schema", 0) >= 1
    assert formats["format_refusals"] >= 1 and formats["lost_to_format"] == 0
    assert out["checks"]["no_call_lost_to_request_format"]["passed"] is True
    # The probe met the refusal in auto mode; then judges asked in plain text only.
    probe = out["structured_output"]["format_probe"]
    assert probe["refusals"] == 1 and probe["answered"] == probe["calls"] == 3, probe
    assert _FakeLlama.stats["json_schema"] == 1 and _FakeLlama.stats["text"] > 3
    # The parroted first reflection was rejected by the guard and never accepted.
    assert row["guard"]["rejected_degenerate"] >= 1
    assert row["guard"]["accepted_degenerate"] == []
    assert out["checks"]["no_degenerate_proposal_accepted"]["passed"] is True
    assert out["checks"]["registration_gate"]["passed"] is True

    # The checks are computed from the rows: a registered judge below the seed fails.
    worse = {**row, "acc_before": 0.75, "acc_after": 0.5, "registered": True}
    assert b4.checks([worse], formats)["registration_gate"]["passed"] is False
    lost = {**formats, "lost_to_format": 1}
    assert b4.checks([row], lost)["no_call_lost_to_request_format"]["passed"] is False
    died = {"label": "mlflow-gepa", "error": _REFUSAL["error"]["message"] + " (HTTP 500)"}
    assert b4.checks([row, died], formats)["no_call_lost_to_request_format"]["passed"] is False
    parroted = {**row, "guard": {**row["guard"], "accepted_degenerate": [{"iteration": 1}]}}
    assert b4.checks([parroted], formats)["no_degenerate_proposal_accepted"]["passed"] is False

    # JSON-ready, as --out writes it.
    from benchmarks.common import write_json

    write_json(tmp_path / "b4.json", {"b4": out})
    assert json.loads((tmp_path / "b4.json").read_text())["b4"]["checks"]


def test_mlflow_gepa_reaches_a_llama_like_server_and_loses_no_candidate_evaluation(
    fake_llama: str,
) -> None:
    """MLflow's GEPA rebuilds its judges without the base URL and falls back from
    json_schema only on HTTP 400: the run routes them to the judge's server and tells
    MLflow the server takes no json_schema, so candidates are scored, not failed."""
    from benchmarks import b4_real_quality as b4

    # MLflow's optimizers need 10 traces in train + validation.
    cfg = {"train": 6, "val": 4, "test": 4, "budget": 12, "workers": 2, "retrieval_k": 1}
    out = b4.run(
        cfg, base_url=fake_llama, model="openai:/fake", only=["mlflow-gepa"], stronger=False
    )
    (row,) = out["runs"]
    assert "error" not in row, row.get("error")
    assert row["optimizer"] == "mlflow-gepa" and row["metric_calls"] > 0
    # One refusal (our probe found the mode), then no json_schema request at all: before
    # the fix every candidate evaluation was a json_schema request refused with a 500.
    assert _FakeLlama.stats.get("json_schema", 0) == 1, _FakeLlama.stats
    assert out["checks"]["no_call_lost_to_request_format"]["passed"] is True
    assert out["checks"]["registration_gate"]["passed"] is True


# --- model assembly ---------------------------------------------------------------------


def _fake_parts(wheels: Path, info: ModelInfo, chunks: list[bytes]) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    for n, chunk in enumerate(chunks, start=1):
        pkg = info.package.format(n=n).replace("-", "_")
        with zipfile.ZipFile(wheels / f"{pkg}-{info.version}-py3-none-any.whl", "w") as z:
            z.writestr(f"{pkg}/__init__.py", "")
            z.writestr(f"{pkg}/data/part{n:02d}.bin", chunk)


def _info(chunks: list[bytes], sha: str | None = None) -> ModelInfo:
    whole = b"".join(chunks)
    return ModelInfo(
        name="tiny",
        package="fake-model-part{n}",
        version="1.0",
        parts=len(chunks),
        size=len(whole),
        sha256=sha or hashlib.sha256(whole).hexdigest(),
        filename="tiny.gguf",
        alias="tiny",
    )


def test_ensure_model_assembles_parts_in_order_and_is_idempotent(tmp_path: Path) -> None:
    chunks = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    info = _info(chunks)
    # Written out of order on disk: assembly follows the part numbers.
    _fake_parts(tmp_path / "wheels" / "tiny", info, chunks)
    path = ensure_model(info, cache=tmp_path)
    assert path.read_bytes() == b"".join(chunks)
    mtime = path.stat().st_mtime_ns
    assert ensure_model(info, cache=tmp_path) == path  # nothing to download or rebuild
    assert path.stat().st_mtime_ns == mtime


def test_ensure_model_refuses_a_file_whose_checksum_differs(tmp_path: Path) -> None:
    chunks = [b"GGUF1234", b"5678"]
    info = _info(chunks, sha="0" * 64)
    _fake_parts(tmp_path / "wheels" / "tiny", info, chunks)
    with pytest.raises(RealModelError, match="sha256"):
        ensure_model(info, cache=tmp_path)
    assert not (tmp_path / "tiny.gguf").exists()
    assert not list(tmp_path.glob("*.part"))


def test_recorded_models_are_the_measured_files() -> None:
    assert real_model.MODELS["1.5b"].size == 1_117_320_768
    assert real_model.MODELS["0.5b"].size == 491_400_064
    assert all(len(m.sha256) == 64 for m in real_model.MODELS.values())


def test_runtime_is_chosen_by_flag_then_environment_then_default(monkeypatch):
    monkeypatch.delenv(real_model.RUNTIME_ENV, raising=False)
    assert real_model.runtime_info().name == real_model.DEFAULT_RUNTIME
    monkeypatch.setenv(real_model.RUNTIME_ENV, "compiled")
    assert real_model.runtime_info().name == "compiled"
    assert real_model.runtime_info("prebuilt").name == "prebuilt"
    # Each runtime has its own venv, so switching never half-upgrades the other.
    assert len({r.venv for r in real_model.RUNTIMES.values()}) == len(real_model.RUNTIMES)


def test_an_unknown_runtime_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(real_model.RUNTIME_ENV, "cuda")
    with pytest.raises(RealModelError, match=r"unknown llama\.cpp runtime 'cuda'.*prebuilt"):
        real_model.runtime_info()


def test_the_compiled_runtime_never_builds_amx_or_reuses_a_cached_wheel():
    compiled = real_model.RUNTIMES["compiled"]
    cmake = dict(compiled.build_env)["CMAKE_ARGS"]
    # A native build enables AMX tiles, which this machine's VM does not grant: the first
    # decode died with a general protection fault (measured 2026-12-03).
    assert "-DGGML_NATIVE=OFF" in cmake
    assert all(f"-DGGML_AMX_{k}=OFF" in cmake for k in ("TILE", "INT8", "BF16"))
    assert "--no-cache-dir" in compiled.pip_args
