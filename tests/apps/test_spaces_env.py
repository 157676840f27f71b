"""Hugging Face Spaces, simulated: an environment built from ``requirements.txt`` alone (what
Spaces installs: no requirements-nodeps.txt, no dev requirements, no project venv), then
``app.py`` started in it with ``SPACE_ID`` set, answering one comparison over loopback.

The environment is built once per content of ``requirements.txt`` (and Python version) under
``$XFV_CACHE`` (default ``~/.cache/xfv``) as ``spaces-<hash>``, like ``scripts/env.sh`` keys the
project's: the first run downloads and installs it (minutes), later ones reuse it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import MISC, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


def spaces_env() -> Path:
    """The interpreter of a fresh environment with exactly ``requirements.txt`` installed."""
    req = ROOT / "requirements.txt"
    key = hashlib.sha256(req.read_bytes() + sys.version.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XFV_CACHE", Path.home() / ".cache" / "xfv"))
    venv = cache / f"spaces-{key}"
    if (venv / ".complete").is_file():
        return venv / "bin" / "python"
    for old in cache.glob("spaces-*"):  # several GB each: only the current requirements' is kept
        shutil.rmtree(old, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)  # the system Python, not the project venv's
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(req)], check=True, timeout=1800)
    (venv / ".complete").touch()
    return venv / "bin" / "python"


def test_requirements_alone_start_the_app_on_spaces_and_it_answers_a_comparison():
    from gradio_client import Client, handle_file

    from benchmarks.load_app import API_NAME, LocalServer

    python = spaces_env()
    frozen = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout.lower()
    assert "facenet-pytorch==2.5.3" in frozen and "spaces==" in frozen and "torchxrayvision" not in frozen
    server = LocalServer(env={"SPACE_ID": "xfv/spaces-simulation", "PYTHONPATH": None, "VIRTUAL_ENV": None}, python=python)
    try:
        server.wait(600)
        client = Client(server.url, verbose=False)
        out = client.predict(model="sface", a=handle_file(str(MISC / "obama.jpg")), b=handle_file(str(MISC / "obama2.jpg")), methods=["cam"],
                             preset="fast", scores=False, api_name=API_NAME)  # fmt: skip
        verdict = out[0] if isinstance(out, (list, tuple)) else out
        assert isinstance(verdict, str) and "same person" in verdict.lower(), verdict
        assert "pip install" not in server.tail(200)  # nothing installed at start-up
    finally:
        server.stop()
