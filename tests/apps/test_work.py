"""apps.work.run_cancellable: a cancelled request's work really stops, and the request
ends only once it has (so the model's one-slot queue holds)."""

from __future__ import annotations

import asyncio
import time

import pytest

from apps.work import ServerStoppingError, run_cancellable
from core.cancel import CancelToken, check_cancelled


def _busy(log: dict, seconds: float = 30.0) -> str:
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            check_cancelled()
            time.sleep(0.02)
        return "finished"
    finally:
        log["stopped"] = time.perf_counter()


def test_the_result_comes_back_when_not_cancelled():
    assert asyncio.run(run_cancellable(_busy, {}, 0.05)) == "finished"


def test_a_cancel_stops_the_work_and_waits_for_it():
    log: dict = {}

    async def main():
        task = asyncio.create_task(run_cancellable(_busy, log))
        await asyncio.sleep(0.3)
        t_cancel = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return t_cancel, time.perf_counter()

    t_cancel, t_done = asyncio.run(main())
    assert log["stopped"] - t_cancel < 0.5  # the thread stopped at its next check
    assert t_done >= log["stopped"]  # and the request ended only after it


def test_progress_context_reaches_the_worker_thread():
    import contextvars

    var = contextvars.ContextVar("v", default=None)

    async def main():
        var.set("from the request")
        return await run_cancellable(var.get)

    assert asyncio.run(main()) == "from the request"


def test_work_stopped_by_the_server_stopping_is_a_message(monkeypatch):
    import core.cancel as cancel

    stopping = CancelToken()
    stopping.cancel("the server is stopping")
    monkeypatch.setattr(cancel, "_everything", stopping)
    with pytest.raises(ServerStoppingError, match="server is stopping"):
        asyncio.run(run_cancellable(_busy, {}))
