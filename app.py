"""Hugging Face Spaces entry point (also `make demo`): build the Gradio app and serve it.

Binds to 127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise
(Spaces sets them). No public share link; uploads up to 20 MB; temporary files are removed.
XFV_EXAMPLES (a folder of example pairs), XFV_GALLERY (SDD's gallery), XFV_CXR_CLIP and
XFV_CXR_HEAD (the chest X-ray model) configure it.
"""

import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Offline unless the operator says otherwise (HF_HUB_OFFLINE=0): no model is fetched from the Hub
# at run time because a user picked it; weights come from the local caches only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Seconds a stopping server waits for running work to end (it stops at its next check).
STOP_WAIT_S = 10.0


def _private_upload_folder() -> str | None:
    """Gradio keeps uploads in GRADIO_TEMP_DIR: unless one is set, a new temporary folder
    that is removed when the server stops (on Ctrl-C and on SIGTERM too); gives it."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return None
    folder = tempfile.mkdtemp(prefix="xfv-uploads-")
    os.environ["GRADIO_TEMP_DIR"] = folder
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _exit_on_sigterm() -> None:
    """SIGTERM (what process managers send) exits normally (status 0), so the atexit
    clean-ups run: running work is told to stop (``core.cancel.cancel_all``) and awaited
    first, since a thread still inside torch while the interpreter shuts down aborts the
    process ("terminate called without an active exception")."""

    def stop(signum, frame):
        from core.cancel import active_work, cancel_all, wait_idle

        cancel_all()
        if not wait_idle(STOP_WAIT_S):
            logging.getLogger("app").warning("%d request(s) still running after %.0f s; exiting anyway", active_work(), STOP_WAIT_S)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)


uploads = _private_upload_folder() if __name__ == "__main__" else None  # before gradio is imported: it reads GRADIO_TEMP_DIR

from apps.gradio_app import build_demo, launch  # noqa: E402
from apps.uploads import start_upload_sweeper  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _exit_on_sigterm()
    from core.device import tune_cpu_allocator

    tune_cpu_allocator()  # large forward buffers stay in the heap: about 2x faster CNN forwards on a CPU (core.device)
    if uploads:  # aborted uploads' partial files go within minutes, not at the exit (only in our own folder)
        start_upload_sweeper(uploads)
    launch(build_demo())
