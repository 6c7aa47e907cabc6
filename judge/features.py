"""The `features` judge: logistic regression over cheap, symmetric features of a prefix pair.

Features (all symmetric in the two sides, see `FEATURE_NAMES`): word-set and number-set
Jaccard, Jaccard of the words near each prefix's end, whether answers are already
stated in the prefixes (`dp.answers.extract_answer`, compared after `normalize`) and
agree, whether the last numbers agree or appear in the other prefix, length ratio,
mean length, shared-prefix ratio, and the cosine of hashed character 3-gram counts.
No neural model: it scores ~10^4 pairs a second on one core.

A trained judge is a JSON file (feature names, scaler mean/scale, coefficients,
intercept, training settings), never a pickle. `FeaturesJudge.create()` loads the
default shipped in `dp/judge/default/features.json`. Training data come from
`dp.judge.pairs`; the command that trains lives in `dp.judge.train`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from dp import answers as ans
from dp.errors import DPError
from dp.judge.base import JUDGE_FILE, Prefix, read_judge_file
from dp.judge.simple import jaccard, word_set

FEATURE_VERSION = 1
FEATURE_NAMES: tuple[str, ...] = (
    "word_jaccard",  # Jaccard of lowercased word sets
    "tail_word_jaccard",  # the same over the last TAIL_CHARS characters of each prefix
    "number_jaccard",  # Jaccard of the sets of numbers written
    "answers_agree",  # both prefixes state an answer and the normalised answers are equal
    "answers_differ",  # both state an answer and they differ
    "answer_one_side",  # exactly one prefix states an answer
    "last_number_agree",  # both write numbers and the last ones are equal
    "last_number_crossed",  # share of sides whose last number appears in the other prefix
    "length_ratio",  # min / max prefix tokens
    "log_mean_tokens",  # log(1 + mean prefix tokens)
    "shared_prefix_ratio",  # longest common character prefix / shorter prefix
    "char3_cosine",  # cosine of hashed character 3-gram counts
)
TAIL_CHARS = 300
MAX_ANSWER_CHARS = 40  # longer "answers" extracted from a prefix are taken as no answer
NGRAM_BINS = 2**18
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:/\d+)?")
DEFAULT_RESOURCE = ("default", "features.json")


@dataclass
class _Side:
    """What the features need from one distinct prefix, computed once."""

    words: frozenset
    tail: frozenset
    numbers: frozenset
    last_number: str | None
    answer: str | None
    n_tokens: int
    text: str


def _side(p: Prefix) -> _Side:
    nums = [n.rstrip("0").rstrip(".") if "." in n else n for n in _NUMBER.findall(p.text)]
    answer = ans.extract_answer(p.text)
    answer = ans.normalize(answer) if answer is not None else None
    if answer is not None and len(answer) > MAX_ANSWER_CHARS:
        answer = None  # a "final answer line" that is really a reasoning sentence of a prefix
    return _Side(
        words=word_set(p.text), tail=word_set(p.text[-TAIL_CHARS:]), numbers=frozenset(nums),
        last_number=nums[-1] if nums else None, answer=answer or None, n_tokens=int(p.n_tokens),
        text=p.text,
    )


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over C-speed slice compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _char3_cosine(texts: list[str], ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(analyzer="char", ngram_range=(3, 3), n_features=NGRAM_BINS,
                            alternate_sign=False, norm="l2", lowercase=True)
    x = vec.transform(texts).tocsr()
    out = np.empty(ia.size)
    for s in range(0, ia.size, 8192):  # bounded memory: 8192 pairs of sparse rows at a time
        a, b = ia[s:s + 8192], ib[s:s + 8192]
        out[s:s + a.size] = np.asarray(x[a].multiply(x[b]).sum(axis=1)).reshape(-1)
    return out


def pair_features(left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
    """(n_pairs, len(FEATURE_NAMES)) float64 feature matrix."""
    index: dict[str, int] = {}
    sides: list[_Side] = []
    for p in (*left, *right):
        if p.text not in index:
            index[p.text] = len(sides)
            sides.append(_side(p))
    ia = np.fromiter((index[p.text] for p in left), dtype=np.int64, count=len(left))
    ib = np.fromiter((index[p.text] for p in right), dtype=np.int64, count=len(right))
    x = np.zeros((len(left), len(FEATURE_NAMES)), dtype=np.float64)
    for row, (i, j) in enumerate(zip(ia.tolist(), ib.tolist(), strict=True)):
        a, b = sides[i], sides[j]
        both = a.answer is not None and b.answer is not None
        crossed = 0.0
        if a.last_number is not None and a.last_number in b.numbers:
            crossed += 0.5
        if b.last_number is not None and b.last_number in a.numbers:
            crossed += 0.5
        short, long_ = min(a.n_tokens, b.n_tokens), max(a.n_tokens, b.n_tokens)
        min_chars = min(len(a.text), len(b.text))
        x[row, :11] = (
            jaccard(a.words, b.words),
            jaccard(a.tail, b.tail),
            jaccard(a.numbers, b.numbers),
            float(both and a.answer == b.answer),
            float(both and a.answer != b.answer),
            float((a.answer is None) != (b.answer is None)),
            float(a.last_number is not None and a.last_number == b.last_number),
            crossed,
            short / long_ if long_ else 1.0,
            np.log1p((a.n_tokens + b.n_tokens) / 2.0),
            _common_prefix(a.text, b.text) / min_chars if min_chars else 1.0,
        )
    if len(left):
        x[:, 11] = _char3_cosine([s.text for s in sides], ia, ib)
    return x


class FeaturesJudge:
    """sigmoid(coef . standardised features + intercept)."""

    cacheable = True

    def __init__(self, coef, intercept: float, mean, scale,
                 feature_names: Sequence[str] = FEATURE_NAMES, meta: dict | None = None):
        if tuple(feature_names) != FEATURE_NAMES:
            raise DPError("this features judge was trained on other features than this dp computes; retrain it")
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.meta = dict(meta or {})
        self.name = f"features:{self.digest()}"

    # ------------------------------------------------------------ persistence
    def params(self) -> dict:
        return {
            "type": "features", "feature_version": FEATURE_VERSION,
            "feature_names": list(FEATURE_NAMES), "mean": self.mean.tolist(),
            "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept,
        }

    def digest(self) -> str:
        """8 hex digits identifying the model (its parameters), used in the cache key."""
        blob = json.dumps(self.params(), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=4).hexdigest()

    def to_json(self) -> dict:
        return {**self.params(), **{k: v for k, v in self.meta.items() if k not in self.params()}}

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / JUDGE_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def from_json(cls, spec: dict) -> FeaturesJudge:
        if spec.get("type") != "features" or spec.get("feature_version") != FEATURE_VERSION:
            raise DPError(f"not a features judge of version {FEATURE_VERSION} (type {spec.get('type')!r}, "
                          f"version {spec.get('feature_version')!r})")
        meta = {k: v for k, v in spec.items()
                if k not in ("type", "feature_version", "feature_names", "mean", "scale", "coef", "intercept")}
        return cls(spec["coef"], spec["intercept"], spec["mean"], spec["scale"], spec["feature_names"], meta)

    @classmethod
    def load(cls, path: str | Path, seed: int = 0) -> FeaturesJudge:
        return cls.from_json(read_judge_file(path))

    @classmethod
    def create(cls, seed: int = 0) -> FeaturesJudge:
        """The default judge shipped with the package."""
        res = resources.files("dp.judge").joinpath(*DEFAULT_RESOURCE)
        if not res.is_file():
            raise DPError("the default features judge is not installed; train one with `dp judge train`")
        return cls.from_json(json.loads(res.read_text()))

    # ---------------------------------------------------------------- scoring
    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        z = ((pair_features(left, right) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def train_features(
    left: Sequence[Prefix], right: Sequence[Prefix], labels: np.ndarray,
    c: float = 1.0, meta: dict | None = None,
) -> FeaturesJudge:
    """Fit the logistic regression on labelled pairs (label 1 = same final answer).

    Oversampling, if any, is already in the pairs (`build_pairs(oversample_negative=...)`).
    Deterministic: lbfgs on a convex loss, no random state.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise DPError("cannot train a judge: pairs of both labels needed")
    x = pair_features(left, right)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((x - mean) / scale, y)
    settings = {"model": "LogisticRegression", "C": c, "solver": "lbfgs"}
    return FeaturesJudge(model.coef_[0], float(model.intercept_[0]), mean, scale,
                         meta={"settings": settings, **(meta or {})})
