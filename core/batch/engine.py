"""Whole benchmarks into a results store (``core.batch.parquet``), on one of two engines that only
schedule the same pair-level work (``core.batch.work``):

- ``local``: in this process, part after part; each photo aligned once, kept while a later
  pair still needs it.
- ``ray``: Ray actors (Moritz et al., "Ray: A Distributed Framework for Emerging AI
  Applications", OSDI 2018), each loading the model once (``num_gpus`` when the cluster has
  GPUs). Stage 1 aligns each distinct photo once, in chunks spread over the actors; stage 2
  explains parts of pairs on the actors, each part taking the stage-1 results it needs straight
  from Ray's object store. The driver writes each part as it finishes (at most ``2 x workers``
  in flight), so memory stays bounded however long the list. An actor whose process dies is
  restarted by Ray and its unfinished calls retried (``MAX_RESTARTS`` times);
  a part is written once, when its result reaches the driver, so no pair is lost or doubled.

``address=None`` starts a local Ray with ``workers`` CPUs (``ray.init(num_cpus=...)``);
``"auto"`` or ``"HOST:PORT"`` joins a running cluster (``ray start --head`` on one machine,
``ray start --address HOST:6379`` on the others), shipping ``core`` to it (``py_modules``).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from ..explainers.knobs import canonical_knobs
from .parquet import open_store
from .run import Progress, _settings
from .source import _as_pairs, _root
from .work import PairTask, PartResult, RunnerSpec, align_photos, explain_part

if TYPE_CHECKING:
    from ..runner import Runner

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
#: Photos per stage-1 call on a Ray actor.
ALIGN_CHUNK = 32
#: How often Ray restarts an actor whose process died, and retries its unfinished calls.
MAX_RESTARTS = 3


@dataclass
class StoreRun:
    """What ``run_store`` did: the store, pairs in the list, pairs run now, pairs kept from an
    earlier run, parts written, seconds, the engine and its workers."""

    out: Path
    n_pairs: int
    n_run: int
    n_kept: int
    n_parts: int
    seconds: float
    engine: str
    workers: int

    @property
    def pairs_per_s(self) -> float:
        return self.n_run / self.seconds if self.seconds > 0 else 0.0


def run_store(
    runner: Runner | RunnerSpec,
    source: str | Path | Iterable[Any],
    out: str | Path,
    images: str | Path | None = None,
    methods: Sequence[str] = ("xmap3",),
    preset: str = "fast",
    engine: str = "local",
    workers: int = 1,
    address: str | None = None,
    resume: bool = False,
    part_size: int = 8,
    faithfulness: bool = False,
    per_label: int | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    on_part: Callable[[PartResult], Any] | None = None,
    root: str | Path | None = None,
    **knobs: Any,
) -> StoreRun:
    """Verify and explain every pair of ``source`` (any source ``read_batch_pairs`` reads)
    into the results store ``out``. ``runner`` is a ``Runner`` (the local engine uses it as it
    is; the Ray engine builds one per actor from its model, device, calibration and threshold)
    or a ``RunnerSpec``. ``resume`` keeps what an earlier run with the same settings stored and
    runs the rest; ``part_size`` pairs go into one Parquet part; ``faithfulness`` adds each
    method's deletion/insertion scores and the random map's. ``on_part(part)`` is called after
    each part is written (e.g. to watch a run)."""
    from ..registry import explainer_spec

    if engine not in ENGINES:
        raise DataError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if workers < 1 or part_size < 1:
        raise DataError("--workers and the part size must be at least 1")
    methods = list(methods)
    for m in methods:
        explainer_spec(m)
    if isinstance(runner, RunnerSpec):
        spec, local_runner = runner, runner.build()
    else:
        spec = RunnerSpec(runner.model_name, str(runner.device or "auto"), _calibration_path(runner), runner.threshold_override)
        local_runner = runner
    root_dir = _root(root)
    pairs, base, source_name = _as_pairs(source, images, per_label, limit, root_dir)
    emb = local_runner.embedder  # a missing model is reported before any work
    threshold = local_runner.threshold()
    knobs = {"preset": preset, **canonical_knobs(knobs)}
    settings = _settings(pairs, base, methods, preset, emb.name, threshold, knobs)
    settings.update(weights_sha256=emb.weights_hash(), faithfulness=bool(faithfulness), source=source_name)
    store = open_store(out, settings, resume)
    tasks = [PairTask(i, p.file_x, p.file_y, p.same, p.fold) for i, p in enumerate(pairs) if i not in store.done]
    n_kept = len(pairs) - len(tasks)
    parts = [tasks[i : i + part_size] for i in range(0, len(tasks), part_size)]
    t0 = time.perf_counter()
    written = [0]

    def write(part: PartResult) -> None:
        store.write(part)
        written[0] += 1
        if progress is not None:
            progress(len(store.done) / max(1, len(pairs)), f"{len(store.done)}/{len(pairs)} pairs stored ({written[0]}/{len(parts)} parts)")
        if on_part is not None:
            on_part(part)

    complete = False
    try:
        if engine == "local":
            _run_local(local_runner, parts, base, root_dir, methods, knobs, faithfulness, write, progress)
        else:
            _run_ray(spec, parts, base, root_dir, methods, knobs, faithfulness, write, workers, address, progress)
        complete = True
    finally:
        summary = None
        if complete:
            from .duck import store_summary

            summary = store_summary(store.path)
        store.close(complete and len(store.done) == len(pairs), summary)
    return StoreRun(store.path, len(pairs), len(tasks), n_kept, written[0], time.perf_counter() - t0, engine, workers)


def _calibration_path(runner: Runner) -> str | None:
    path = getattr(runner, "_calibration_path", None)
    return None if path is None else str(path)


def _run_local(runner: Runner, parts: list[list[PairTask]], base: Path | None, root: Path | None, methods: list[str], knobs: dict[str, Any],
               faithfulness: bool, write: Callable[[PartResult], None], progress: Progress | None) -> None:  # fmt: skip
    uses = Counter(name for part in parts for t in part for name in (t.file_x, t.file_y))
    faces: dict[str, Any] = {}
    embeddings: dict[str, Any] = {}
    for k, part in enumerate(parts):
        if progress is not None:
            progress(k / max(1, len(parts)), f"part {k + 1}/{len(parts)}: faces")
        need = list(dict.fromkeys(n for t in part for n in (t.file_x, t.file_y) if n not in faces))
        faces.update(align_photos(runner, need, base, root))
        write(explain_part(runner, part, faces, methods, knobs, faithfulness, embeddings))
        for t in part:  # a photo is dropped after its last pair: memory bounded by the photos still to come
            for n in (t.file_x, t.file_y):
                uses[n] -= 1
                if uses[n] <= 0:
                    faces.pop(n, None)
                    embeddings.pop(n, None)


def ray_init(workers: int, address: str | None = None) -> bool:
    """Start a local Ray with ``workers`` CPUs, or join the cluster at ``address``; False when
    Ray was already initialised in this process (then it is used as it is)."""
    import ray

    if ray.is_initialized():
        return False
    repo = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k.startswith(("XFV_", "HF_", "OMP_", "MKL_")) or k in ("TORCH_HOME",)}
    if address is None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    else:
        import core

        ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env, "py_modules": [core]})
    return True


class PairWorker:
    """A Ray actor's state: one model, stage 1 (``align``) and stage 2 (``explain``) calls.
    Made a Ray actor class by ``ray.remote`` in ``_run_ray`` (the module imports without Ray)."""

    def __init__(self, spec: RunnerSpec, threads: int) -> None:
        import torch

        from ..device import tune_cpu_allocator

        torch.set_num_threads(max(1, threads))
        tune_cpu_allocator()
        self.runner = spec.build()
        self.embeddings: dict[str, Any] = {}

    def pid(self) -> int:
        return os.getpid()

    def align(self, names: list[str], base: str | None, root: str | None) -> dict[str, Any]:
        return align_photos(self.runner, names, base, root)

    def explain(self, tasks: list[PairTask], methods: list[str], knobs: dict[str, Any], faithfulness: bool, *chunks: dict[str, Any]) -> PartResult:
        faces: dict[str, Any] = {}
        for c in chunks:
            faces.update(c)
        self.embeddings = {k: v for k, v in self.embeddings.items() if k in faces}  # this part's photos only: bounded
        return explain_part(self.runner, tasks, faces, methods, knobs, faithfulness, self.embeddings)


def _run_ray(spec: RunnerSpec, parts: list[list[PairTask]], base: Path | None, root: Path | None, methods: list[str], knobs: dict[str, Any],
             faithfulness: bool, write: Callable[[PartResult], None], workers: int, address: str | None,
             progress: Progress | None) -> None:  # fmt: skip
    import ray

    started = ray_init(workers, address)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    num_gpus = min(1.0, gpus / workers) if gpus else 0.0
    cpus = max(1, int(ray.cluster_resources().get("CPU", workers)) // workers) if address else 1
    worker_spec = spec if num_gpus or spec.device != "auto" else RunnerSpec(spec.model, "cpu", spec.calibration, spec.threshold)
    cls = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(PairWorker)
    actors: list[Any] = [cls.options(num_cpus=cpus, num_gpus=num_gpus).remote(worker_spec, cpus) for _ in range(workers)]
    log.info("ray: %d workers (%d CPU%s, %.2g GPU each)", workers, cpus, "s" if cpus > 1 else "", num_gpus)
    names = list(dict.fromkeys(n for part in parts for t in part for n in (t.file_x, t.file_y)))
    where: dict[str, int] = {}
    chunks: list[Any] = []  # stage-1 results in Ray's object store; a chunk's ref is dropped after the last part that needs it
    b, r = None if base is None else str(base), None if root is None else str(root)
    for k in range(0, len(names), ALIGN_CHUNK):
        chunk = names[k : k + ALIGN_CHUNK]
        chunks.append(actors[len(chunks) % workers].align.remote(chunk, b, r))
        for n in chunk:
            where[n] = len(chunks) - 1
    if progress is not None:
        progress(0.0, f"ray: {workers} workers, {len(names)} photos in {len(chunks)} chunks, {len(parts)} parts")
    needs = [sorted({where[n] for t in part for n in (t.file_x, t.file_y)}) for part in parts]
    uses = Counter(i for need in needs for i in need)
    load = [0] * workers
    pending: dict[Any, tuple[int, list[int]]] = {}  # in-flight part -> its actor, the chunks it reads
    todo = list(reversed(range(len(parts))))
    try:
        while todo or pending:
            while todo and len(pending) < 2 * workers:
                j = todo.pop()
                k = min(range(workers), key=load.__getitem__)  # the least busy actor
                ref = actors[k].explain.remote(parts[j], methods, knobs, faithfulness, *(chunks[i] for i in needs[j]))
                pending[ref] = (k, needs[j])
                load[k] += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                k, need = pending.pop(ref)
                load[k] -= 1
                try:
                    part = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    raise DataError(f"a Ray worker died {MAX_RESTARTS + 1} times ({e}); the parts written so far are kept: "
                                    "run the same command with --resume") from None  # fmt: skip
                write(part)
                for i in need:
                    uses[i] -= 1
                    if uses[i] <= 0:
                        chunks[i] = None  # Ray frees the crops once nothing refers to them
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
