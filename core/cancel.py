"""Cooperative cancellation of long work (explanations, batches, faithfulness runs).

A thread cannot be killed from outside, so work that a user cancels (or that a server
stopping with SIGTERM abandons) must stop by itself. Long loops call ``check_cancelled()``
between pieces of work (every batch of ``core.models.base.chunks`` does, and the runner
between stages and methods); it raises ``Cancelled`` once the work's ``CancelToken`` is
cancelled or ``cancel_all()`` was called for the whole process.

``Cancelled`` derives from ``BaseException``, as ``KeyboardInterrupt`` does, so the
``except Exception`` blocks that keep one failing method or pair from stopping the others
do not swallow it: the whole piece of work ends.

The token of the running work is a context variable: ``run_with_token(token, fn, ...)``
sets it for one call (the app runs each request in a worker thread this way), and any
thread can cancel it. ``active_work()`` counts the calls running, so a server that is
stopping can wait for them to end before it exits.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Cancelled(BaseException):
    """The work was cancelled (by its user, or because the process is stopping)."""


class CancelToken:
    """Set once by whoever wants the work to stop; read by the work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


_current: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("xfv_cancel_token", default=None)
_everything = CancelToken()  # cancel_all(): the process is stopping
_active = 0
_active_lock = threading.Condition()


def check_cancelled() -> None:
    """Raise ``Cancelled`` if the running work (or all work) was cancelled; else nothing."""
    if _everything.cancelled:
        raise Cancelled(_everything.reason)
    token = _current.get()
    if token is not None and token.cancelled:
        raise Cancelled(token.reason)


def cancel_all(reason: str = "the server is stopping") -> None:
    """Make every ``check_cancelled()`` of this process raise from now on (for shutdown)."""
    _everything.cancel(reason)


def run_with_token(token: CancelToken, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with ``token`` as the running work's token, counted in
    ``active_work()`` while it runs."""
    global _active
    with _active_lock:
        _active += 1
    reset = _current.set(token)
    try:
        check_cancelled()
        return fn(*args, **kwargs)
    finally:
        _current.reset(reset)
        with _active_lock:
            _active -= 1
            _active_lock.notify_all()


def active_work() -> int:
    """How many ``run_with_token`` calls are running now."""
    with _active_lock:
        return _active


def wait_idle(timeout: float) -> bool:
    """Wait until no ``run_with_token`` call runs, at most ``timeout`` seconds; True if idle."""
    deadline = time.monotonic() + timeout
    with _active_lock:
        while _active:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _active_lock.wait(left)
    return True
