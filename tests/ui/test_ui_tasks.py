"""studio.ui.tasks: the UI's one way to run work off its thread, through its public API with real
threads: results, readable errors, cancellation, progress order, a parent destroyed mid-run, a
one-thread pool, shutdown."""

from __future__ import annotations

import threading
import time

import pytest
import shiboken6
from PySide6.QtCore import QObject, QThreadPool
from PySide6.QtWidgets import QApplication

from studio.core.errors import StudioError
from studio.core.tasks import Cancelled, Progress, ProgressMeter
from studio.ui.tasks import TaskHandle, eta_text, run_task, shutdown_tasks, task_pool


class Outcome:
    """Every callback, recorded with the thread it ran on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.threads: set[str] = set()

    def _add(self, kind: str, value: object) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append((kind, value))

    def callbacks(self) -> dict[str, object]:
        return {"on_done": lambda r: self._add("done", r),
                "on_error": lambda m: self._add("failed", m),
                "on_progress": lambda p: self._add("progress", p),
                "on_cancelled": lambda: self._add("cancelled", None)}

    @property
    def ended(self) -> bool:
        return any(k != "progress" for k, _ in self.events)

    @property
    def final(self) -> tuple[str, object]:
        finals = [e for e in self.events if e[0] != "progress"]
        assert len(finals) == 1, self.events
        return finals[0]


@pytest.fixture
def parent(qtbot):  # type: ignore[no-untyped-def]
    obj = QObject()
    yield obj
    if shiboken6.isValid(obj):
        shiboken6.delete(obj)


def test_result_arrives_on_the_ui_thread(qtbot, parent) -> None:  # type: ignore[no-untyped-def]
    ran_on: list[str] = []
    out = Outcome()

    def work(progress, cancelled):  # type: ignore[no-untyped-def]
        ran_on.append(threading.current_thread().name)
        return {"answer": 42}

    handle = run_task(work, parent=parent, name="answer", **out.callbacks())
    assert isinstance(handle, TaskHandle) and handle.running and handle.name == "answer"
    with qtbot.waitSignal(handle.done, timeout=10_000) as sig:
        pass
    assert sig.args == [{"answer": 42}]
    assert out.final == ("done", {"answer": 42})
    assert ran_on and ran_on[0] != threading.main_thread().name
    assert out.threads == {threading.main_thread().name}
    assert not handle.running and handle.wait(0)
    assert handle.parent() is None  # finished handles do not pile up under the parent


def test_studio_error_becomes_its_message(qtbot, parent, capsys) -> None:  # type: ignore[no-untyped-def]
    out = Outcome()

    def work(progress, cancelled):  # type: ignore[no-untyped-def]
        raise StudioError("cannot read it", "/x/take.mp4")

    handle = run_task(work, parent=parent, **out.callbacks())
    with qtbot.waitSignal(handle.failed, timeout=10_000):
        pass
    assert out.final == ("failed", "/x/take.mp4: cannot read it")
    assert "Traceback" not in capsys.readouterr().err  # an expected error is not a bug


def test_unexpected_exception_gives_a_message_and_a_traceback(qtbot, parent, capsys) -> None:  # type: ignore[no-untyped-def]
    out = Outcome()

    def work(progress, cancelled):  # type: ignore[no-untyped-def]
        return {}["missing"]

    handle = run_task(work, parent=parent, name="buggy", **out.callbacks())
    with qtbot.waitSignal(handle.failed, timeout=10_000):
        pass
    kind, message = out.final
    assert kind == "failed" and message == "unexpected error: KeyError: 'missing'"
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err and "buggy" in err
    # the pool thread survived: the next task runs
    again = run_task(lambda p, c: "fine", parent=parent)
    with qtbot.waitSignal(again.done, timeout=10_000) as sig:
        pass
    assert sig.args == ["fine"]


def test_cancel_is_seen_by_the_function_and_reported_as_cancelled(qtbot, parent) -> None:  # type: ignore[no-untyped-def]
    started = threading.Event()
    out = Outcome()

    def work(progress, cancelled):  # type: ignore[no-untyped-def]
        meter = ProgressMeter(10**9, "waiting", progress, cancelled, rate_hz=0)
        started.set()
        while True:  # ProgressMeter.step raises Cancelled once cancelled() is true
            meter.step()
            time.sleep(0.001)

    handle = run_task(work, parent=parent, **out.callbacks())
    assert started.wait(10)
    assert not handle.cancel_requested
    handle.cancel()
    assert handle.cancel_requested and handle.wait(10_000)
    qtbot.waitUntil(lambda: out.ended, timeout=10_000)
    assert out.final == ("cancelled", None) and not handle.running


def test_a_task_cancelled_before_it_starts_never_runs(qtbot, parent) -> None:  # type: ignore[no-untyped-def]
    pool = task_pool(parent, 1)
    gate = threading.Event()
    ran: list[str] = []
    first = run_task(lambda p, c: gate.wait(10), parent=parent, pool=pool)
    out = Outcome()
    second = run_task(lambda p, c: ran.append("second"), parent=parent, pool=pool,
                      **out.callbacks())
    second.cancel()
    gate.set()
    qtbot.waitUntil(lambda: out.ended and not first.running, timeout=10_000)
    assert out.final == ("cancelled", None) and ran == []


def test_progress_arrives_in_order_and_before_the_result(qtbot, parent) -> None:  # type: ignore[no-untyped-def]
    out = Outcome()

    def work(progress, cancelled):  # type: ignore[no-untyped-def]
        for i in range(200):
            progress(Progress(i + 1, 200, "counting"))
        progress(Progress(0, 0, message="a log line"))
        return "counted"

    handle = run_task(work, parent=parent, **out.callbacks())
    with qtbot.waitSignal(handle.done, timeout=10_000):
        pass
    kinds = [k for k, _ in out.events]
    assert kinds == ["progress"] * 201 + ["done"]
    steps = [v.step for k, v in out.events[:200]]
    assert steps == list(range(1, 201))
    assert out.events[200][1].message == "a log line"


def test_parent_destroyed_while_running(qtbot) -> None:  # type: ignore[no-untyped-def]
    parent = QObject()
    started, release = threading.Event(), threading.Event()
    saw_cancel: list[bool] = []
    out = Outcome()

    def work(progress, cancelled):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(10)
        saw_cancel.append(cancelled())
        progress(Progress(1, 1, "after"))  # emitting with the parent gone must not crash
        return "too late"

    handle = run_task(work, parent=parent, **out.callbacks())
    assert started.wait(10)
    shiboken6.delete(parent)  # the dialog closes and is deleted mid-run
    assert not shiboken6.isValid(handle)
    release.set()
    deadline = time.monotonic() + 10
    while not saw_cancel and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    QApplication.processEvents()
    QApplication.processEvents()
    assert saw_cancel == [True]  # told to stop
    assert out.events == []  # and nothing reached the dead parent's callbacks


def test_a_one_thread_pool_runs_tasks_one_at_a_time_in_order(qtbot, parent) -> None:  # type: ignore[no-untyped-def]
    pool = task_pool(parent, 1)
    assert isinstance(pool, QThreadPool) and pool.maxThreadCount() == 1
    order: list[int] = []
    active, most = [0], [0]
    lock = threading.Lock()
    results: list[int] = []

    def job(i: int):  # type: ignore[no-untyped-def]
        def work(progress, cancelled):  # type: ignore[no-untyped-def]
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.01)
            order.append(i)
            with lock:
                active[0] -= 1
            return i
        return work

    handles = [run_task(job(i), parent=parent, pool=pool, on_done=results.append)
               for i in range(6)]
    qtbot.waitUntil(lambda: len(results) == 6, timeout=10_000)
    assert order == list(range(6)) and results == list(range(6)) and most[0] == 1
    assert not any(h.running for h in handles)


def test_wait_and_shutdown_stop_running_tasks(qtbot, parent) -> None:  # type: ignore[no-untyped-def]
    started = threading.Event()
    out = Outcome()

    def work(progress, cancelled):  # type: ignore[no-untyped-def]
        started.set()
        while not cancelled():
            time.sleep(0.005)
        raise Cancelled()

    handle = run_task(work, parent=parent, **out.callbacks())
    assert started.wait(10)
    assert handle.wait(50) is False  # still running
    t0 = time.monotonic()
    assert shutdown_tasks(10_000) is True  # what application quit does: cancel, then wait
    assert time.monotonic() - t0 < 5
    qtbot.waitUntil(lambda: out.ended, timeout=10_000)
    assert out.final == ("cancelled", None)


def test_run_task_refuses_other_threads(qtbot, parent) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            run_task(lambda p, c: None, parent=QObject())
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join(10)
    assert errors and "UI thread" in str(errors[0])


def test_eta_text() -> None:
    assert eta_text(None) == ""
    assert eta_text(65.4) == "1:05 left"
    assert eta_text(0) == "0:00 left"
