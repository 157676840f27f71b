"""Cooperative cancellation: a cancelled token stops long work at its next batch."""

from __future__ import annotations

import threading
import time

import pytest

from core.cancel import Cancelled, CancelToken, active_work, check_cancelled, run_with_token, wait_idle
from core.models.base import chunks


def test_check_cancelled_raises_only_inside_cancelled_work():
    check_cancelled()  # no token: nothing
    token = CancelToken()
    assert run_with_token(token, lambda: [s.start for s in chunks(10, 4)]) == [0, 4, 8]
    token.cancel("stop")
    with pytest.raises(Cancelled, match="stop"):
        run_with_token(token, lambda: list(chunks(10, 4)))
    check_cancelled()  # the token belonged to that call only


def test_cancelled_is_not_swallowed_by_except_exception():
    token = CancelToken()
    token.cancel()

    def work():
        try:
            check_cancelled()
        except Exception:  # what keeps one failing method from stopping the others
            return "swallowed"
        return "not raised"

    with pytest.raises(Cancelled):
        run_with_token(token, work)


def test_active_work_is_counted_and_waited_for():
    token, started = CancelToken(), threading.Event()

    def work():
        started.set()
        while True:
            check_cancelled()
            time.sleep(0.01)

    def run():
        with pytest.raises(Cancelled):
            run_with_token(token, work)

    t = threading.Thread(target=run)
    t.start()
    started.wait(5)
    assert active_work() == 1 and not wait_idle(0.05)
    token.cancel()
    assert wait_idle(5) and active_work() == 0
    t.join(5)


@pytest.mark.needs_data
def test_a_cancelled_explanation_stops_within_a_batch(runner, obama_pair):
    """X-Maps at the full preset take about a minute on a CPU; cancelled after 0.5 s, the
    run ends within two seconds of the cancel."""
    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        run_with_token(token, runner.explain, obama_pair, methods=["xmap1", "xmap2", "xmap3"], preset="full")
    assert time.perf_counter() - t0 < 2.5
