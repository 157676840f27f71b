"""Faults on the real server (loopback only, bounded): a cancelled request stops using the
CPU within 2 s and keeps the model's one-slot queue; SIGTERM during work exits 0 and
removes the uploads folder."""

from __future__ import annotations

import os
import time

import pytest

from ..conftest import MISC

#: The longest a cancelled request's work may go on using the CPU.
STOP_WITHIN_S = 2.0
#: Cores an idle server may use (the measurement window is one second).
IDLE_CORES = 0.3
LONG_WORK = {"model": "sface", "methods": ["xmap1", "xmap2", "xmap3"], "preset": "full", "scores": False}  # ~1 min on 2 CPU cores


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cores(pid: int, seconds: float = 1.0) -> float:
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def _start_long_work(server):
    """A long comparison, once the server is busy with it (detection done, X-Maps running)."""
    from gradio_client import handle_file
    from gradio_client.utils import Status

    from benchmarks.load_app import make_client

    client = make_client(server.url)
    job = client.submit(a=handle_file(str(MISC / "obama.jpg")), b=handle_file(str(MISC / "obama2.jpg")), api_name="/compare", **LONG_WORK)
    deadline = time.monotonic() + 90
    while job.status().code not in (Status.PROCESSING, Status.PROGRESS):
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.2)
    while _cores(server.proc.pid, 0.5) < 0.8:
        assert time.monotonic() < deadline, "the server never got busy"
    time.sleep(2.0)  # well into the X-Maps
    return client, job


def _serve(tmp):
    if not MISC.is_dir():
        pytest.skip(f"real test images not found at {MISC}")
    from benchmarks.load_app import LocalServer

    s = LocalServer(env={"GRADIO_TEMP_DIR": None, "TMPDIR": str(tmp)})
    s.wait(120)
    return s


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    s = _serve(tmp_path_factory.mktemp("faults"))
    yield s
    s.stop()


@pytest.fixture
def server(tmp_path):
    s = _serve(tmp_path)
    yield s
    s.stop()


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_cancelled_request_stops_using_the_cpu_and_the_queue_holds(shared_server):
    from gradio_client import handle_file

    server = shared_server
    client, job = _start_long_work(server)
    job.cancel()
    time.sleep(STOP_WITHIN_S)
    assert _cores(server.proc.pid) < IDLE_CORES, f"the cancelled work still runs:\n{server.tail()}"
    # the slot is free again, and a new request is answered
    out = client.predict(a=handle_file(str(MISC / "obama.jpg")), b=handle_file(str(MISC / "obama2.jpg")), model="sface", methods=[],
                         preset="fast", scores=False, api_name="/compare")  # fmt: skip
    assert "same person" in out[0].lower()
    client.close()


@pytest.mark.slow
@pytest.mark.needs_data
def test_sigterm_during_work_exits_0_and_removes_the_uploads(server, tmp_path):
    client, _ = _start_long_work(server)
    t0 = time.monotonic()
    server.proc.terminate()
    assert server.proc.wait(timeout=30) == 0, server.tail()
    assert time.monotonic() - t0 < 15
    ours = [p for p in tmp_path.iterdir() if p.name.startswith(("xfv-uploads-", "xfv-app-"))]  # (torch may leave its own cache)
    assert not ours, f"left behind: {ours}"
    assert "terminate called" not in server.tail(50)
    client.close()


@pytest.mark.slow
@pytest.mark.needs_data
def test_api_calls_naming_server_files_learn_nothing_about_them(shared_server):
    """The HTTP API takes only uploaded files: a request naming /etc/passwd gets the same
    answer as one naming a file that does not exist (Gradio refuses both alike)."""
    import httpx

    answers = []
    with httpx.Client(trust_env=False, timeout=30) as c:
        for path in ("/etc/passwd", "/etc/no-such-file.jpg"):
            fd = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.jpg"}
            r = c.post(f"{shared_server.url}gradio_api/call/compare", json={"data": ["sface", fd, fd, [], "fast", False]})
            assert r.status_code == 200
            events = c.get(f"{shared_server.url}gradio_api/call/compare/{r.json()['event_id']}").text
            route = c.get(f"{shared_server.url}gradio_api/file={path}")
            answers.append((events.strip(), route.status_code, route.text.replace(path, "PATH")))
    assert answers[0] == answers[1] and answers[0][0].startswith("event: error") and "root:" not in answers[0][0]
