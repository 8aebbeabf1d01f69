"""Word-level diffs of judge instructions, and a safe HTML rendering of them.

Texts are split into words, punctuation and whitespace runs, diffed with :mod:`difflib`,
and returned as a list of :class:`DiffOp` whose texts concatenate back to the inputs:
the ``equal`` and ``delete`` ops give the old text, the ``equal`` and ``insert`` ops the
new one. :func:`diff_html` escapes every piece of text before wrapping it in ``<ins>`` /
``<del>``, so instructions can hold any markup without it ever being interpreted.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

DiffKind = Literal["equal", "insert", "delete"]
# A word, a run of whitespace, or one punctuation character.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class DiffOp:
    """One run of unchanged, inserted or deleted text."""

    kind: DiffKind
    """``equal``, ``insert`` (only in the new text) or ``delete`` (only in the old)."""
    text: str
    """The text of the run, whitespace included."""

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class DiffStats:
    """How much a diff changed, counted in words (whitespace and punctuation excluded)."""

    words_added: int
    """Words only in the new text."""
    words_removed: int
    """Words only in the old text."""
    words_unchanged: int
    """Words in both."""
    similarity: float
    """Unchanged words over the words of the longer text (1.0 for identical texts)."""

    @property
    def changed(self) -> bool:
        """True when anything was added or removed."""
        return bool(self.words_added or self.words_removed)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into words, punctuation characters and whitespace runs (lossless)."""
    return _TOKEN.findall(text or "")


def _append(ops: list[DiffOp], kind: DiffKind, text: str) -> None:
    if not text:
        return
    if ops and ops[-1].kind == kind:
        ops[-1] = DiffOp(kind, ops[-1].text + text)
    else:
        ops.append(DiffOp(kind, text))


def word_diff(old: str, new: str) -> list[DiffOp]:
    """Diff two texts word by word.

    Args:
        old: The earlier text (e.g. the parent candidate's instructions).
        new: The later text.

    Returns:
        Ops in reading order; adjacent ops of the same kind are merged, and a replaced
        span comes out as its ``delete`` followed by its ``insert``.
    """
    a, b = tokenize(old), tokenize(new)
    # autojunk would treat frequent tokens (spaces, "the") as junk in long prompts.
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    ops: list[DiffOp] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            _append(ops, "equal", "".join(a[i1:i2]))
            continue
        if tag in ("delete", "replace"):
            _append(ops, "delete", "".join(a[i1:i2]))
        if tag in ("insert", "replace"):
            _append(ops, "insert", "".join(b[j1:j2]))
    return ops


def _words(text: str) -> int:
    return sum(1 for t in tokenize(text) if t[0].isalnum() or t[0] == "_")


def diff_stats(ops: list[DiffOp]) -> DiffStats:
    """Count the words a diff added, removed and kept."""
    counts = {"equal": 0, "insert": 0, "delete": 0}
    for op in ops:
        counts[op.kind] += _words(op.text)
    longer = max(counts["equal"] + counts["delete"], counts["equal"] + counts["insert"])
    return DiffStats(
        words_added=counts["insert"],
        words_removed=counts["delete"],
        words_unchanged=counts["equal"],
        similarity=counts["equal"] / longer if longer else 1.0,
    )


def old_text(ops: list[DiffOp]) -> str:
    """The old text a diff was made from."""
    return "".join(op.text for op in ops if op.kind != "insert")


def new_text(ops: list[DiffOp]) -> str:
    """The new text a diff was made from."""
    return "".join(op.text for op in ops if op.kind != "delete")


def inserted_text(ops: list[DiffOp], limit: int | None = None) -> str:
    """The inserted runs joined with " … " (cut to ``limit`` characters)."""
    text = " … ".join(op.text.strip() for op in ops if op.kind == "insert" and op.text.strip())
    if limit is not None and len(text) > limit:
        return text[: max(limit - 1, 0)] + "…"
    return text


#: Inline styles of the rendered diff (no class names, so nothing on the page restyles it).
INSERT_STYLE = "background:#d1f5d3;color:#0b4f14;text-decoration:none;"
DELETE_STYLE = "background:#fbd5d5;color:#7a1010;text-decoration:line-through;"
BLOCK_STYLE = (
    "white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,SFMono-Regular,"
    "Menlo,monospace;font-size:0.85rem;line-height:1.5;padding:0.75rem;border:1px solid "
    "rgba(128,128,128,0.3);border-radius:0.5rem;"
)


def diff_html(ops: list[DiffOp]) -> str:
    """Render a diff as an HTML block: insertions in green ``<ins>``, deletions struck out.

    Every text is passed through :func:`html.escape` (quotes included) before it is
    wrapped, so the only markup in the result is the markup written here.
    """
    parts = []
    for op in ops:
        text = html.escape(op.text, quote=True)
        if op.kind == "insert":
            parts.append(f'<ins style="{INSERT_STYLE}">{text}</ins>')
        elif op.kind == "delete":
            parts.append(f'<del style="{DELETE_STYLE}">{text}</del>')
        else:
            parts.append(text)
    return f'<div class="alignboard-diff" style="{BLOCK_STYLE}">{"".join(parts)}</div>'
