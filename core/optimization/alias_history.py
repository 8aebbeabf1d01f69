"""The append-only history of alias changes, for judges and prompts alike.

Every time an alias (e.g. ``production``) is set, promoted, rolled back or undone, one
:class:`AliasChange` is written: where the alias points now, where it pointed before, who
moved it, when, and the run that produced the version (when known). "Roll back" reads
this history to return the alias to its previous target, never to "an earlier version".

Storage: each change is its own experiment tag (a few hundred characters of JSON), so the
history never grows one value toward MLflow's 20,000-character limit, and two writers
never overwrite each other's entry::

    alignboard.alias_history.<kind>.<name>.<alias>.<13-digit ms>-<4 random hex>

The value holds every field (kind, name and alias included), so reading is one
``get_experiment`` tag scan filtered on the value, not on a parse of the key (names and
aliases may contain dots). Keys too long for MLflow's 250-character tag key use a digest of
``<name>.<alias>`` instead.

Judges are registered per experiment, so their history lives in that experiment. Prompts
live in MLflow's workspace-wide Prompt Registry, but have no place for such a history
there: a prompt's alias history is kept in the experiment the user works in (the one
passed to :func:`record_change`), so each experiment sees the changes made from it. The
alias itself stays where MLflow resolves it: prompts use MLflow's native prompt aliases
(``prompts:/<name>@production`` loads the current target); judges use alignboard's alias
tags (:mod:`core.optimization.registry`) because MLflow's scorer registry has no aliases.

Rollback semantics (:func:`replay`): the history is replayed oldest first as a stack of
targets. ``set``/``promote`` push the new target (setting the current target again changes
nothing); ``rollback`` pops the current target; ``undo`` reverses the change before it (it
pops when it returns to the target below the top, else it pushes). "Roll back" goes to the
target below the top: v1 -> v5 -> roll back = v1, and a second roll back goes to whatever
was before v1, or is refused when nothing was. An entry's ``previous_version`` that the
stack does not know (an alias set before this history existed, or moved outside
alignboard) is pushed first, so the first recorded change still knows its predecessor.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import ValidationError
from core.store import config

HISTORY_PREFIX = "alignboard.alias_history."
#: What a change can be.
ACTIONS: tuple[str, ...] = ("set", "promote", "rollback", "undo")
KINDS: tuple[str, ...] = ("judge", "prompt")
#: MLflow's limit for an experiment tag key.
MAX_KEY_CHARS = 250
#: Prompt version tag naming the run that registered it (as prompt_task writes it).
PROMPT_VERSION_TAG_RUN = "alignboard.run_id"


@dataclass(frozen=True)
class AliasChange:
    """One change of an alias: where it points now and where it pointed before."""

    kind: str
    """``judge`` or ``prompt``."""
    name: str
    """The judge's or prompt's registered name."""
    alias: str
    """The alias moved, e.g. ``production``."""
    version: int
    """Where the alias points after this change."""
    previous_version: int | None
    """Where it pointed before (None: it was not set)."""
    action: str
    """``set``, ``promote``, ``rollback`` or ``undo``."""
    who: str
    """Who moved it: the dashboard's user, the CLI's ``--who``, or ``alignboard (run ...)``."""
    when_ms: int
    """When, epoch milliseconds."""
    run_id: str | None = None
    """The run that produced ``version``, if known."""
    key: str = ""
    """The experiment tag holding this entry (empty before it is written)."""

    @property
    def when(self) -> str:
        """``when_ms`` as ISO 8601 in UTC, with milliseconds."""
        return datetime.fromtimestamp(self.when_ms / 1000, tz=UTC).isoformat(
            timespec="milliseconds"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``when`` is ISO 8601; ``when_ms`` the same instant)."""
        return {
            "version": self.version,
            "previous_version": self.previous_version,
            "action": self.action,
            "who": self.who,
            "when": self.when,
            "when_ms": self.when_ms,
            "run_id": self.run_id,
            "kind": self.kind,
            "name": self.name,
            "alias": self.alias,
        }


def default_who() -> str:
    """The person behind this process (``$USER``, else the login name, else ``unknown``)."""
    try:
        return os.environ.get("USER") or getpass.getuser() or "unknown"
    except Exception:  # getpass raises when no user name is known at all
        return "unknown"


def _client():
    import mlflow

    config.configure()
    return mlflow.MlflowClient()


def history_key(kind: str, name: str, alias: str, when_ms: int, nonce: str) -> str:
    """The experiment tag key of one entry (a digest stands in for a too-long name)."""
    stem = f"{name}.{alias}"
    key = f"{HISTORY_PREFIX}{kind}.{stem}.{int(when_ms):013d}-{nonce}"
    if len(key) > MAX_KEY_CHARS:
        digest = hashlib.sha1(stem.encode("utf-8")).hexdigest()[:16]
        key = f"{HISTORY_PREFIX}{kind}.{digest}.{int(when_ms):013d}-{nonce}"
    return key


def _check(kind: str, action: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"Unknown kind {kind!r}; choose judge or prompt.")
    if action not in ACTIONS:
        raise ValidationError(f"Unknown alias action {action!r}; one of {', '.join(ACTIONS)}.")


def _entry(key: str, value: str) -> AliasChange | None:
    try:
        d = json.loads(value)
        return AliasChange(
            kind=str(d["kind"]),
            name=str(d["name"]),
            alias=str(d["alias"]),
            version=int(d["version"]),
            previous_version=None if d.get("previous") is None else int(d["previous"]),
            action=str(d["action"]),
            who=str(d.get("who") or "unknown"),
            when_ms=int(d["when_ms"]),
            run_id=d.get("run_id"),
            key=key,
        )
    except (ValueError, KeyError, TypeError):
        return None  # not ours, or hand-edited beyond reading: skipped, never fatal


def _from_tags(tags: dict[str, str], kind: str, name: str, alias: str | None) -> list[AliasChange]:
    found = []
    for key, value in tags.items():
        if not key.startswith(f"{HISTORY_PREFIX}{kind}."):
            continue
        entry = _entry(key, value)
        if entry is None or entry.kind != kind or entry.name != name:
            continue
        if alias is not None and entry.alias != alias:
            continue
        found.append(entry)
    # Newest first; the key (ms, then random hex) orders entries written in the same ms.
    return sorted(found, key=lambda e: (e.when_ms, e.key), reverse=True)


def history(
    experiment_id: str, kind: str, name: str, alias: str | None = None
) -> list[AliasChange]:
    """Every recorded change of ``alias`` of judge/prompt ``name``, newest first.

    Args:
        experiment_id: The experiment holding the history (a prompt's: the one it was
            changed from).
        kind: ``judge`` or ``prompt``.
        name: Registered name.
        alias: One alias; None for every alias of ``name`` (still newest first).
    """
    tags = dict(_client().get_experiment(str(experiment_id)).tags)
    return _from_tags(tags, kind, name, alias)


def record_change(
    experiment_id: str,
    kind: str,
    name: str,
    alias: str,
    version: int,
    previous_version: int | None,
    action: str,
    who: str | None = None,
    run_id: str | None = None,
) -> AliasChange:
    """Append one change to the history (one new experiment tag; nothing is rewritten).

    Call it right after the alias moved. Its time is now, but strictly after the newest
    entry of the same alias, so one writer's changes keep their order even within one
    millisecond.

    Args:
        experiment_id: Where the history lives (see the module docstring for prompts).
        kind: ``judge`` or ``prompt``.
        name: Registered name.
        alias: The alias moved.
        version: Where it points now.
        previous_version: Where it pointed before (None: unset).
        action: ``set``, ``promote``, ``rollback`` or ``undo``.
        who: Who did it (default: :func:`default_who`).
        run_id: The run that produced ``version``, if known.

    Returns:
        The entry written.
    """
    _check(kind, action)
    client = _client()
    tags = dict(client.get_experiment(str(experiment_id)).tags)
    newest = _from_tags(tags, kind, name, alias)
    when = int(time.time() * 1000)
    if newest and when <= newest[0].when_ms:
        when = newest[0].when_ms + 1
    key = history_key(kind, name, alias, when, secrets.token_hex(2))
    entry = AliasChange(
        kind=kind,
        name=name,
        alias=alias,
        version=int(version),
        previous_version=None if previous_version is None else int(previous_version),
        action=action,
        who=(who or "").strip() or default_who(),
        when_ms=when,
        run_id=run_id,
        key=key,
    )
    value = {
        "kind": kind,
        "name": name,
        "alias": alias,
        "version": entry.version,
        "previous": entry.previous_version,
        "action": action,
        "who": entry.who,
        "when_ms": when,
        "run_id": run_id,
    }
    client.set_experiment_tag(str(experiment_id), key, json.dumps(value, sort_keys=True))
    return entry


def replay(changes: list[AliasChange]) -> list[int]:
    """The stack of targets the history describes, bottom first (the top is the current
    target); see the module docstring for the rules.

    Args:
        changes: One alias's history, newest first (as :func:`history` returns it).
    """
    stack: list[int] = []
    for c in reversed(changes):
        if c.previous_version is not None and (not stack or stack[-1] != c.previous_version):
            stack.append(c.previous_version)  # set before this history, or moved outside it
        if c.action == "rollback":
            if stack:
                stack.pop()
            if c.version in stack:
                del stack[stack.index(c.version) + 1 :]  # popped down to where it went
            else:
                stack.append(c.version)
        elif c.action == "undo" and len(stack) >= 2 and stack[-2] == c.version:
            stack.pop()  # undoing a set: back to the target below
        elif not stack or stack[-1] != c.version:
            stack.append(c.version)  # set, promote, or undoing a rollback
    return stack


def previous_target(changes: list[AliasChange]) -> int | None:
    """The version the alias pointed at before its current target, per history.

    None when the history is empty or nothing came before the current target.

    Args:
        changes: One alias's history, newest first.
    """
    stack = replay(changes)
    return stack[-2] if len(stack) >= 2 else None


def rollback_target(changes: list[AliasChange], current: int | None, label: str) -> int:
    """Where "Roll back" moves an alias now pointing at ``current``.

    Args:
        changes: The alias's history, newest first.
        current: Where the alias points now (None: unset).
        label: How messages name the alias, e.g. ``production of judge 'helpful'``.

    Raises:
        ValidationError: the alias is not set, has no history (set before alignboard kept
            one: refused rather than guessing), its history disagrees with where it points
            (moved outside alignboard), or nothing came before its current target.
    """
    if current is None:
        raise ValidationError(f"{label} is not set; set it on a version first.")
    if not changes:
        raise ValidationError(
            f"{label} points at v{current} but has no recorded history (it was set before "
            "alignboard kept one), so there is no previous target to roll back to. Set it "
            "on the version you want instead."
        )
    stack = replay(changes)
    if stack[-1] != current:
        raise ValidationError(
            f"{label} points at v{current}, but its history ends at v{stack[-1]}: it was "
            "moved outside alignboard. Set it on the version you want instead."
        )
    if len(stack) < 2:
        raise ValidationError(
            f"{label} has no previous target: v{current} is the first version it pointed at."
        )
    return stack[-2]


def _prompt_run_id(name: str, version: int) -> str | None:
    try:
        pv = _client().get_prompt_version(name, int(version))
    except Exception:
        return None
    return dict(getattr(pv, "tags", None) or {}).get(PROMPT_VERSION_TAG_RUN)


def prompt_alias_target(name: str, alias: str) -> int | None:
    """The version MLflow resolves ``prompts:/<name>@<alias>`` to, or None when unset."""
    from mlflow.exceptions import MlflowException

    try:
        pv = _client().get_prompt_version_by_alias(name, alias)
    except MlflowException:
        return None
    return None if pv is None else int(pv.version)


def set_prompt_alias(
    experiment_id: str,
    name: str,
    alias: str,
    version: int,
    *,
    action: str = "set",
    who: str | None = None,
    run_id: str | None = None,
) -> AliasChange:
    """Move a prompt's native MLflow alias and record the change: the one path for prompts.

    Args:
        experiment_id: The experiment the change is made from (keeps its history).
        name: The prompt's registered name.
        alias: The alias, e.g. ``production``.
        version: The version it moves to.
        action: ``set``, ``promote``, ``rollback`` or ``undo``.
        who: Who did it (default: :func:`default_who`).
        run_id: The run that produced ``version`` (default: the version's
            ``alignboard.run_id`` tag, when an optimization registered it).

    Raises:
        ValidationError: a bad alias or version.
        NotFoundError: no such prompt or version.
    """
    from core.store.prompts import set_prompt_alias as set_native

    _check("prompt", action)
    alias = (alias or "").strip()
    previous = prompt_alias_target(name, alias) if alias else None
    set_native(name, alias, int(version))
    return record_change(
        experiment_id,
        "prompt",
        name,
        alias,
        int(version),
        previous,
        action,
        who=who,
        run_id=run_id or _prompt_run_id(name, int(version)),
    )
