"""Plotly figures for agreement: a reviewer kappa heatmap and a confusion matrix."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from core.views.formatting import number

_HEIGHT_PER_ROW = 60


def kappa_heatmap(reviewers: list[str], kappas: list[list[float | None]]) -> go.Figure:
    """Reviewer x reviewer Cohen's kappa (-1..1), blank where undefined."""
    z = [[None if v is None or math.isnan(v) else v for v in row] for row in kappas]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=reviewers,
            y=reviewers,
            zmin=-1,
            zmax=1,
            colorscale="RdBu",
            text=[[number(v, missing="") for v in row] for row in z],
            texttemplate="%{text}",
            hovertemplate="%{y} vs %{x}: kappa %{text}<extra></extra>",
            colorbar={"title": "kappa"},
        )
    )
    fig.update_layout(
        height=140 + _HEIGHT_PER_ROW * len(reviewers),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"autorange": "reversed"},
    )
    return fig


def confusion_heatmap(
    labels: list[str], counts: list[list[int]], reference: str, predicted: str
) -> go.Figure:
    """Confusion matrix: rows the reference's labels, columns the predicted ones."""
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=[f"{predicted}: {lab}" for lab in labels],
            y=[f"{reference}: {lab}" for lab in labels],
            colorscale="Blues",
            text=[[str(c) for c in row] for row in counts],
            texttemplate="%{text}",
            hovertemplate="%{y} / %{x}: %{z}<extra></extra>",
            showscale=False,
        )
    )
    fig.update_layout(
        height=140 + _HEIGHT_PER_ROW * len(labels),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"autorange": "reversed"},
    )
    return fig
