"""The `lm-embed` judge: the causal LM's hidden states as prefix embeddings, a small classifier on pairs.

The cheap sibling of the `llm` judge. Each distinct prefix text (cut to
`max_trace_tokens` model tokens, `keep` end) goes through the same LM (SmolLM2-135M by
default) ONCE: its embedding is the mean over its tokens of the hidden state after
decoder layer `layer` (-1 = the last). The embedding is kept on the judge object
(`embed`), so every pair that shares the prefix shares that one forward pass, here and
in later calls (`texts_embedded` counts the passes). A pair (u, v) becomes the
symmetric features [u * v, |u - v|, cos(u, v)], standardised, and a logistic
regression (scikit-learn, L2 strength `C`) trained on labelled pairs gives P(same).

A trained judge is a directory: judge.json (settings, training summary) and
`classifier.npz` (mean, scale, coef, intercept); the LM is named, not copied. There
is no untrained default. Nothing here reads the cache or knows the prompt of `llm`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.judge.base import Prefix, distinct_texts, open_judge_dir, write_judge_file
from dp.judge.losses import hf_quiet, settings_from, torch_device
from dp.models import DEFAULT_MODEL, resolve_model

CLASSIFIER_FILE = "classifier.npz"


@dataclasses.dataclass(frozen=True)
class LMEmbedSettings:
    """How prefixes are embedded and the classifier is fitted. Frozen; stored in judge.json."""

    model: str = DEFAULT_MODEL  # dp.models alias or local HF directory
    layer: int = -1  # hidden state after this decoder layer (-1 = last; 0 = the embeddings)
    max_trace_tokens: int = 128  # model tokens kept of each prefix (>= 1)
    keep: str = "end"  # which end of a longer prefix stays: "end" or "start"
    batch_size: int = 16  # prefixes per forward pass
    C: float = 0.1  # inverse L2 strength of the logistic regression (> 0)
    max_train_pairs: int | None = 20000  # seeded sample of the training pairs; None = all
    max_metric_pairs: int = 2000  # train_judge scores at most this many training pairs for train_auroc
    device: str | None = None  # torch device; None = cuda when available

    def __post_init__(self) -> None:
        if not isinstance(self.max_trace_tokens, int) or self.max_trace_tokens < 1:
            raise DPError(f"max_trace_tokens must be an integer >= 1, got {self.max_trace_tokens!r}")
        if self.keep not in ("end", "start"):
            raise DPError(f"keep must be 'end' or 'start', got {self.keep!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise DPError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not self.C > 0:
            raise DPError(f"C must be > 0, got {self.C!r}")
        if not isinstance(self.layer, int):
            raise DPError(f"layer must be an integer, got {self.layer!r}")


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(m, 2d + 1) symmetric pair features [u * v, |u - v|, cos] of (m, d) embeddings."""
    cos = np.einsum("ij,ij->i", u, v) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-12)
    return np.concatenate([u * v, np.abs(u - v), cos[:, None]], axis=1)


class LMEmbedJudge:
    """sigmoid(w . standardised pair features + b) over mean-pooled LM hidden states."""

    cacheable = True

    def __init__(self, settings: LMEmbedSettings, classifier: dict | None = None, meta: dict | None = None):
        self.settings = settings
        self.classifier = classifier  # {"mean", "scale", "coef", "intercept"} arrays; None = untrained
        self.meta = dict(meta or {})
        self._lm = None
        self._emb: dict[str, np.ndarray] = {}  # prefix text -> (d,) float32 embedding
        self.texts_embedded = 0  # forward passes (one per distinct prefix text) since creation
        self.name = self.compute_name()

    def compute_name(self) -> str:
        s = dataclasses.asdict(self.settings)
        key = [s["model"], s["layer"], s["max_trace_tokens"], s["keep"]]
        if self.classifier is not None:
            key.append(hashlib.blake2b(np.concatenate([self.classifier[k].ravel() for k in sorted(self.classifier)])
                                       .astype(np.float64).tobytes(), digest_size=4).hexdigest())
        return f"lm-embed:{Path(self.settings.model).name}:" + hashlib.blake2b(
            repr(key).encode(), digest_size=4).hexdigest()

    @classmethod
    def create(cls, seed: int = 0) -> LMEmbedJudge:
        raise DPError("the lm-embed judge has no untrained default: train one with "
                      "`dp judge train --judge lm-embed --run RUN --out DIR` and pass --judge DIR")

    # ---------------------------------------------------------- embeddings
    def _load(self):
        if self._lm is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            path = resolve_model(self.settings.model)
            try:
                with hf_quiet():
                    tok = AutoTokenizer.from_pretrained(str(path))
                    lm = AutoModel.from_pretrained(str(path), dtype=torch.float32)
            except OSError as e:
                raise DPError(f"cannot load a model from {path}: {e}") from None
            self._lm = (lm.to(torch_device(self.settings.device)).eval(), tok)
        return self._lm

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 embeddings; each text not seen before takes one forward pass."""
        import torch

        new = [t for t in dict.fromkeys(texts) if t not in self._emb]
        if new:
            lm, tok = self._load()
            s = self.settings
            ids = tok(new, add_special_tokens=False)["input_ids"]
            ids = [(i[-s.max_trace_tokens:] if s.keep == "end" else i[:s.max_trace_tokens]) or [tok.eos_token_id or 0]
                   for i in ids]
            order = np.argsort([len(i) for i in ids], kind="stable")
            device = next(lm.parameters()).device
            with torch.inference_mode():
                for start in range(0, len(new), s.batch_size):
                    rows = order[start:start + s.batch_size]
                    width = max(len(ids[r]) for r in rows)
                    batch = torch.zeros((len(rows), width), dtype=torch.long)
                    mask = torch.zeros_like(batch)
                    for k, r in enumerate(rows):
                        batch[k, :len(ids[r])] = torch.tensor(ids[r])
                        mask[k, :len(ids[r])] = 1
                    out = lm(input_ids=batch.to(device), attention_mask=mask.to(device), output_hidden_states=True)
                    h = out.hidden_states[s.layer].float()
                    m = mask.to(device).unsqueeze(-1).float()
                    pooled = ((h * m).sum(1) / m.sum(1)).cpu().numpy().astype(np.float32)
                    for k, r in enumerate(rows):
                        self._emb[new[r]] = pooled[k]
            self.texts_embedded += len(new)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._emb[t] for t in texts])

    def features(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        texts, ia, ib = distinct_texts(left, right)
        emb = self.embed(texts)
        return pair_features(emb[ia], emb[ib])

    # ------------------------------------------------------------- scoring
    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        if self.classifier is None:
            raise DPError("this lm-embed judge is not trained")
        if not len(left):
            return np.zeros(0)
        c = self.classifier
        x = (self.features(left, right) - c["mean"]) / c["scale"]
        z = x @ c["coef"] + float(c["intercept"])
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / CLASSIFIER_FILE, **self.classifier)
        return write_judge_file(out, {"type": "lm-embed", "name": self.name,
                                      "settings": dataclasses.asdict(self.settings), **self.meta})

    @classmethod
    def load(cls, path: str | Path, seed: int = 0) -> LMEmbedJudge:
        spec, directory = open_judge_dir(path, "lm-embed")
        s = settings_from(LMEmbedSettings, {**spec.get("settings", {}), "device": None})
        try:
            with np.load(directory / CLASSIFIER_FILE) as f:
                classifier = {k: f[k] for k in f.files}
        except OSError as e:
            raise DPError(f"cannot read {directory / CLASSIFIER_FILE}: {e}") from None
        meta = {k: v for k, v in spec.items() if k not in ("type", "name", "settings")}
        return cls(s, classifier, meta)


def train_lm_embed(pairs, s: LMEmbedSettings, seed: int = 0, meta: dict | None = None) -> LMEmbedJudge:
    """Embed every distinct prefix once, fit the logistic regression on the pairs' features."""
    import time

    from sklearn.linear_model import LogisticRegression

    from dp.judge.losses import sample_rows

    y = np.asarray(pairs.labels, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise DPError("cannot train a judge: pairs of both labels needed")
    rows = sample_rows(y.size, s.max_train_pairs, seed, "lm-embed")
    judge = LMEmbedJudge(s, None, meta)
    t0 = time.perf_counter()
    x = judge.features([pairs.left[i] for i in rows], [pairs.right[i] for i in rows])
    embed_s = time.perf_counter() - t0
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-8] = 1.0
    clf = LogisticRegression(C=s.C, max_iter=2000).fit((x - mean) / scale, y[rows])
    judge.classifier = {"mean": mean, "scale": scale, "coef": clf.coef_[0].astype(np.float64),
                        "intercept": np.array(clf.intercept_[0])}
    judge.meta = {**judge.meta, "seed": seed,
                  "training": {"train_pairs": int(rows.size), "prefixes_embedded": judge.texts_embedded,
                               "embed_seconds": round(embed_s, 1),
                               "fit_seconds": round(time.perf_counter() - t0 - embed_s, 1)}}
    judge.name = judge.compute_name()
    return judge


def trainer(pairs, out: Path, seed: int, meta: dict, **settings) -> LMEmbedJudge:
    """`dp.judge.train.TRAINERS` entry: settings are LMEmbedSettings fields (`--set k=v`)."""
    s = settings_from(LMEmbedSettings, settings)
    judge = train_lm_embed(pairs, s, seed, meta)
    judge.train_settings = s  # train_judge reads max_metric_pairs
    judge.save(out)
    return judge
