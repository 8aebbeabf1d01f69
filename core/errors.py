"""Errors alignboard raises on purpose.

Every message tells the user what to do next. Systemic failures are exceptions;
per-item failures are data (see the alignment engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class AlignboardError(Exception):
    """Base class of every error alignboard raises on purpose."""


class ValidationError(AlignboardError):
    """Input that cannot be accepted: a bad value, a missing field, an unknown name."""


class NotFoundError(AlignboardError):
    """A named thing (experiment, trace, criterion, queue, judge) does not exist."""


class CredentialsError(AlignboardError):
    """A model needs an API key that is not configured."""


class ModelError(AlignboardError):
    """A model name cannot be used (unknown provider, malformed URI)."""


class StoreUnavailableError(AlignboardError):
    """The MLflow store (a database or an MLflow server) does not answer."""


@dataclass(frozen=True)
class RowError:
    """One bad row of an input file."""

    line: int
    """1-based line number in the file (for CSV: the physical line of the row)."""
    reason: str
    """What is wrong, in words a user can act on."""

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportFileError(ValidationError):
    """A file that cannot be imported. Nothing was written."""

    path: str
    errors: list[RowError] = field(default_factory=list)
    message: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        head = self.message or f"{self.path}: {len(self.errors)} bad row(s); nothing was written"
        shown = "\n".join(f"  {e}" for e in self.errors[:50])
        more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        return f"{head}\n{shown}{more}" if self.errors else head
