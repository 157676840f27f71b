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


def _private_upload_folder() -> None:
    """Gradio keeps uploads in GRADIO_TEMP_DIR: unless one is set, a new temporary folder
    that is removed when the server stops (on Ctrl-C and on SIGTERM too)."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="xfv-uploads-")
    os.environ["GRADIO_TEMP_DIR"] = folder
    atexit.register(shutil.rmtree, folder, True)


def _exit_on_sigterm() -> None:
    """SIGTERM (what process managers send) exits normally, so the atexit clean-ups run."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def _spaces_install_nodeps() -> None:
    """On Hugging Face Spaces, which installs only requirements.txt, add the packages whose
    stale metadata pins need `pip install --no-deps` (requirements-nodeps.txt)."""
    import importlib.util
    import subprocess
    import sys

    if os.environ.get("SPACE_ID") and importlib.util.find_spec("facenet_pytorch") is None:
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", "-r", os.path.join(here, "requirements-nodeps.txt")])


_spaces_install_nodeps()
if __name__ == "__main__":
    _private_upload_folder()  # before gradio is imported: it reads GRADIO_TEMP_DIR

from apps.gradio_app import build_demo, launch  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _exit_on_sigterm()
    launch(build_demo())
