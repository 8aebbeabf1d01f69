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


# ---- the Score page: verdict distribution and drift against the humans -----------------

_VALUE_COLORS = ("#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037")


def distribution_chart(rows: list, values: list[str], *, title: str = "") -> go.Figure:
    """Stacked shares of each verdict value per group (``core.views.scores.distribution``).

    Args:
        rows: ``DistributionRow``s (group, value, count, share, total).
        values: The values in stacking order (``core.views.scores.value_order``).
        title: The x axis title (``version``, ``week``, ...).
    """
    groups = list(dict.fromkeys(r.group for r in rows))
    fig = go.Figure()
    for i, value in enumerate(values):
        mine = {r.group: r for r in rows if r.value == value}
        if not mine:
            continue
        fig.add_trace(
            go.Bar(
                name=value,
                x=groups,
                y=[mine[g].share if g in mine else 0 for g in groups],
                customdata=[
                    [mine[g].count if g in mine else 0, mine[g].total if g in mine else 0]
                    for g in groups
                ],
                text=[str(mine[g].count) if g in mine else "" for g in groups],
                textposition="inside",
                marker_color=_VALUE_COLORS[i % len(_VALUE_COLORS)],
                hovertemplate=f"%{{x}} · {value}: %{{customdata[0]}} of %{{customdata[1]}} "
                "(%{y:.0%})<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"title": "share of verdicts", "tickformat": ".0%", "range": [0, 1]},
        xaxis={"title": title, "type": "category"},
        legend={"orientation": "h", "y": 1.12, "traceorder": "normal"},
    )
    return fig


def _ci_bars(points: list, metric: str) -> tuple[list, list, list]:
    """Values and the (plus, minus) error bar lengths of one metric's intervals."""
    ys, plus, minus = [], [], []
    for p in points:
        y = p.accuracy if metric == "accuracy" else p.kappa
        ci = p.report.accuracy_ci if metric == "accuracy" else p.report.cohen_kappa_ci
        ys.append(y)
        ok = y is not None and ci is not None and ci.low is not None and ci.high is not None
        plus.append(ci.high - y if ok else None)
        minus.append(y - ci.low if ok else None)
    return ys, plus, minus


def drift_chart(drift) -> go.Figure:
    """Accuracy and Cohen's kappa per period with 95% CI error bars (``Drift``).

    Periods with too few pairs are drawn with open markers and named in the hover; the
    overall figures are dotted lines.
    """
    points = list(drift.points)
    x = [p.period for p in points]
    fig = go.Figure()
    for metric, name, color in (
        ("accuracy", "accuracy", "#1565c0"),
        ("kappa", "Cohen's kappa", "#ef6c00"),
    ):
        ys, plus, minus = _ci_bars(points, metric)
        fig.add_trace(
            go.Scatter(
                name=name,
                x=x,
                y=ys,
                mode="lines+markers",
                line={"color": color},
                marker={
                    "size": 10,
                    "symbol": ["circle-open" if p.too_few else "circle" for p in points],
                },
                error_y={
                    "type": "data",
                    "array": plus,
                    "arrayminus": minus,
                    "visible": True,
                    "thickness": 1.5,
                },
                customdata=[[p.n, " (too few pairs)" if p.too_few else ""] for p in points],
                hovertemplate=f"%{{x}}: {name} %{{y:.2f}}, n=%{{customdata[0]}}"
                "%{customdata[1]}<extra></extra>",
            )
        )
        overall = drift.overall
        value = (
            None
            if overall is None
            else (overall.accuracy if metric == "accuracy" else overall.kappa)
        )
        if value is not None:
            fig.add_hline(
                y=value,
                line={"dash": "dot", "color": color, "width": 1},
                annotation_text=f"overall {name} {number(value)}",
                # Accuracy is usually the higher of the two: its label above, kappa's below.
                annotation_position="top left" if metric == "accuracy" else "bottom left",
            )
    fig.update_layout(
        height=360,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"title": "agreement with the humans", "range": [-1.05, 1.05]},
        xaxis={"title": drift.by, "type": "category"},
        legend={"orientation": "h", "y": 1.12},
    )
    return fig
