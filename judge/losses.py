"""The training objective of the neural judges (`focal_loss`) and the loop pieces they share.

Both neural judges (`dp.judge.cross_encoder`, `dp.judge.llm`) reduce a pair to ONE
logit z = log P(same) - log P(different) and train it with `focal_loss`, so "the
judge's loss" has one definition. With gamma = 0 and alpha = None it is plain binary
cross-entropy. Oversampling of the "different" class is done before, in the pairs
(`build_pairs(oversample_negative=2)`); `sample_rows` only draws a seeded subset.

Also here, shared by both trainers: `LoopSettings` (the optimiser knobs, validated
once), `train_loop` (AdamW, linear warm-up then decay, gradient clipping, seeded
batches and side swaps), `torch_device` (cuda when present) and `hf_quiet`
(offline, no progress bars or "newly initialised head" notices while loading or saving). Nothing here knows
a model's architecture or a tokenizer: a judge hands `train_loop` a function that
turns row indices into logits. torch is imported on use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from dp.errors import DPError
from dp.seeds import derive, rng

log = logging.getLogger("dp.judge")


@dataclass(frozen=True)
class LoopSettings:
    """How a neural judge is fine-tuned. Frozen; stored verbatim in judge.json."""

    steps: int = 300  # optimiser steps (>= 1)
    batch_size: int = 16  # pairs per step (>= 1)
    lr: float = 5e-5  # AdamW peak learning rate (> 0)
    weight_decay: float = 0.01  # AdamW decoupled weight decay (>= 0)
    warmup: float = 0.1  # share of the steps with linear warm-up, in [0, 1); then linear decay to 0
    max_train_pairs: int | None = 2000  # seeded sample of the (already oversampled) pairs; None = all
    focal_gamma: float = 0.0  # focal loss gamma (>= 0); 0 = cross-entropy
    focal_alpha: float | None = None  # weight of label 1 ("same"), 1 - alpha of label 0; None = 1 for both
    swap: bool = True  # show each training pair in a seeded random order (a judge must be symmetric)
    device: str | None = None  # torch device; None = cuda when available, else cpu

    def __post_init__(self) -> None:
        def bad(name, rule):
            raise DPError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "an integer >= 1")
        if not self.lr > 0:
            bad("lr", "> 0")
        if not self.weight_decay >= 0:
            bad("weight_decay", ">= 0")
        if not 0 <= self.warmup < 1:
            bad("warmup", "in [0, 1)")
        if self.max_train_pairs is not None and (not isinstance(self.max_train_pairs, int)
                                                 or self.max_train_pairs < 1):
            bad("max_train_pairs", "an integer >= 1 or null")
        if not self.focal_gamma >= 0:
            bad("focal_gamma", ">= 0")
        if self.focal_alpha is not None and not 0 <= self.focal_alpha <= 1:
            bad("focal_alpha", "in [0, 1] or null")


def settings_from(cls, values: dict):
    """`cls(**values)` with a one-line DPError naming unknown settings and the known ones."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DPError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**values)


def focal_loss(logits, labels, alpha: float | None = None, gamma: float = 0.0):
    """Mean binary focal loss L = -alpha_t (1 - p_t)^gamma log p_t over a batch (a torch scalar).

    logits: (n,) float tensor, z = log P(label 1) - log P(label 0); labels: (n,) 0/1.
    p = sigmoid(z); p_t = p for label 1 ("same answer"), 1 - p for label 0.
    alpha_t = alpha for label 1, 1 - alpha for label 0; alpha = None weighs both 1.
    gamma = 0, alpha = None: binary cross-entropy. Computed from log-sigmoid (stable).
    """
    import torch
    import torch.nn.functional as F

    if gamma < 0:
        raise DPError(f"focal gamma must be >= 0, got {gamma}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise DPError(f"focal alpha must be in [0, 1] or None, got {alpha}")
    z = logits.float().reshape(-1)
    y = labels.to(z.dtype).reshape(-1)
    signed = torch.where(y > 0.5, z, -z)  # p_t = sigmoid(signed)
    log_pt = F.logsigmoid(signed)
    loss = -log_pt
    if gamma:
        loss = loss * (1.0 - log_pt.exp()).pow(gamma)
    if alpha is not None:
        loss = loss * torch.where(y > 0.5, torch.full_like(z, alpha), torch.full_like(z, 1.0 - alpha))
    return loss.mean()


def torch_device(device: str | None = None) -> str:
    """`device`, or 'cuda' when a GPU is visible, else 'cpu'."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def hf_quiet():
    """Load or save transformers models offline (HF_HUB_OFFLINE), without progress bars or info notices."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def seed_torch(seed: int, what: str) -> None:
    """Seed torch's global generator (head init and dropout draw from it) from (seed, what)."""
    import torch

    torch.manual_seed(derive(seed, what))


def sample_rows(n: int, max_rows: int | None, seed: int, what: str) -> np.ndarray:
    """Sorted row indices: all n, or a seeded sample of `max_rows` without replacement."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(rng(seed, what, "rows").choice(n, max_rows, replace=False))


def batch_order(n: int, steps: int, batch_size: int, seed: int, what: str) -> list[np.ndarray]:
    """`steps` batches of row indices: seeded epochs (shuffles) of range(n), concatenated."""
    if n < 1:
        raise DPError("no training pairs")
    gen = rng(seed, what, "order")
    need = steps * batch_size
    order = np.concatenate([gen.permutation(n) for _ in range(-(-need // n))])[:need]
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def schedule(step: int, steps: int, warmup: float = 0.1) -> float:
    """Learning-rate factor at `step` (0-based): linear warm-up over `warmup` of the steps, then linear decay."""
    w = max(1, int(round(warmup * steps)))
    if step < w:
        return (step + 1) / w
    return max(0.0, (steps - step) / max(1, steps - w))


def train_loop(model, batch_logits, labels: np.ndarray, s: LoopSettings, seed: int, what: str) -> dict:
    """Fine-tune `model` in place; return a summary of the run (for judge.json).

    batch_logits(rows, swap) -> (len(rows),) logit tensor (with grad) for the pairs
    `rows` of the training set, each shown right-left where `swap` is True.
    `labels`: (n,) 0/1 of the training set. Leaves the model in eval mode.
    """
    import torch

    rows = sample_rows(len(labels), s.max_train_pairs, seed, what)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: schedule(k, s.steps, s.warmup))
    flips = rng(seed, what, "swap")
    losses: list[float] = []
    model.train()
    t0 = time.perf_counter()
    for step, batch in enumerate(batch_order(rows.size, s.steps, s.batch_size, seed, what)):
        idx = rows[batch]
        swap = flips.random(idx.size) < 0.5 if s.swap else np.zeros(idx.size, dtype=bool)
        z = batch_logits(idx, swap)
        y = torch.as_tensor(np.asarray(labels)[idx].astype(np.float32), device=z.device)
        loss = focal_loss(z, y, s.focal_alpha, s.focal_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 50 == 0:
            log.info("%s step %d/%d loss %.4f", what, step + 1, s.steps, np.mean(losses[-50:]))
    model.eval()
    seconds = time.perf_counter() - t0
    return {"train_pairs": int(rows.size), "pairs_seen": s.steps * s.batch_size,
            "seconds": round(seconds, 1), "pairs_per_s": round(s.steps * s.batch_size / seconds, 2),
            "loss_first_10": float(np.mean(losses[:10])), "loss_last_10": float(np.mean(losses[-10:]))}
