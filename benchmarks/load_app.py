"""Load test of the Gradio app: N comparisons sent C at a time to a local server (loopback only),
with latency percentiles, throughput, and a check that every request got an answer or a clear
error.

    python benchmarks/load_app.py                                  # 20 requests, 4 at a time, no methods
    python benchmarks/load_app.py -n 20 -c 4 --bad 0.1             # 2 of them send a text file named .jpg
    python benchmarks/load_app.py -n 8 -c 2 --methods xmap3 --bad 0.25 --distinct   # maps computed, not cached
    python benchmarks/load_app.py --url http://127.0.0.1:7860 --json   # a server already running

Without ``--url`` it starts ``python app.py`` itself on a free loopback port (GRADIO_SERVER_PORT,
HF_HUB_OFFLINE=1), waits until the page answers, and stops it at the end. ``--url`` must name a
loopback host (127.0.0.0/8, ::1 or localhost); any other is refused. Bounded: at most
200 requests, 32 at a time, ``--timeout`` seconds each and ``--max-seconds`` for the whole run.

Every request is the app's ``/compare`` endpoint (model, photo A, photo B, methods, preset,
deletion scores) with the photos uploaded as files (default ../shared/data/faces/misc/obama.jpg
and obama2.jpg), from its own ``gradio_client.Client`` per concurrent slot (one user each).
With ``--distinct`` each request sends its own copy of photo A with faint seeded noise, so
the app's caches of perturbed embeddings and explanations miss as for a new user's photos;
without it every request is the same pair, and after the warm-up the explanation maps come
from the cache (fine for decision + C-Score, flattering for ``--methods``).
A ``--bad`` fraction of the requests send a small text file named ``.jpg`` instead of photo A: those must
come back as a clear error (the app's ``gr.Error`` message, a ``gradio_client`` ``AppError``),
not a hang or a bare failure.

Order: one warm-up request (loads the models; not counted), ``--alone`` requests sent one at a
time (the baseline), then the N requests C at a time. Each request ends as ``ok`` (the verdict
sentence), ``clear_error`` (an ``AppError`` with the app's message), ``timeout``, or ``failure``
(anything else, including an ``AppError`` with no message of the app's). Latency is from
``submit`` to the result, so it includes the wait in the app's one-slot model queue.

Prints the requests, concurrency, methods, the machine (CPU count, torch threads, load
average before and after: other processes sharing the CPU make the figures noisy), the outcome
counts, the p50 / p90 / p99 / max latency of the answered good requests, the throughput
(requests finished per second of the concurrent phase), the baseline's p50 and the ratio
p50(concurrent) / p50(alone). ``--json`` prints the same as one JSON object. The exit code is 1
when any request got neither an answer nor a clear error, 2 for bad arguments (a non-loopback
``--url`` included).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import json
import math
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MISC = ROOT.parent / "shared" / "data" / "faces" / "misc"
MAX_REQUESTS = 200
MAX_CONCURRENCY = 32
API_NAME = "/compare"
BAD_NAME = "not_an_image.jpg"
#: The message ``gradio_client`` gives when the app raised something that is not a ``gr.Error``.
UNCLEAR = "has not enabled verbose error reporting"

OK, CLEAR_ERROR, TIMEOUT, FAILURE = "ok", "clear_error", "timeout", "failure"
STATUSES = (OK, CLEAR_ERROR, TIMEOUT, FAILURE)


# -- pure parts (tested without a server) ----------------------------------------------------
def loopback_url(url: str) -> str:
    """``url`` as ``http://host:port/`` if its host is a loopback address (127.0.0.0/8, ::1) or
    ``localhost``; a ``ValueError`` saying why otherwise. Names are not resolved."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: give an http:// URL of a local server, e.g. http://127.0.0.1:7860")
    host = parts.hostname or ""
    if host.lower() != "localhost":
        try:
            loop = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loop = False
        if not loop:
            raise ValueError(f"{url!r}: host {host or '(none)'!r} is not a loopback address; this load test only targets "
                             "127.0.0.0/8, ::1 or localhost (a server on this machine)")  # fmt: skip
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}/"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between order statistics (numpy's
    default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * min(max(q, 0.0), 100.0) / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def bad_indices(n: int, fraction: float) -> set[int]:
    """Which of ``n`` requests send the bad file: ``round(n * fraction)`` of them, spread evenly."""
    k = min(n, round(n * fraction))
    return {int((i + 0.5) * n / k) for i in range(k)} if k else set()


@dataclass
class Outcome:
    """One request: its number, ``good`` or ``bad`` (the text file), how it ended, its latency
    in seconds and the verdict or error message."""

    index: int
    kind: str
    status: str
    latency_s: float
    message: str = ""


def summarize(outcomes: Sequence[Outcome], wall_s: float | None = None) -> dict[str, Any]:
    """Counts by outcome (overall and per kind), latency percentiles of the answered good
    requests, the slowest clear error, and throughput (finished requests per second of
    ``wall_s``)."""
    counts = Counter(o.status for o in outcomes)
    lat = [o.latency_s for o in outcomes if o.status == OK and o.kind == "good"]
    err = [o.latency_s for o in outcomes if o.status == CLEAR_ERROR]
    finished = counts[OK] + counts[CLEAR_ERROR]
    return {
        "requests": len(outcomes),
        **{s: counts[s] for s in STATUSES},
        "by_kind": {k: {s: sum(o.kind == k and o.status == s for o in outcomes) for s in STATUSES} for k in sorted({o.kind for o in outcomes})},
        "latency_s": {
            "n": len(lat),
            "p50": percentile(lat, 50),
            "p90": percentile(lat, 90),
            "p99": percentile(lat, 99),
            "max": max(lat) if lat else None,
            "mean": sum(lat) / len(lat) if lat else None,
        },
        "clear_error_max_s": max(err) if err else None,
        "wall_s": wall_s,
        "throughput_rps": finished / wall_s if wall_s else None,
        "answers": dict(Counter(o.message for o in outcomes if o.status == OK).most_common()),
        "errors": dict(Counter(f"{o.status}: {o.message}" for o in outcomes if o.status != OK).most_common()),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def all_answered(outcomes: Sequence[Outcome]) -> bool:
    """True when every request got an answer or a clear error (the exit-code rule)."""
    return all(o.status in (OK, CLEAR_ERROR) for o in outcomes)


# -- the server ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


class LocalServer:
    """``python app.py`` on a free loopback port, its output in a temporary log file.
    ``env`` adds to or (with None) removes from its environment (the tests use it too);
    ``python`` is the interpreter (default: this one; the Spaces simulation gives its own)."""

    def __init__(self, env: dict[str, str | None] | None = None, python: str | Path | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="load_app_server_", suffix=".log", delete=False)  # noqa: SIM115 (kept open while it runs)
        env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port), "HF_HUB_OFFLINE": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}  # fmt: skip
        env = {k: v for k, v in env.items() if v is not None}
        self.proc = subprocess.Popen([str(python or sys.executable), "app.py"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, seconds: float) -> None:
        """Until the page answers; a ``RuntimeError`` with the log's tail if the app exits or
        ``seconds`` pass first."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with code {self.proc.returncode} before answering:\n{self.tail()}")
            if _answers(self.url):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the app did not answer on {self.url} within {seconds:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        self.log.flush()
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


# -- the requests ----------------------------------------------------------------------------
def distinct_copy(photo: Path, folder: Path, index: int) -> Path:
    """``photo`` with seeded noise of at most 2 grey levels added (a lossless PNG in
    ``folder``): the same face to the eye, but different pixels, so the app's caches of
    perturbed embeddings and explanations miss as they would for a new user's photos."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(photo) as im:
        x = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.int16)
    noise = np.random.default_rng(1000 + index).integers(-2, 3, x.shape)
    out = folder / f"{photo.stem}_{index + 1000}.png"
    Image.fromarray(np.clip(x + noise, 0, 255).astype(np.uint8)).save(out)
    return out


def make_client(url: str):
    from gradio_client import Client

    # trust_env=False: loopback only, never through a proxy named in the environment
    return Client(url, verbose=False, download_files=False, analytics_enabled=False, httpx_kwargs={"trust_env": False})


def send(client: Any, index: int, kind: str, photos: tuple[Path, Path], args: argparse.Namespace, timeout: float) -> Outcome:
    """One ``/compare`` request, classified."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    if timeout <= 0:
        return Outcome(index, kind, TIMEOUT, 0.0, "not sent: the run's time bound (--max-seconds) was reached")
    t0 = time.perf_counter()
    job = None
    try:
        job = client.submit(model=args.model, a=handle_file(str(photos[0])), b=handle_file(str(photos[1])), methods=list(args.methods),
                            preset=args.preset, scores=args.scores, api_name=API_NAME)  # fmt: skip
        out = job.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        if job is not None:
            job.cancel()
        return Outcome(index, kind, TIMEOUT, time.perf_counter() - t0, f"no answer within {timeout:.0f} s")
    except AppError as e:
        msg = str(e.message or "").strip()
        status = CLEAR_ERROR if msg and UNCLEAR not in msg else FAILURE
        return Outcome(index, kind, status, time.perf_counter() - t0, msg or "AppError without a message")
    except Exception as e:
        return Outcome(index, kind, FAILURE, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
    dt = time.perf_counter() - t0
    verdict = out[0] if isinstance(out, (tuple, list)) and out else out
    if not isinstance(verdict, str) or not verdict.strip():
        return Outcome(index, kind, FAILURE, dt, f"an answer without a verdict: {str(out)[:200]}")
    return Outcome(index, kind, OK, dt, verdict.strip().strip("*").strip())


def run_concurrent(
    url: str, jobs: list[tuple[int, str, tuple[Path, Path]]], args: argparse.Namespace, deadline: float
) -> tuple[list[Outcome], float]:
    """``jobs`` sent ``args.concurrency`` at a time, one client per slot; the outcomes in order
    and the wall time from the first send to the last answer."""
    try:
        clients = [make_client(url) for _ in range(min(args.concurrency, len(jobs)))]
    except Exception as e:
        raise RuntimeError(f"could not reach the app at {url}: {type(e).__name__}: {e}") from None
    todo: queue.Queue = queue.Queue()
    for j in jobs:
        todo.put(j)
    results: dict[int, Outcome] = {}
    lock = threading.Lock()

    def worker(client: Any) -> None:
        while True:
            try:
                index, kind, photos = todo.get_nowait()
            except queue.Empty:
                return
            o = send(client, index, kind, photos, args, min(args.timeout, deadline - time.monotonic()))
            with lock:
                results[index] = o

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    return [results[i] for i, _, _ in jobs], wall


def machine_line() -> str:
    """The machine as ``benchmarks/bench_embed.py`` describes it, on the device the app picks
    (``auto``)."""
    from benchmarks.bench_embed import machine
    from core.device import resolve_device

    return machine(resolve_device("auto"))


# -- the report ------------------------------------------------------------------------------
def _s(x: float | None, unit: str = " s") -> str:
    return "-" if x is None else f"{x:.2f}{unit}"


def report_text(r: dict[str, Any]) -> str:
    cfg, c, a = r["config"], r["concurrent"], r["alone"]
    lat, alat = c["latency_s"], a["latency_s"]
    out = [
        f"load test of {API_NAME} at {r['url']} ({'server started by this script' if r['own_server'] else 'running server'})",
        f"machine: {r['machine']}; load average {r['load_before']:.2f} before, {r['load_after']:.2f} after",
        f"requests {cfg['requests']} ({cfg['bad_requests']} bad: a text file named .jpg), concurrency {cfg['concurrency']}, "
        f"methods {', '.join(cfg['methods']) or 'none (decision + C-Score)'}, preset {cfg['preset']}, model {cfg['model']}, "
        f"deletion scores {'on' if cfg['scores'] else 'off'}, "
        + ("a distinct noisy copy of photo A per request (caches miss)" if cfg["distinct"] else "the same photos every time (maps may be cached)"),
        f"warm-up: {r['warmup']['status']} in {r['warmup']['latency_s']:.2f} s (not counted)",
        f"alone (concurrency 1, {a['requests']} requests): p50 {_s(alat['p50'])}, max {_s(alat['max'])}; "
        f"{a['ok']} ok, {a['clear_error']} clear errors, {a['failure']} failures, {a['timeout']} timeouts",
        f"concurrent: {c['ok']} ok, {c['clear_error']} clear errors, {c['failure']} failures, {c['timeout']} timeouts "
        f"(bad requests: {c['by_kind'].get('bad', {}).get(CLEAR_ERROR, 0)} of {cfg['bad_requests']} clear errors)",
        f"latency of the {lat['n']} answered good requests: p50 {_s(lat['p50'])}, p90 {_s(lat['p90'])}, p99 {_s(lat['p99'])}, "
        f"max {_s(lat['max'])}; slowest clear error {_s(c['clear_error_max_s'])}",
        f"throughput: {_s(c['throughput_rps'], ' requests/s')} ({c['ok'] + c['clear_error']} finished in {_s(c['wall_s'])})",
        f"ratio p50(concurrent) / p50(alone): {_s(r['ratio_p50'], '')}",
    ]
    answers = list(c["answers"].items())
    for msg, k in answers[:3]:
        out.append(f"  answer x{k}: {msg}")
    if len(answers) > 3:
        out.append(f"  ... and {len(answers) - 3} other answers ({sum(k for _, k in answers[3:])} requests)")
    for msg, k in c["errors"].items():
        out.append(f"  {msg} (x{k})")
    out.append("every request got an answer or a clear error" if r["all_answered"] else "SOME REQUESTS GOT NEITHER AN ANSWER NOR A CLEAR ERROR")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(x for x in __doc__.splitlines() if x.startswith("    python")))  # fmt: skip
    ap.add_argument("--url", help="a running app on this machine (loopback only); default: start `python app.py` on a free port")
    ap.add_argument("-n", "--requests", type=int, default=20, help=f"requests in the concurrent phase (1-{MAX_REQUESTS}, default 20)")
    ap.add_argument("-c", "--concurrency", type=int, default=4, help=f"requests in flight at once (1-{MAX_CONCURRENCY}, default 4)")
    ap.add_argument("--methods", nargs="*", default=[], help="explanation methods, e.g. xmap3 (default none: decision + C-Score only)")
    ap.add_argument("--preset", default="fast", choices=["fast", "full"])
    ap.add_argument("--scores", action="store_true", help="also compute deletion scores (off by default)")
    ap.add_argument("--model", default="sface")
    ap.add_argument("--photos", nargs=2, type=Path, default=[MISC / "obama.jpg", MISC / "obama2.jpg"], metavar=("A", "B"))
    ap.add_argument("--distinct", action="store_true",
                    help="give every request its own copy of photo A with faint noise, so the app's caches miss (default: same photos)")  # fmt: skip
    ap.add_argument("--bad", type=float, default=0.0, help="fraction of the requests that send a text file named .jpg (0-1, default 0)")
    ap.add_argument("--alone", type=int, default=3, help="baseline requests sent one at a time first (default 3)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take, queue wait included (default 300)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="bound on the whole run, server start included (default 600)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS:
        ap.error(f"--requests must be between 1 and {MAX_REQUESTS}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        ap.error(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if not 0.0 <= args.bad <= 1.0:
        ap.error("--bad is a fraction between 0 and 1")
    if not 0 <= args.alone <= 20:
        ap.error("--alone must be between 0 and 20")
    if args.timeout <= 0 or args.max_seconds <= 0:
        ap.error("--timeout and --max-seconds must be positive")
    if args.url:
        try:
            args.url = loopback_url(args.url)
        except ValueError as e:
            ap.error(str(e))
    for p in args.photos:
        if not p.is_file():
            ap.error(f"photo {p} not found (the default photos are in ../shared/data/faces/misc)")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole load test; the report as a dict."""
    deadline = time.monotonic() + args.max_seconds
    load_before = os.getloadavg()[0]
    server = None if args.url else LocalServer()
    try:
        if server is not None:
            server.wait(min(240.0, deadline - time.monotonic()))
        url = args.url or server.url
        with tempfile.TemporaryDirectory(prefix="load_app_") as tmp:
            bad_file = Path(tmp) / BAD_NAME
            bad_file.write_text("This is a text file with a .jpg name, not a photo.\n")
            bad = (bad_file, args.photos[1])

            def good(index: int) -> tuple[Path, Path]:
                a = distinct_copy(args.photos[0], Path(tmp), index) if args.distinct else args.photos[0]
                return (a, args.photos[1])

            try:
                client = make_client(url)
            except Exception as e:
                raise RuntimeError(f"could not reach the app at {url}: {type(e).__name__}: {e}") from None
            warm = send(client, -1, "good", good(-1), args, min(args.timeout, deadline - time.monotonic()))
            alone = [send(client, -2 - i, "good", good(-2 - i), args, min(args.timeout, deadline - time.monotonic())) for i in range(args.alone)]
            client.close()
            bads = bad_indices(args.requests, args.bad)
            jobs = [(i, "bad", bad) if i in bads else (i, "good", good(i)) for i in range(args.requests)]
            outcomes, wall = run_concurrent(url, jobs, args, deadline)
    finally:
        if server is not None:
            server.stop()
    s_alone, s_conc = summarize(alone), summarize(outcomes, wall)
    return {
        "url": url,
        "own_server": server is not None,
        "machine": machine_line(),
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "config": {
            "requests": args.requests,
            "bad_requests": len(bads),
            "concurrency": args.concurrency,
            "methods": list(args.methods),
            "preset": args.preset,
            "scores": args.scores,
            "distinct": args.distinct,
            "model": args.model,
            "alone": args.alone,
            "timeout_s": args.timeout,
            "max_seconds": args.max_seconds,
            "photos": [str(p) for p in args.photos],
        },
        "warmup": asdict(warm),
        "alone": s_alone,
        "concurrent": s_conc,
        "ratio_p50": ratio(s_conc["latency_s"]["p50"], s_alone["latency_s"]["p50"]),
        "all_answered": all_answered([warm, *alone, *outcomes]),
        "outcomes": [asdict(o) for o in [warm, *alone, *outcomes]],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        r = run(args)
    except RuntimeError as e:
        print(f"load_app: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r, indent=2) if args.json else report_text(r), flush=True)
    return 0 if r["all_answered"] else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # a request that timed out may still hold a client thread; do not wait for it at exit
    os._exit(code)
