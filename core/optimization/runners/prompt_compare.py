"""Not an optimizer: two existing versions of a prompt, scored on the held-out rows.

The Versions page compares any two prompt versions; when no finished run scored exactly
those two, it launches a comparison: a prompt run with optimizer ``compare`` whose runner
spends nothing and returns the other version as the "best" candidate, so the engine's
held-out step (:func:`core.optimization.prompt_task.score_prompts`) scores both on the
test rows and records both outputs of every row and the verdict, in the same record as an
optimization. Nothing is registered.
"""

from __future__ import annotations

from typing import Any

from core.optimization import record
from core.optimization.spec import AlignmentOutcome, RunRecorder


def run_compare(
    task: Any, train: list[Any], val: list[Any], recorder: RunRecorder
) -> AlignmentOutcome:
    """Return version ``task.settings.compare_version`` of the prompt as the candidate.

    Args:
        task: A :class:`core.optimization.prompt_task.PromptTask` with optimizer ``compare``.
        train: Unused (nothing is optimized).
        val: Unused.
        recorder: The run; the two versions are recorded as its two candidates.
    """
    from core.store.prompts import PromptRef, load_prompt

    s = task.settings
    name = s.prompt.name
    other = load_prompt(PromptRef(name, version=s.compare_version)).text()
    seed = task.seed_candidate()[name]
    record.write_candidates(
        recorder,
        [
            record.Candidate(id=0, instructions=seed),
            record.Candidate(id=1, parent_ids=(0,), instructions=other),
        ],
    )
    return AlignmentOutcome(
        optimizer="compare",
        instructions=other,
        judge=None,
        candidate={name: other},
        extra={"compared_versions": [s.prompt.version, s.compare_version]},
    )
