"""The early-stop controls of the Align and Optimize pages (one compact expander).

The expander's label says the policy in force (the defaults: a perfect validation score
or :data:`core.optimization.stopping.DEFAULT_PATIENCE` proposals without improvement);
for an optimizer that is not gepa's loop it is replaced by a one-line note, so no control
is drawn that would do nothing.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.optimization.stopping import (
    DEFAULT_PATIENCE,
    GEPA_ONLY_NOTE,
    STOP_HELP,
    StopPolicy,
    make_policy,
)

#: Session fields (under the page's prefix) the controls hold, for ``init_page_state``.
KEPT = ("stop_perfect", "stop_patience", "stop_minutes", "stop_cost")
#: Their defaults: the policy's.
DEFAULTS: dict[str, Any] = {
    "stop_perfect": True,
    "stop_patience": DEFAULT_PATIENCE,
    "stop_minutes": 0.0,
    "stop_cost": 0.0,
}


def policy(prefix: str) -> StopPolicy:
    """The policy the controls hold (the committed values)."""
    ss = st.session_state
    return make_policy(
        at_perfect=bool(ss[f"{prefix}_stop_perfect"]),
        patience=int(ss[f"{prefix}_stop_patience"]),
        max_minutes=float(ss[f"{prefix}_stop_minutes"]),
        max_cost_usd=float(ss[f"{prefix}_stop_cost"]),
    )


def draw(prefix: str, optimizer: str) -> None:
    """The controls, in an expander labelled with the policy; a note for other optimizers."""
    if optimizer != "gepa":
        st.caption(GEPA_ONLY_NOTE)
        return
    with st.expander(f"Early stop: {policy(prefix).describe()}"):
        cols = st.columns(4)
        cols[0].checkbox(
            "At a perfect score",
            key=f"{prefix}_stop_perfect",
            help="Stop once a candidate scores 1.0 on the whole validation set (default on).",
        )
        cols[1].number_input(
            "Patience (proposals)",
            min_value=0,
            max_value=10_000,
            step=1,
            key=f"{prefix}_stop_patience",
            help=f"Stop after this many candidate proposals without improvement of the best "
            f"validation score (one proposal per iteration unless several are in flight; "
            f"default {DEFAULT_PATIENCE}; 0 = off).",
        )
        cols[2].number_input(
            "Time limit (minutes)",
            min_value=0.0,
            step=5.0,
            key=f"{prefix}_stop_minutes",
            help="Stop after this many minutes of search (0 = none).",
        )
        cols[3].number_input(
            "Cost limit (USD)",
            min_value=0.0,
            step=0.5,
            key=f"{prefix}_stop_cost",
            help="Stop once the priced model calls cost this much (0 = none). Models "
            "without a known price (the demo, self-hosted ones) never reach it.",
        )
        st.caption(
            f"Defaults: at a perfect validation score or after {DEFAULT_PATIENCE} proposals "
            "without improvement; no time or cost limit. " + STOP_HELP
        )
