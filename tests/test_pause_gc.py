"""``common.pause_gc.paused_gc``: the collector waits inside, and is back as it was after."""

from __future__ import annotations

import gc
import threading

import pytest

from common.pause_gc import paused_gc


@pytest.fixture
def collector():
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_paused_inside_and_back_after(collector):
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_resume_once_the_outer_ends(collector):
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled(collector):
    gc.disable()
    with paused_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_resumes_after_an_error(collector):
    with pytest.raises(ValueError), paused_gc():
        raise ValueError("boom")
    assert gc.isenabled()


def test_as_a_decorator(collector):
    @paused_gc()
    def inside() -> bool:
        return gc.isenabled()

    assert inside() is False
    assert inside() is False  # a fresh pause each call
    assert gc.isenabled()


def test_overlapping_pauses_across_threads(collector):
    """One thread's pause ending does not resume the collector while another's is still on."""
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with paused_gc():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with paused_gc():
        thread.start()
        assert entered.wait(5)
    assert not gc.isenabled()  # the other thread still holds its pause
    release.set()
    thread.join(5)
    assert gc.isenabled()
