"""Two prompts' outputs on the same held-out inputs, side by side (Run explorer, Versions).

Every output, input and rationale is model or dataset text: it is drawn with ``st.text`` /
``st.code``, never as markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from core.views.formatting import number
from core.views.prompt_runs import ScorerScore, ScorerVerdict, SideBySide, score_rows


def _verdicts(verdicts: Sequence[ScorerVerdict]) -> None:
    for v in verdicts:
        if v.skipped:
            st.caption(f"{v.scorer}: skipped (nothing to check on this input)")
            continue
        st.caption(f"{v.scorer}: {v.value}")
        st.text(v.error or v.rationale or "(no rationale)")


def side_by_side(side: SideBySide, key: str) -> None:
    """Draw each held-out input with both outputs, their scores and every verdict."""
    counts = side.counts()
    st.caption(
        f"{side.seed_label} and {side.label} on the same {len(side.rows)} held-out inputs the "
        f"optimizer never saw: {side.label} is better on {counts['better']}, worse on "
        f"{counts['worse']}, the same on {counts['same']}"
        + (f", failed on {counts['failed']}" if counts["failed"] else "")
        + "."
    )
    for i, pair in enumerate(side.rows):
        with st.container(border=True, key=f"{key}_{i}"):
            st.markdown(f"**Input `{pair.row_id}`** · {pair.outcome}")
            st.text(pair.inputs)
            cols = st.columns(2)
            for col, title, output, score, verdicts in (
                (cols[0], side.seed_label, pair.seed_output, pair.seed_score, pair.seed_verdicts),
                (cols[1], side.label, pair.output, pair.score, pair.verdicts),
            ):
                with col:
                    st.markdown(f"**{title}** · score {number(score, 2)}")
                    st.code(
                        output if output is not None else "(the application call failed)",
                        language=None,
                        wrap_lines=True,
                    )
                    _verdicts(verdicts)


def scores_table(scores: Sequence[ScorerScore], before: str, after: str, key: str) -> None:
    """Per-scorer held-out scores with 95% intervals, ``before`` and ``after`` columns."""
    st.dataframe(
        score_rows(scores, before, after),
        hide_index=True,
        key=key,
        column_config={
            k: st.column_config.NumberColumn(format="%.3f")
            for k in (f"{before} score", f"{after} score", "change")
        },
    )
