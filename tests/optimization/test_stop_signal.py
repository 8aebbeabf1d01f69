"""A SIGTERM that Python swallowed (raised inside a weakref callback) still stops the job."""

from __future__ import annotations

import gc
import signal
import threading
import weakref

import pytest

from core.optimization import stop_signal, worker


@pytest.fixture(autouse=True)
def _clean():
    stop_signal.acknowledge()
    yield
    stop_signal.acknowledge()


class _Thing:
    pass


def test_a_signal_raised_in_a_weakref_callback_is_raised_again_once_on_the_main_thread():
    # What CI saw: the handler's KeyboardInterrupt raised inside weakref's callback is
    # printed as "Exception ignored" and the job ran on to "finished".
    thing = _Thing()
    ref = weakref.ref(thing, lambda _ref: worker._raise_keyboard_interrupt(signal.SIGTERM, None))
    del thing
    gc.collect()  # the callback ran, and Python swallowed its KeyboardInterrupt
    assert ref() is None
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        stop_signal.raise_if_pending()
    stop_signal.raise_if_pending()  # once only: the engine's handler is not hit again


def test_a_background_thread_never_gets_it_and_the_main_thread_still_does():
    stop_signal.note(signal.SIGTERM)
    errors: list[BaseException] = []

    def background() -> None:
        try:
            stop_signal.raise_if_pending()
        except BaseException as exc:  # pragma: no cover - the failure case
            errors.append(exc)

    t = threading.Thread(target=background)
    t.start()
    t.join()
    assert errors == []
    with pytest.raises(KeyboardInterrupt):
        stop_signal.raise_if_pending()


def test_an_acknowledged_signal_is_not_raised_again():
    stop_signal.note(signal.SIGTERM)
    stop_signal.acknowledge()  # what the engine's except KeyboardInterrupt does first
    stop_signal.raise_if_pending()


def test_the_recorder_raises_a_pending_signal_from_should_stop_and_heartbeat(experiment):
    from mlflow import MlflowClient

    from core.optimization.recorder import MlflowRunRecorder

    run = MlflowClient().create_run(experiment.experiment_id)
    recorder = MlflowRunRecorder(run.info.run_id)
    stop_signal.note(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        recorder.should_stop()
    assert recorder.should_stop() is False
    stop_signal.note(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        recorder.heartbeat(force=True)
