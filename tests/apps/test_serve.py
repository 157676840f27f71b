"""`make demo` runs `python app.py`: it must serve the page on the loopback address."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ..conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_app_serves_the_page_on_loopback_and_removes_its_uploads_folder(tmp_path):
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp_path)}
    env.pop("GRADIO_SERVER_NAME", None)
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(1)
        assert body is not None, f"the app did not answer on port {port}; exit code {proc.poll()}"
        assert "<html" in body.lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
            config = r.read().decode()
        assert "Explainable face verification" in config and "Compare" in config
        assert [p.name.startswith("xfv-uploads-") for p in tmp_path.iterdir()] == [True]  # uploads go to a private folder
        proc.terminate()  # SIGTERM: a normal exit, the folder is removed
        proc.wait(timeout=30)
        assert not any(tmp_path.iterdir()), f"left behind: {list(tmp_path.iterdir())}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
