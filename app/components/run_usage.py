"""A run's model usage under its live progress (Align and Optimize pages): calls, tokens
and cost as the run logged them, "price unknown" for unpriced models, never $0."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.components import data


def usage_line(now: Any, run_id: str) -> None:
    """``Model usage: 84 calls · 12,345 tokens · price unknown`` for the run ``now`` is."""
    text = data.run_usage(run_id, now.status, now.iteration)
    st.caption(f"Model usage: {text}")
