"""Hugging Face Spaces entry point (also `make demo`): build the Gradio app and serve it.

Binds to 127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise
(Spaces sets them). No public share link; uploads up to 20 MB; temporary files are removed.
XFV_EXAMPLES (a folder of example pairs), XFV_GALLERY (SDD's gallery), XFV_CXR_CLIP and
XFV_CXR_HEAD (the chest X-ray model) configure it.
"""

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


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

from apps.gradio_app import build_demo, launch  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    launch(build_demo())
