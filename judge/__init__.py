"""Judges: J(a, b) = probability that two truncated traces of one question end with the same answer.

Light to import: judges with models import them on first use. Modules:
`truncation` (the one prefix rule), `base` (Prefix, Judge, registry, load_judge),
`simple` (oracle, random, jaccard), `embedding` (MiniLM cosine), `features`
(logistic regression on pair features), `cross_encoder` (fine-tuned MiniLM on
concatenated pairs), `llm` (causal-LM judge, zero-shot or fine-tuned), `llm_train` (its
fine-tune: top layers or LoRA), `finetune` (the resumable, validated loop), `lm_embed`
(LM hidden-state embeddings + a pair classifier), `losses` (focal loss and the shared
training loop), `loro` (leave-one-run-out evaluation), `pairs` (labelled pairs of a run),
`metrics` (AUROC, TNR at FNR), `scoring` (through the score cache), `train`
(the library behind `dp judge`), `crossfit` (K judges on folds of problems), `insample` (what
a judge saw), `prefix_reader` (prefix texts read by offsets), `sampled_pairs` (the one seeded
pair sample the figures share). Never imports `dp.simulate` or `dp.figures`.
"""

from dp.judge.base import JUDGES, Judge, Prefix, load_judge, register_judge
from dp.judge.truncation import REASONING_WORDS, TruncationRule, decision_point, decision_points

__all__ = [
    "JUDGES", "Judge", "Prefix", "load_judge", "register_judge",
    "REASONING_WORDS", "TruncationRule", "decision_point", "decision_points",
]
