"""Scoring a registered judge version on a split makes it a rater the Agreement page sees."""

from __future__ import annotations

import mlflow
import pytest

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import get_criterion
from core.optimization.engine import run_alignment
from core.optimization.scoring import score_version, version_source_id
from core.views.agreement import Rater, compare_raters, load_ratings, raters
from tests.optimization.demo_examples import CRITERION, demo_settings


def test_a_scored_version_matches_its_alignment_test_numbers(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa"))
    version = result.judge_version

    first = score_version(demo_store, CRITERION, version, "test")
    assert first.source_id == version_source_id(CRITERION, version)
    assert first.scored == result.test_size and first.failed == 0

    # Stored as plain MLflow LLM_JUDGE feedback from a source naming the version.
    stored = [
        a
        for t in mlflow.search_traces(locations=[demo_store], return_type="list")
        for a in t.info.assessments
        if a.source.source_type == "LLM_JUDGE" and a.source.source_id == first.source_id
    ]
    assert len(stored) == result.test_size
    assert all(a.name == CRITERION and a.rationale.startswith("[demo stand-in]") for a in stored)
    again = score_version(demo_store, CRITERION, version, "test")
    assert (again.scored, again.already) == (0, result.test_size)

    ratings = load_ratings(demo_store, get_criterion(demo_store, CRITERION))
    judge = Rater.judge(first.source_id)
    assert judge in raters(ratings)
    report = compare_raters(ratings, Rater.humans(), judge, split="test")
    # The same judge on the same held-out traces: the alignment's own number.
    assert report.n == result.test_size
    assert report.accuracy == pytest.approx(result.test_accuracy_after)


def test_scoring_refuses_unknown_versions_and_splits(demo_store):
    with pytest.raises(NotFoundError, match="no version 7"):
        score_version(demo_store, CRITERION, 7, "test")
    with pytest.raises(ValidationError, match="Unknown split"):
        score_version(demo_store, CRITERION, 1, "holdout")
