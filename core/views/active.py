"""The Traces page's "Label next" panel: the most informative unlabeled traces, and why.

Built from :mod:`core.labeling.active` (the ranking rule is in its docstring): the rows of
the ranked table (each pick's reasons as plain text), the notes a reviewer should read
first, the button's label, and the message after a queue was filled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from core.views.formatting import preview_text

#: Traces the panel offers to add by default.
DEFAULT_N = 20
#: Characters of a request or response shown in a row.
PREVIEW_CHARS = 160


@dataclass(frozen=True)
class NextRow:
    """One ranked trace, as the table shows it."""

    rank: int
    """1 for the most informative."""
    trace: str
    """The name a reviewer knows it by (its import id, else the trace id)."""
    trace_id: str
    """MLflow's trace id."""
    score: float
    """The ranking's score (sum of the signal strengths)."""
    why: str
    """The reasons, one sentence each, separated by `` · ``."""
    request: str
    """The start of the trace's input, as text."""
    response: str
    """The start of the trace's output, as text."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class LabelNext:
    """What the panel shows for one criterion, queue and N."""

    criterion: str
    queue: str
    """The queue the button fills (may not exist yet)."""
    n: int
    """How many traces the user asked for."""
    rows: list[NextRow]
    """The top ``n`` of the pool, most informative first."""
    notes: tuple[str, ...] = ()
    """What the ranking could not use, or what to do first."""
    n_pool: int = 0
    """Unlabeled traces not yet in the queue."""
    n_in_queue: int = 0
    """Unlabeled traces left out because they are in the queue already."""
    n_with_signal: int = 0
    """Pool traces with at least one signal."""
    n_with_verdicts: int = 0
    """Pool traces with at least one judge verdict."""
    versions: tuple[int, ...] = field(default=())
    """Judge versions with verdicts on the pool."""

    @property
    def button_label(self) -> str:
        """The button's text (the count is what it will really add)."""
        k = len(self.rows)
        noun = "trace" if k == 1 else "traces"
        return f"Add the {k} most informative unlabeled {noun} to queue {self.queue}"

    @property
    def summary(self) -> str:
        """One line above the table."""
        versions = ", ".join(f"v{v}" for v in self.versions) or "none"
        text = (
            f"{self.n_pool:,} unlabeled traces not in {self.queue} "
            f"({self.n_with_verdicts:,} with judge verdicts; versions: {versions}); "
            f"{self.n_with_signal:,} with a signal."
        )
        if self.n_in_queue:
            text += f" {self.n_in_queue:,} unlabeled traces are in the queue already."
        return text

    def top(self, n: int) -> LabelNext:
        """The same view cut to its first ``n`` rows (the ranking is read once for any N)."""
        return replace(self, n=n, rows=self.rows[: max(0, n)])

    def table(self) -> list[dict[str, Any]]:
        """The rows as the dataframe's records."""
        return [
            {
                "rank": r.rank,
                "trace": r.trace,
                "why": r.why,
                "score": r.score,
                "request": r.request,
                "response": r.response,
            }
            for r in self.rows
        ]


def label_next(
    experiment_id: str, criterion: str, queue: str, n: int | None = DEFAULT_N
) -> LabelNext:
    """The ``n`` most informative unlabeled traces of ``criterion`` not yet in ``queue``.

    Args:
        experiment_id: The experiment.
        criterion: The criterion (= the judge's name).
        queue: The queue to fill (its traces are left out; it need not exist yet).
        n: Rows to build; None for the whole pool (cut it later with :meth:`LabelNext.top`).

    Raises:
        NotFoundError: unknown criterion.
        ValidationError: ``n`` below 1.
    """
    from core.errors import ValidationError
    from core.labeling.active import load_pool, rank_pool

    if n is not None and n < 1:
        raise ValidationError(f"Ask for at least one trace (n = {n}).")
    crit, data = load_pool(experiment_id, criterion, exclude_queue=queue or None)
    ranking = rank_pool(crit, data)
    rows = []
    picks = ranking.picks if n is None else ranking.picks[:n]
    for i, pick in enumerate(picks, start=1):
        request, response = data.previews.get(pick.trace_id, ("", ""))
        rows.append(
            NextRow(
                rank=i,
                trace=data.names.get(pick.trace_id, pick.trace_id),
                trace_id=pick.trace_id,
                score=pick.score,
                why=" · ".join(pick.reasons),
                request=preview_text(request)[:PREVIEW_CHARS],
                response=preview_text(response)[:PREVIEW_CHARS],
            )
        )
    return LabelNext(
        criterion=crit.name,
        queue=queue,
        n=len(rows) if n is None else n,
        rows=rows,
        notes=ranking.notes,
        n_pool=ranking.n_pool,
        n_in_queue=data.excluded,
        n_with_signal=sum(1 for p in ranking.picks if p.signals),
        n_with_verdicts=ranking.n_with_verdicts,
        versions=ranking.versions,
    )


def added_message(added: int, queue: str) -> str:
    """What the page says after filling a queue."""
    if added == 0:
        return f"Nothing to add: every unlabeled trace is in queue {queue} already."
    noun = "trace" if added == 1 else "traces"
    return f"Added {added} {noun} to queue {queue}, most informative first."
