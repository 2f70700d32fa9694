"""The dispatcher on its own: which waiting requests share a batch, in what order, and what a
cancelled or failing request does. ``run_batch`` is a recorder, not the pipeline."""

from __future__ import annotations

import threading
import time

import pytest

from common.errors import BadInput, Overloaded, TooLarge, Unavailable
from common.query import Query
from orchestrator.pipeline.trace import Answer
from orchestrator.service.dispatch import Asking, Dispatcher

TOPK = Asking("topk", 2)
ALL = Asking("all", 3)


def answer_to(query: Query) -> Answer:
    # the dispatcher only hands answers on: one without a trace is enough here
    return Answer.model_construct(question_id=query.id, text=f"answer to {query.text}")


class Recorder:
    """Runs a batch by answering each query after ``seconds``; keeps every batch it was given."""

    def __init__(self, seconds: float = 0.0, fail: type[Exception] | None = None) -> None:
        self.batches: list[tuple[Asking, list[str]]] = []
        self.seconds = seconds
        self.fail = fail
        self.started = threading.Event()

    def __call__(self, asking, queries, hooks):
        self.batches.append((asking, [q.id for q in queries]))
        self.started.set()
        time.sleep(self.seconds)
        if self.fail is not None:
            raise self.fail("the batch failed")
        return [answer_to(q) for q in queries]


def q(i: int | str) -> Query:
    return Query(id=f"q{i}", text=f"question {i}")


def run(dispatcher: Dispatcher, submissions):
    dispatcher.start()
    try:
        tickets = [dispatcher.submit(query, asking) for query, asking in submissions]
        return [t.future.result(timeout=10) for t in tickets]
    finally:
        dispatcher.stop(timeout=10)


def test_waiting_requests_asked_alike_share_one_batch_oldest_first():
    recorder = Recorder()
    dispatcher = Dispatcher(recorder, gather_s=0.2)
    answers = run(dispatcher, [(q(1), TOPK), (q(2), ALL), (q(3), TOPK), (q(4), ALL)])
    assert [a.question_id for a in answers] == ["q1", "q2", "q3", "q4"]
    assert recorder.batches == [(TOPK, ["q1", "q3"]), (ALL, ["q2", "q4"])]


def test_fifo_runs_one_request_at_a_time_in_arrival_order():
    recorder = Recorder()
    run(Dispatcher(recorder, grouping=False), [(q(1), TOPK), (q(2), TOPK), (q(3), ALL)])
    assert recorder.batches == [(TOPK, ["q1"]), (TOPK, ["q2"]), (ALL, ["q3"])]


def test_identical_requests_are_answered_once_and_a_clashing_id_waits():
    recorder = Recorder()
    clash = Query(id="q1", text="another question with the same id")
    answers = run(Dispatcher(recorder, gather_s=0.2), [(q(1), TOPK), (q(1), TOPK), (clash, TOPK)])
    assert recorder.batches == [(TOPK, ["q1"]), (TOPK, ["q1"])]
    assert answers[0] is answers[1] and answers[2].text == "answer to another question with the same id"


def test_max_batch_caps_a_batch_and_the_rest_follow():
    recorder = Recorder()
    run(Dispatcher(recorder, max_batch=2, gather_s=0.2), [(q(i), TOPK) for i in range(5)])
    assert [ids for _, ids in recorder.batches] == [["q0", "q1"], ["q2", "q3"], ["q4"]]


def test_a_cancelled_waiting_request_never_runs():
    recorder = Recorder(seconds=0.5)
    dispatcher = Dispatcher(recorder, gather_s=0)
    dispatcher.start()
    try:
        first = dispatcher.submit(q(1), TOPK)
        recorder.started.wait(5)
        gone = dispatcher.submit(q(2), TOPK)
        assert dispatcher.cancel(gone) and gone.future.cancelled()
        first.future.result(timeout=5)
        time.sleep(0.2)
    finally:
        dispatcher.stop(timeout=10)
    assert recorder.batches == [(TOPK, ["q1"])]


def test_a_failed_batch_fails_its_requests_and_the_dispatcher_goes_on():
    failing = Recorder(fail=BadInput)
    dispatcher = Dispatcher(failing, gather_s=0)
    dispatcher.start()
    try:
        ticket = dispatcher.submit(q(1), TOPK)
        with pytest.raises(BadInput):
            ticket.future.result(timeout=5)
        failing.fail = None
        assert dispatcher.submit(q(2), TOPK).future.result(timeout=5).question_id == "q2"
    finally:
        dispatcher.stop(timeout=10)


def test_stopping_fails_waiting_requests_and_refuses_new_ones():
    recorder = Recorder(seconds=0.5)
    dispatcher = Dispatcher(recorder, gather_s=0)
    dispatcher.start()
    first = dispatcher.submit(q(1), TOPK)
    recorder.started.wait(5)
    waiting = dispatcher.submit(q(2), TOPK)
    dispatcher.stop(timeout=10)
    assert first.future.result(timeout=1).question_id == "q1"  # the batch in flight finished
    with pytest.raises(Unavailable):
        waiting.future.result(timeout=1)
    with pytest.raises(Unavailable):
        dispatcher.submit(q(3), TOPK)


def test_a_request_cancelled_while_its_batch_runs_leaves_the_dispatcher_serving():
    recorder = Recorder(seconds=0.3)
    dispatcher = Dispatcher(recorder, gather_s=0)
    dispatcher.start()
    try:
        ticket = dispatcher.submit(q(1), TOPK)
        twin = dispatcher.submit(q(2), TOPK)
        recorder.started.wait(5)
        assert dispatcher.cancel(ticket)  # inside the running batch: settling it later must not fail
        time.sleep(0.5)
        assert dispatcher.alive
        assert twin.future.result(timeout=5).question_id == "q2"
        assert dispatcher.submit(q(3), TOPK).future.result(timeout=5).question_id == "q3"
    finally:
        dispatcher.stop(timeout=10)


def test_one_of_two_identical_requests_cancelled_the_other_still_gets_its_answer():
    recorder = Recorder(seconds=0.3)
    dispatcher = Dispatcher(recorder, gather_s=0.2)
    dispatcher.start()
    try:
        first, second = dispatcher.submit(q(1), TOPK), dispatcher.submit(q(1), TOPK)
        recorder.started.wait(5)
        dispatcher.cancel(first)
        assert second.future.result(timeout=5).question_id == "q1"
        assert first.future.cancelled()
    finally:
        dispatcher.stop(timeout=10)


def test_a_full_queue_takes_a_request_whole_or_not_at_all():
    recorder = Recorder(seconds=0.5)
    refused: list[str] = []
    dispatcher = Dispatcher(recorder, gather_s=0, max_queue=3, on_refuse=refused.append)
    dispatcher.start()
    try:
        running = dispatcher.submit(q(1), TOPK)
        recorder.started.wait(5)
        queued = dispatcher.submit_all([q(2), q(3)], TOPK)
        with pytest.raises(Overloaded) as caught:
            dispatcher.submit_all([q(4), q(5)], TOPK)  # one would fit: neither is queued
        assert caught.value.param == "max_queue" and caught.value.retry_after >= 1
        assert dispatcher.depth == 2
        with pytest.raises(TooLarge):  # more than the queue could ever hold
            dispatcher.submit_all([q(7), q(8), q(9), q(10)], TOPK)
        queued.append(dispatcher.submit(q(6), TOPK))
        answers = [t.future.result(timeout=10) for t in [running, *queued]]
    finally:
        dispatcher.stop(timeout=10)
    assert [a.question_id for a in answers] == ["q1", "q2", "q3", "q6"]
    assert refused == ["queue_full"]
    assert "q4" not in [i for _, ids in recorder.batches for i in ids]


def test_the_warm_up_runs_before_the_first_batch_and_late_tickets_never_run():
    recorder = Recorder()
    release = threading.Event()
    dispatcher = Dispatcher(recorder, gather_s=0, queue_timeout_s=0.2, prepare=lambda: release.wait(10))
    dispatcher.start()
    try:
        late = dispatcher.submit(q(1), TOPK)  # waits behind the warm-up, past its deadline
        with pytest.raises(Overloaded) as caught:
            late.future.result(timeout=5)
        assert caught.value.param == "queue_timeout_s"
        with pytest.raises(Overloaded):
            late.begun.result(timeout=1)
        assert not dispatcher.prepared.is_set()
        release.set()
        assert dispatcher.prepared.wait(5)
        assert dispatcher.submit(q(2), TOPK).future.result(timeout=5).question_id == "q2"
    finally:
        release.set()
        dispatcher.stop(timeout=10)
    assert recorder.batches == [(TOPK, ["q2"])]


def test_after_each_batch_and_once_idle_the_housekeeping_runs():
    steps: list[str] = []
    recorder = Recorder()
    dispatcher = Dispatcher(
        recorder,
        gather_s=0,
        after_batch=lambda: steps.append("batch"),
        on_idle=lambda: steps.append("idle"),
        idle_s=0.2,
    )
    dispatcher.start()
    try:
        time.sleep(0.5)
        assert steps == []  # idle from the start: nothing ran, nothing to do
        dispatcher.submit(q(1), TOPK).future.result(timeout=5)
        time.sleep(0.8)
        assert steps == ["batch", "idle"]  # once, not again while it stays idle
        dispatcher.submit(q(2), TOPK).future.result(timeout=5)
        time.sleep(0.5)
    finally:
        dispatcher.stop(timeout=10)
    assert steps == ["batch", "idle", "batch", "idle"]
