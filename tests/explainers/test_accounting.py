"""Per-call accounting of forward passes: each explanation reports the passes it ran itself
(``scores["forward_passes"]``) and those it took from the cache, naming the method that
computed them (``extras["cached_from"]``), correct with two explanations running at once in
two threads (the app serves several users from one ``Runner``)."""

from __future__ import annotations

import threading

import numpy as np
import torch

from core import Runner
from core.explainers import occlusion, perturb
from core.types import FacePair

from .conftest import RegionEmbedder, toy_face

XMAP = {"patch_sizes": (14, 28), "stride": 10}
REMOVAL = {"region_size": 64, "grid_step": 32, "steps": 3}  # 7 x 7 regions on the 32-pixel toy


class BarrierEmbedder(RegionEmbedder):
    """The toy embedder, shared by two threads: each thread's first two batches wait for the
    other thread's, so both explanations are inside their forward passes at the same time,
    and each has counted one batch before either can finish. ``images`` counts every image
    embedded by any thread (what a process-global counter would see)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=30)
        self.local = threading.local()
        self.lock = threading.Lock()
        self.images = 0

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        n = getattr(self.local, "calls", 0) + 1
        self.local.calls = n
        if n <= 2:
            self.barrier.wait()
        with self.lock:
            self.images += int(batch.shape[0])
        return super().embed(batch)


def _pairs() -> tuple[FacePair, FacePair]:
    """Two users' pairs: different pixels, so they share nothing in the cache."""
    return FacePair(toy_face(), toy_face(value=250)), FacePair(toy_face(value=200), toy_face(value=190))


def test_two_explanations_at_once_in_two_threads_each_report_their_own_passes(toy):
    emb = BarrierEmbedder(parties=2)
    runner = Runner(embedder=emb, threshold=0.5)
    p, q = _pairs()
    jobs = {"xmap1": (p, XMAP), "single_removal": (q, REMOVAL)}
    cost = {m: runner.forward_passes([m], **knobs)["total"] for m, (_, knobs) in jobs.items()}
    assert cost["xmap1"] != cost["single_removal"] and min(cost.values()) > 0
    out: dict[str, object] = {}
    seen: dict[str, int] = {}  # images embedded by both threads while this one ran

    def work(method: str) -> None:
        pair, knobs = jobs[method]
        before = emb.images
        try:
            out[method] = runner.explain(pair, methods=[method], embeddings=(np.ones(2) / 2**0.5,) * 2, **knobs).explanations[0]
        except BaseException as e:  # reported below, not lost in the thread
            out[method] = e
        seen[method] = emb.images - before

    threads = [threading.Thread(target=work, args=(m,)) for m in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    for m in jobs:
        exp = out[m]
        assert not isinstance(exp, BaseException) and exp.ok, exp  # type: ignore[union-attr]
        assert exp.scores["forward_passes"] == cost[m]  # exactly its own cost, not the sum of both
        assert "cached_from" not in exp.extras  # nothing of the other user's came from the cache
        # a before/after difference of a process-global count would have been wrong here:
        # it includes the passes the other thread ran in the meantime
        assert seen[m] > cost[m]
    assert emb.images == sum(cost.values())  # and the two together ran just their two costs
    assert not hasattr(perturb, "STATS")  # no process-global counter left to read


def test_ledgers_in_two_threads_count_only_their_own_call(toy):
    """The same at the library level: two ``xmaps`` calls at once, one ledger each."""
    emb = BarrierEmbedder(parties=2)
    p, q = _pairs()
    fast = {"patch_sizes": (28,), "stride": 10}
    cost = {"p": occlusion.forward_passes(32, **XMAP)[1], "q": occlusion.forward_passes(32, **fast)[1]}
    ledgers = {"p": perturb.Ledger("xmap2"), "q": perturb.Ledger("xmap3")}
    errors: list[BaseException] = []

    def work(name: str, pair: FacePair, knobs: dict) -> None:
        try:
            occlusion.xmaps(pair, emb, (2, 3), occlusion.XMapParams.from_knobs(**knobs), batch_size=5, ledger=ledgers[name])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=a) for a in (("p", p, XMAP), ("q", q, fast))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    for name, led in ledgers.items():
        assert led.forward_passes == cost[name] and led.cache_hits == 0 and led.cached_passes == 0 and led.cached_by == {}


def test_a_second_method_takes_its_passes_from_the_cache_of_the_first_and_names_it(toy):
    runner = Runner(embedder=toy, threshold=0.5)
    p, _ = _pairs()
    cost = runner.forward_passes(["xmap1", "xmap3"], **XMAP)
    n = cost["xmap1"]
    assert n > 0 and cost["xmap3"] == 0  # the registry's prediction: X-Map III shares X-Map I's occlusions
    x1 = occlusion.XMapExplainer(1).explain(p, toy, **XMAP)
    x3 = occlusion.XMapExplainer(3).explain(p, toy, **XMAP)
    assert x1.scores["forward_passes"] == n and "cached_from" not in x1.extras
    assert x3.scores["forward_passes"] == 0  # run by this call
    c = x3.extras["cached_from"]
    assert c["method"] == "xmap1" and c["label"] == x1.label and c["forward_passes"] == n
    assert [(s["method"], s["forward_passes"]) for s in c["sources"]] == [("xmap1", n)]

    # the ledger of such a call says the same: nothing run, n passes served, all by xmap1
    led = perturb.Ledger("xmap2", "X-Map II")
    occlusion.xmaps(p, toy, (2,), occlusion.XMapParams.from_knobs(**XMAP), ledger=led)
    assert led.forward_passes == 0 and led.cached_passes == n and led.cached_by == {"xmap1": n}
    assert led.cache_hits == 1 + len(XMAP["patch_sizes"]) * 2  # the references, and each face at each scale
    assert led.cached_from()["method"] == "xmap1"


def test_removal_parts_taken_from_the_cache_name_their_method(toy):
    """Greedy removal starts from single removal's scores: after single removal, it takes
    those passes (and the references) from its cache and runs only its greedy steps."""
    runner = Runner(embedder=toy, threshold=0.5)
    _, q = _pairs()
    from core.explainers import removal

    single = removal.RemovalExplainer("single_removal").explain(q, toy, **REMOVAL)
    n = runner.forward_passes(["single_removal"], **REMOVAL)["total"]
    assert single.scores["forward_passes"] == n
    greedy = removal.RemovalExplainer("greedy_removal").explain(q, toy, **REMOVAL)
    c = greedy.extras["cached_from"]
    assert c["method"] == "single_removal" and c["forward_passes"] == n
    predicted = runner.forward_passes(["single_removal", "greedy_removal"], **REMOVAL)["greedy_removal"]
    assert 0 < greedy.scores["forward_passes"] <= predicted  # greedy searches may stop early
