"""A job's resumable state, kept in its MLflow run's artifacts under ``state/``.

The job folder ``<data dir>/jobs/<run_id>`` (gepa's run dir with its state pickle, the
verdict and output caches, the iteration and proposal logs, MemAlign's last aligned
chunk) is only a cache of what lives in the run: :func:`checkpoint` uploads the files
that changed since the last upload, :func:`restore` brings them back into an empty or
older job folder, so a job killed on one host resumes on another (another data folder)
without redoing the iterations it completed.

Layout in the run's artifacts::

    state/<relative path>   one artifact per file of the job folder (job.log excluded)
    state/manifest.json     {"files": {rel: {"size", "mtime_ns", "sha256"}}, "at": epoch}

The manifest is written after the files it lists, so a reader that sees it finds every
file it lists (possibly a newer version of one: the runners tolerate a state pickle a
little ahead of, or behind, the caches). Each file is replaced whole: on a local artifact
store it is written next to its final place and renamed; elsewhere (``mlflow server``
with proxied artifacts, ``mlflow-artifacts:`` URIs) ``MlflowClient.log_artifact``
uploads it whole, replacing the previous version.

What was uploaded is remembered in the job folder's ``.state_manifest.json`` (size and
mtime per file), so a checkpoint with nothing new costs one directory scan and no store
call. Files are snapshot (hard link, else copy) before uploading: gepa rewrites its
pickle by rename while an upload may still be reading the previous one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.optimization.recorder import local_artifact_dir, read_artifact_text, with_retry
from core.optimization.recorder import write_artifact as _write_text_artifact

if TYPE_CHECKING:
    from mlflow import MlflowClient

_log = logging.getLogger(__name__)

STATE_DIR = "state"
MANIFEST = f"{STATE_DIR}/manifest.json"
#: What this job folder last uploaded (never uploaded itself).
LOCAL_MANIFEST = ".state_manifest.json"
#: Not state: the job's log is per attempt and per host.
EXCLUDED = frozenset({"job.log", LOCAL_MANIFEST})
_UNSET: Any = object()
# One checkpoint at a time per job folder (the writer thread and a final checkpoint may meet).
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class CheckpointStats:
    """What one :func:`checkpoint` did: files and bytes uploaded, seconds taken."""

    files: int
    bytes: int
    seconds: float


def _lock(work_dir: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(work_dir.resolve()), threading.Lock())


def _is_state_file(rel: str) -> bool:
    parts = rel.split("/")
    # Hidden: our staging folders and half-written files (``.tmp-*``); ``*.tmp``: gepa's.
    return (
        rel not in EXCLUDED
        and not any(p.startswith(".") for p in parts)
        and not parts[-1].endswith(".tmp")
    )


def _scan(work_dir: Path, names: Iterable[str] | None) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of the state files (under ``names`` if given)."""
    roots = [work_dir / n for n in names] if names is not None else [work_dir]
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        paths = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file())
        for path in paths:
            rel = path.relative_to(work_dir).as_posix()
            if not _is_state_file(rel):
                continue
            with contextlib.suppress(FileNotFoundError):  # replaced meanwhile: next time
                st = path.stat()
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_local_manifest(work_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((work_dir / LOCAL_MANIFEST).read_text(encoding="utf-8"))
        return dict(data.get("files") or {})
    except (OSError, ValueError):
        return {}


def _write_local_manifest(work_dir: Path, files: dict[str, dict[str, Any]]) -> None:
    tmp = work_dir / f".tmp-{LOCAL_MANIFEST}"
    tmp.write_text(json.dumps({"files": files}), encoding="utf-8")
    tmp.replace(work_dir / LOCAL_MANIFEST)


def _snapshot(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # the inode as it is now; a later rename by gepa does not touch it
    except OSError:
        shutil.copy2(src, dst)


def _put_local(staged: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(staged, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint(
    client: MlflowClient,
    run_id: str,
    work_dir: Path | str,
    names: Iterable[str] | None = None,
    *,
    local: Path | None = _UNSET,
) -> CheckpointStats:
    """Upload the job folder's state files that changed since the last checkpoint.

    Args:
        client: Client of the run's tracking store.
        run_id: The job's run.
        work_dir: The job folder (``recorder.work_dir``).
        names: Only these files or folders of the job folder (relative); None: all.
        local: The run's artifact folder if on this disk, None if remote; default: looked up.

    Returns:
        What was uploaded (zero files when nothing changed).
    """
    work_dir = Path(work_dir)
    started = time.monotonic()
    with _lock(work_dir):
        uploaded = _read_local_manifest(work_dir)
        current = _scan(work_dir, names)
        changed = [
            rel
            for rel, (size, mtime) in sorted(current.items())
            if (uploaded.get(rel) or {}).get("size") != size
            or (uploaded.get(rel) or {}).get("mtime_ns") != mtime
        ]
        if not changed:
            return CheckpointStats(0, 0, time.monotonic() - started)
        if local is _UNSET:
            local = local_artifact_dir(client, run_id)
        total = 0
        stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=work_dir))
        try:
            for rel in changed:
                staged = stage / rel
                try:
                    _snapshot(work_dir / rel, staged)
                except FileNotFoundError:
                    continue  # removed since the scan
                size = staged.stat().st_size
                entry: dict[str, Any] = {"size": current[rel][0], "mtime_ns": current[rel][1]}
                entry["sha256"] = _sha256(staged)
                if local is not None:
                    _put_local(staged, local / STATE_DIR / rel)
                else:
                    parent = f"{STATE_DIR}/{rel}".rsplit("/", 1)[0]
                    with_retry(client.log_artifact, run_id, str(staged), parent)
                uploaded[rel] = entry
                total += size
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        manifest = {"files": uploaded, "at": time.time()}
        _write_text_artifact(client, run_id, MANIFEST, json.dumps(manifest), local)
        _write_local_manifest(work_dir, uploaded)
        return CheckpointStats(len(changed), total, time.monotonic() - started)


def restore(
    client: MlflowClient,
    run_id: str,
    work_dir: Path | str,
    *,
    local: Path | None = _UNSET,
) -> list[str]:
    """Bring the run's ``state/`` into the job folder where the local copy is missing or
    older (a resume on another host, or after the job folder was lost).

    A local file with the checkpointed content, or written after the checkpoint (this
    host got further before it stopped), is kept.

    Returns:
        The relative paths restored.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if local is _UNSET:
        local = local_artifact_dir(client, run_id)
    text = read_artifact_text(client, run_id, MANIFEST)
    if not text:
        return []
    files: dict[str, dict[str, Any]] = dict(json.loads(text).get("files") or {})
    restored: list[str] = []
    with _lock(work_dir):
        tmp_root = Path(tempfile.mkdtemp(prefix=".restore-", dir=work_dir))
        try:
            for rel, entry in sorted(files.items()):
                target = work_dir / rel
                if target.is_file():
                    st = target.stat()
                    if (
                        st.st_mtime_ns > int(entry["mtime_ns"])
                        or _sha256(target) == entry["sha256"]
                    ):
                        continue
                if local is not None:
                    source = local / STATE_DIR / rel
                    fetched = tmp_root / rel
                    fetched.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, fetched)
                else:
                    fetched = Path(
                        client.download_artifacts(run_id, f"{STATE_DIR}/{rel}", str(tmp_root))
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(fetched, target)
                # The checkpoint's mtime: the next checkpoint sees nothing new to upload.
                os.utime(target, ns=(int(entry["mtime_ns"]), int(entry["mtime_ns"])))
                restored.append(rel)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
        known = _read_local_manifest(work_dir)
        for rel in restored:
            known[rel] = files[rel]
        _write_local_manifest(work_dir, known)
    if restored:
        _log.info("restored %d state files of run %s into %s", len(restored), run_id, work_dir)
    return restored
