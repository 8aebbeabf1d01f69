"""Shared fixtures: every test gets its own real, temporary sqlite MLflow store.

Creating an MLflow sqlite database runs every migration (about 1.7 s here), so the
first store of a session is migrated once and each test gets a byte copy of it
(about 40 ms).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")

#: Multi-process checks of a minute or more each: team mode on PostgreSQL, R1-R5, the
#: team/launch/label benchmarks' smoke runs, the estimate-accuracy measurement and the
#: multi-worker races. Marked ``system``: ``make reliability`` runs them, ``make test``
#: leaves them out so it stays well under an hour on 2 cores (README, "Tests").
SYSTEM_TESTS = (
    "tests/reliability/",
    "tests/team/",
    "tests/test_benchmarks_b7.py",
    "tests/test_benchmarks_b8.py",
    "tests/test_benchmarks_b10.py",
    "tests/test_benchmarks_b11.py",
    "tests/optimization/test_worker_pool.py",
    "tests/optimization/test_worker_claims.py",
    "tests/optimization/test_estimates.py::test_estimates_are_within_one_and_a_half_times",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the :data:`SYSTEM_TESTS` ``system``."""
    root = Path(__file__).resolve().parent.parent
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(root).as_posix()
        node = rel + "::" + item.name
        if any(node.startswith(prefix) for prefix in SYSTEM_TESTS):
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{path}")
    mlflow.search_experiments()  # runs the migrations
    return path


@pytest.fixture
def store_uri(_template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh real sqlite MLflow store for this test; returns its tracking URI.

    ``MLFLOW_TRACKING_URI`` and ``ALIGNBOARD_HOME`` point at it for the test, so
    subprocesses started by the test use it too.
    """
    import mlflow

    from core.store import config

    home = tmp_path / "home"
    home.mkdir()
    db = home / "mlflow.db"
    shutil.copy(_template_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(config.HOME_ENV, str(home))
    config.configure(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def experiment(store_uri: str):
    """A fresh experiment named ``test`` in the test's own store."""
    from core.store.experiments import get_or_create_experiment

    return get_or_create_experiment("test")


@pytest.fixture(scope="session")
def _demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with the demo data seeded once per session: (sqlite file, experiment id)."""
    import mlflow

    from core.io.demo_seed import seed_demo
    from core.store import config

    home = tmp_path_factory.mktemp("demo-template")
    db = home / "mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.HOME_ENV, str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
        config.configure(f"sqlite:///{db}")
        result = seed_demo()
    mlflow.set_tracking_uri(None)
    return db, result.experiment_id


@pytest.fixture
def demo_store(_demo_template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh copy of the seeded demo store for this test; returns the demo experiment id.

    84 support-assistant traces, criterion ``support_quality``, labels by maria.chen and
    dev.patel, queue ``support-review``.
    """
    import mlflow

    _copy_store(*_demo_template, tmp_path, monkeypatch)
    experiment_id = _demo_template[1]
    yield experiment_id
    mlflow.set_tracking_uri(None)


#: The aligned demo judge's instructions (a demo GEPA alignment's result, recorded in the
#: parity fixture): the scorer prompt optimization tests optimize against.
def aligned_demo_instructions() -> str:
    """The instructions of a demo GEPA alignment (budget 120 before budgets were strict,
    as first recorded in tests/fixtures/parity), kept apart from the parity golden so the
    tests that need a well-aligned judge do not change when that golden is re-recorded."""
    path = Path(__file__).parent / "fixtures" / "aligned_demo_judge.txt"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def _prompt_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo store plus an aligned judge registered as ``support_quality`` v1 (alias
    ``production``), once per session: (sqlite file, experiment id)."""
    import mlflow

    from core.io.demo_seed import seed_demo
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version, set_alias
    from core.optimization.spec import JudgeSpec
    from core.store import config

    home = tmp_path_factory.mktemp("prompt-template")
    db = home / "mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.HOME_ENV, str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
        config.configure(f"sqlite:///{db}")
        result = seed_demo()
        spec = JudgeSpec("support_quality", aligned_demo_instructions(), "pass_fail", "demo:/judge")
        version = register_version(
            build_judge(spec),
            result.experiment_id,
            run_id=None,
            test_metrics={"test_kappa_after": 0.85, "test_accuracy_after": 0.93},
            optimizer="gepa",
        )
        set_alias(result.experiment_id, "support_quality", "production", version)
    mlflow.set_tracking_uri(None)
    return db, result.experiment_id


@pytest.fixture
def prompt_demo(_prompt_template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh copy of the demo store with the demo app prompt (``northwind-support``, alias
    ``production`` on v1), the evaluation dataset ``northwind-messages`` and the aligned
    judge ``support_quality`` v1 (alias ``production``); returns the experiment id."""
    import mlflow

    _copy_store(*_prompt_template, tmp_path, monkeypatch)
    experiment_id = _prompt_template[1]
    yield experiment_id
    mlflow.set_tracking_uri(None)


def _copy_store(
    template: Path, experiment_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Give the test a byte copy of a seeded template store and point MLflow at it."""
    from core.store import config

    home = tmp_path / "home"
    home.mkdir()
    db = home / "mlflow.db"
    shutil.copy(template, db)
    # The copy would otherwise keep the template's artifact folder, shared by every test;
    # MLflow has no API to move an experiment's artifact location, so edit the copy.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            ((home / "artifacts" / "demo").as_uri(), int(experiment_id)),
        )
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(config.HOME_ENV, str(home))
    config.configure(uri)
