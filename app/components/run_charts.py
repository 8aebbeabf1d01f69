"""Plotly figures of an alignment run, built from ``core.views.runs`` data (no aggregation)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

from core.views.runs import (
    BEST_MARK,
    FRONTIER_MARK,
    FrontierMatrix,
    LineageLayout,
    LiveSeries,
    ProgressSeries,
)

_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
FRONTIER_COLOR = "#e4572e"
BEST_COLOR = "#f2c14e"
CANDIDATE_COLOR = "#4c78a8"


def _hover(text: str) -> str:
    # Plotly renders a subset of HTML in hover labels: escape candidate text.
    return html.escape(text, quote=False).replace("\n", " ")


#: Legend names of the marks (the same words as ``core.views.runs.MARKS_LEGEND``).
BEST_NAME = f"{BEST_MARK} best (returned)"
FRONTIER_NAME = f"{FRONTIER_MARK} Pareto frontier"
BEST_ON_FRONTIER_NAME = f"{BEST_MARK} best (returned, also {FRONTIER_MARK} frontier)"

#: (legend name, which candidates or nodes, colour, plotly symbol): the best is a star
#: whether or not it is on the frontier; other frontier members are diamonds.
_MARK_GROUPS: tuple[tuple[str, Callable[[Any], bool], str, str], ...] = (
    ("candidate", lambda c: not c.on_frontier and not c.is_best, CANDIDATE_COLOR, "circle"),
    (FRONTIER_NAME, lambda c: c.on_frontier and not c.is_best, FRONTIER_COLOR, "diamond"),
    (BEST_NAME, lambda c: c.is_best and not c.on_frontier, BEST_COLOR, "star"),
    (BEST_ON_FRONTIER_NAME, lambda c: c.is_best and c.on_frontier, BEST_COLOR, "star"),
)


def _is_best_group(name: str) -> bool:
    """True for the legend names of the best candidate's group."""
    return name in (BEST_NAME, BEST_ON_FRONTIER_NAME)


def _x_title(progress: ProgressSeries) -> str:
    return "metric calls used" if progress.x_is_metric_calls else "iteration"


def iteration_chart(
    progress: ProgressSeries, title: str = "Validation score by budget"
) -> go.Figure:
    """Every candidate's validation score (points), the best-so-far step line and the
    Pareto aggregate, against metric calls used."""
    use_calls = progress.x_is_metric_calls

    def x_of(calls: int | None, iteration: int) -> int | None:
        return calls if use_calls else iteration

    cands = progress.candidates
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[p.metric_calls if use_calls else p.iteration for p in progress.best_so_far],
            y=[p.value for p in progress.best_so_far],
            mode="lines",
            line={"shape": "hv", "color": "#2ca02c", "width": 2},
            name="best so far",
            hovertemplate="best so far %{y:.3f} at %{x}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[p.metric_calls if use_calls else p.iteration for p in progress.pareto_aggregate],
            y=[p.value for p in progress.pareto_aggregate],
            mode="lines",
            line={"shape": "hv", "dash": "dot", "color": "#9467bd"},
            name="Pareto aggregate",
            hovertemplate="Pareto aggregate %{y:.3f} at %{x}<extra></extra>",
        )
    )
    # One trace per mark, so the legend says what ★ and ◆ mean (as on the lineage).
    for name, pick, color, symbol in _MARK_GROUPS:
        group = [c for c in cands if pick(c)]
        if not group:
            continue
        fig.add_trace(
            go.Scatter(
                x=[x_of(c.metric_calls, c.iteration) for c in group],
                y=[c.val_score for c in group],
                mode="markers+text",
                text=[c.label.split()[0] for c in group],
                textposition="top center",
                marker={
                    "size": 16 if _is_best_group(name) else 11,
                    "color": color,
                    "symbol": symbol,
                    "line": {"width": 1, "color": "#333"},
                },
                name=name,
                customdata=[
                    [
                        c.label,
                        c.iteration,
                        _hover(c.preview),
                        _hover(c.change_preview or "(seed)"),
                    ]
                    for c in group
                ],
                hovertemplate=(
                    "<b>candidate %{customdata[0]}</b> (iteration %{customdata[1]})<br>"
                    "val score %{y:.3f} at %{x}<br>%{customdata[2]}<br>"
                    "adds: %{customdata[3]}<extra></extra>"
                ),
            )
        )
    if use_calls and progress.budget:
        fig.add_vline(
            x=progress.budget,
            line_dash="dash",
            line_color="gray",
            annotation_text=f"budget {progress.budget}",
        )
    fig.update_layout(
        title=title,
        height=380,
        margin=_MARGIN,
        xaxis_title=_x_title(progress),
        yaxis_title="validation score",
        yaxis={"rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def live_chart(series: LiveSeries) -> go.Figure:
    """A running job's validation score and best so far, by metric calls (or step)."""
    pts = series.points
    use_calls = all(p.metric_calls is not None for p in pts)

    def x(p) -> float:
        return p.metric_calls if use_calls else p.step

    fig = go.Figure()
    scored = [p for p in pts if p.val_score is not None]
    best = [p for p in pts if p.best_val_score is not None]
    pareto = [p for p in pts if p.pareto_aggregate is not None]
    fig.add_trace(
        go.Scatter(
            x=[x(p) for p in scored],
            y=[p.val_score for p in scored],
            mode="markers",
            name="candidate",
            marker={"size": 10, "color": CANDIDATE_COLOR},
            hovertemplate="iteration %{customdata}: %{y:.3f}<extra></extra>",
            customdata=[p.step for p in scored],
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[x(p) for p in best],
            y=[p.best_val_score for p in best],
            mode="lines",
            line={"shape": "hv", "color": "#2ca02c"},
            name="best so far",
        )
    )
    if pareto:
        fig.add_trace(
            go.Scatter(
                x=[x(p) for p in pareto],
                y=[p.pareto_aggregate for p in pareto],
                mode="lines",
                line={"shape": "hv", "dash": "dot", "color": "#9467bd"},
                name="Pareto aggregate",
            )
        )
    fig.update_layout(
        height=300,
        margin=_MARGIN,
        xaxis_title="metric calls used" if use_calls else "iteration",
        yaxis_title="validation score",
        yaxis={"rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def frontier_heatmap(matrix: FrontierMatrix) -> go.Figure:
    """Candidates (rows) x validation examples (columns): the best candidate's row is
    marked ★, frontier rows ◆ (``FrontierMatrix.row_labels``); a dot marks each cell
    where the candidate reaches the example's best score."""
    rows = list(matrix.row_labels)
    cols = [f"ex{j + 1}" for j in range(len(matrix.example_ids))]
    text = [["●" if best else "" for best in row_best] for row_best in matrix.best_on_example]
    fig = go.Figure(
        go.Heatmap(
            z=[list(r) for r in matrix.scores],
            x=cols,
            y=rows,
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            text=text,
            texttemplate="%{text}",
            customdata=[[tid for tid in matrix.example_ids] for _ in rows],
            hovertemplate="candidate %{y}<br>%{x}: %{customdata}<br>score %{z}<extra></extra>",
            colorbar={"title": "score"},
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        height=120 + 28 * len(rows),
        margin=_MARGIN,
        # Category axes: plotly would read "#3" as the number 3 and drop rows.
        yaxis={
            "autorange": "reversed",
            "title": f"candidate ({BEST_MARK} best, {FRONTIER_MARK} frontier)",
            "type": "category",
        },
        xaxis={"title": "validation example (● best score on it)", "type": "category"},
    )
    return fig


def lineage_tree(layout: LineageLayout) -> go.Figure:
    """Candidates by generation (x) with parent -> child edges; frontier and best marked."""
    pos = {n.id: (n.depth, n.y) for n in layout.nodes}
    ex, ey = [], []
    for parent, child in layout.edges:
        if parent in pos and child in pos:
            ex += [pos[parent][0], pos[child][0], None]
            ey += [pos[parent][1], pos[child][1], None]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=ex,
            y=ey,
            mode="lines",
            line={"color": "#999", "width": 1.5},
            hoverinfo="skip",
            showlegend=False,
        )
    )
    for name, pick, color, symbol in _MARK_GROUPS:
        nodes = [n for n in layout.nodes if pick(n)]
        if not nodes:
            continue
        fig.add_trace(
            go.Scatter(
                x=[n.depth for n in nodes],
                y=[n.y for n in nodes],
                mode="markers+text",
                text=[f"#{n.id}" for n in nodes],
                textposition="top center",
                marker={
                    "size": 20 if _is_best_group(name) else 15,
                    "color": color,
                    "symbol": symbol,
                    "line": {"width": 1, "color": "#333"},
                },
                name=name,
                customdata=[[f"{n.val_score:.3f}", _hover(n.preview)] for n in nodes],
                hovertemplate=(
                    "<b>%{text}</b> val %{customdata[0]}<br>%{customdata[1]}<extra></extra>"
                ),
            )
        )
    depth = max((n.depth for n in layout.nodes), default=0)
    spread = max((abs(n.y) for n in layout.nodes), default=0)
    fig.update_layout(
        height=max(260, 120 + 60 * (2 * spread + 1)),
        margin=_MARGIN,
        xaxis={"title": "generation", "dtick": 1, "range": [-0.5, depth + 0.5]},
        yaxis={"visible": False, "range": [-spread - 1, spread + 1]},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
