"""Model work of the app run so that a cancel really stops it.

Gradio cancels a request (the user's Stop, a closed tab, ``gradio_client``'s
``job.cancel()``) by cancelling the asyncio task that awaits the handler. A plain
synchronous handler runs in a worker thread that nobody can stop, so without this the
work went on using the CPU for tens of seconds after the cancel, beside the next request
(Gradio counts the slot free as soon as the task ends). ``run_cancellable`` runs the work
in a thread under a ``core.cancel.CancelToken``; on cancellation it cancels the token and
keeps awaiting the thread, which stops at its next ``check_cancelled()`` (one batch of
forward passes, well under a second or two on a CPU), and only then lets the cancellation
through, so the one-slot queue holds until the work has really ended.

No Gradio import: plain asyncio, tested without a server.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from core.cancel import Cancelled, CancelToken, run_with_token

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a request stopped by ``core.cancel.cancel_all`` (the server stopping) answers.
STOPPING = "The server is stopping; this request was not finished. Try again in a moment."


class ServerStoppingError(Exception):
    """The work ended because the process is stopping (``core.cancel.cancel_all``)."""


async def run_cancellable(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread (with the caller's context variables,
    which Gradio's progress bar needs); if the awaiting task is cancelled, the work is
    told to stop and awaited until it has, then ``CancelledError`` propagates. Work
    stopped because the process is stopping raises ``ServerStoppingError``."""
    token = CancelToken()
    ctx = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, functools.partial(ctx.run, run_with_token, token, fn, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        token.cancel("cancelled by the user")
        log.info("request cancelled; waiting for its work to stop")
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                continue  # cancelled again: still wait for the thread
            except BaseException:
                break
        raise
    except Cancelled as e:
        raise ServerStoppingError(STOPPING) from e
