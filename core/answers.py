"""Answer extraction and equivalence, defined once: everything that votes or grades imports this.

`extract_answer` pulls the final answer out of a trace's text (last `\\boxed{}`, then
"the answer is X", "#### X", a final "A: X" line, a final choice letter). It never
guesses: no "last number in the text"; no answer found is None. `normalize` gives a
cheap canonical string, `equivalent` decides whether two answers are the same answer
(string, exact numeric, then Math-Verify with a bounded time), `group_answers` turns
one problem's answers into equivalence classes. The vote itself is `dp.votes`.

Not here: prompts, token accounting, or which traces get to vote.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from dp.seeds import derive
from dp.types import AnswerKind

log = logging.getLogger(__name__)

# Math-Verify calls that raised or timed out (counted, never raised): "parse", "verify".
FAILURES: Counter[str] = Counter()

DEFAULT_TIMEOUT_S = 2  # seconds per Math-Verify step (parse, compare)

# ---------------------------------------------------------------- extraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed\s+([^\s${}]+)")
# The tails are captured in a lookahead so that every occurrence on a line is found.
_ANSWER_IS = re.compile(r"\banswer\s+is\b\s*:?[ \t]*(?=([^\n]*))", re.IGNORECASE)
_HASHES = re.compile(r"####[ \t]*(?=([^\n]*))")
_A_LINE = re.compile(r"^\s*(?:A|Answer|Final Answer)\s*:\s*(.+?)\s*$", re.IGNORECASE)
# A choice letter standing alone: "(B)", "B", "B.", "B)", "**B**", "answer: C", "Option D".
_CHOICE_ALONE = re.compile(r"^[\s*(\[{]*([A-J])[\s*)\]}.:]*$")
_CHOICE_ALONE_ANY_CASE = re.compile(_CHOICE_ALONE.pattern, re.IGNORECASE)
_CHOICE_TAGGED = re.compile(
    r"(?i:answer|option|choice)\s*(?:is)?\s*:?\s*\**\s*\(?([A-J])\)?(?![A-Za-z])"
)
_CHOICE_PAREN = re.compile(r"\(([A-J])\)")


def _boxed_contents(text: str) -> list[str]:
    """Contents of every complete `\\boxed{...}` / `\\fbox{...}`, in order (nested braces kept)."""
    found: list[tuple[int, str]] = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\":
                i += 2  # skip escaped characters such as \{ and \}
                continue
            depth += (c == "{") - (c == "}")
            i += 1
        if depth == 0:
            found.append((m.start(), text[m.end() : i - 1]))
    found += [(m.start(), m.group(1)) for m in _BOXED_BARE.finditer(text)]
    return [s for _, s in sorted(found)]


def _clean_tail(s: str) -> str:
    """Trim a free-text answer: cut at the end of the sentence, strip `$`, `*`, trailing periods."""
    s = re.split(r"\.\s", s, maxsplit=1)[0]
    s = s.strip().strip("*").strip()
    s = s.strip("$").strip()
    return s.rstrip(".").rstrip().strip("$").strip()


def _choice_letter(s: str, any_case: bool = False) -> str | None:
    """The choice letter that `s` names ("(B)", "B.", "answer: B", "... (B) ..."), or None."""
    s = _unwrap_text(s).replace("$", "")
    m = (_CHOICE_ALONE_ANY_CASE if any_case else _CHOICE_ALONE).match(s)
    if m:
        return m.group(1).upper()
    for pattern in (_CHOICE_TAGGED, _CHOICE_PAREN):
        hits = pattern.findall(s)
        if hits:
            return hits[-1]
    return None


def _last_nonempty_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line
    return ""


def _find_answer(text: str) -> str | None:
    boxed = [b.strip() for b in _boxed_contents(text) if b.strip()]
    if boxed:
        return boxed[-1]
    for pattern in (_ANSWER_IS, _HASHES):
        hits = [_clean_tail(m.group(1)) for m in pattern.finditer(text)]
        if hits and hits[-1]:
            return hits[-1]
    m = _A_LINE.match(_last_nonempty_line(text))
    if m and _clean_tail(m.group(1)):
        return _clean_tail(m.group(1))
    return None


def extract_answer(text: str, kind: AnswerKind = AnswerKind.EXPRESSION) -> str | None:
    """The final answer stated in `text`, or None when it states none. Never raises on a str.

    Order: last complete `\\boxed{}`/`\\fbox{}`; last "(final) answer is X"; last "#### X";
    a final "A: X" line; for CHOICE, a choice letter on the last non-empty line. For CHOICE
    the result is reduced to its letter when it names one (`\\boxed{\\text{(B)}}` -> "B").
    """
    try:
        found = _find_answer(text)
        if kind != AnswerKind.CHOICE:
            return found
        if found is not None:
            return _choice_letter(found) or found
        return _choice_letter(_last_nonempty_line(text)[-200:])
    except Exception:  # defensive: extraction must never break a bulk import
        log.debug("extract_answer failed", exc_info=True)
        return None


# ---------------------------------------------------------------- normalisation

_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_ASSIGN = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=\S)")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°")


def _unwrap_text(s: str) -> str:
    return _TEXT_WRAP.sub(r"\1", s)


def normalize(answer: str, kind: AnswerKind = AnswerKind.EXPRESSION) -> str:
    """A cheap canonical string for `answer`; equal strings are always equivalent answers."""
    s = _unwrap_text(answer.strip())
    if kind == AnswerKind.STRING:
        s = " ".join(s.replace("$", "").split()).rstrip(".").strip()
        while len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":  # "yajo" and 'yajo' are yajo
            s = s[1:-1].strip()
        return s.casefold()
    if kind == AnswerKind.CHOICE:
        return _choice_letter(s, any_case=True) or " ".join(s.split()).casefold()
    s = s.replace("$", "").replace("\\left", "").replace("\\right", "")
    for space in ("\\!", "\\,", "\\;", "\\:", "\\ "):
        s = s.replace(space, "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    s = _DEGREES.sub("", s).strip().rstrip(".").strip()
    if s.count("=") == 1:
        s = _ASSIGN.sub("", s)
    s = "".join(s.split())
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return s


# ---------------------------------------------------------------- equivalence

_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d{1,3})?$", re.IGNORECASE)
_FRAC = re.compile(r"^([+-]?)\\frac(?:\{([+-]?\d+)\}|(\d))(?:\{([+-]?\d+)\}|(\d))$")
_SLASH = re.compile(r"^([+-]?\d+)/([+-]?\d+)$")


def _as_number(s: str) -> Fraction | None:
    """A plain number ("12", "-0.5", "1e3", "3/4", "\\frac{3}{4}", "\\frac34") as a Fraction."""
    try:
        if _NUMBER.match(s):
            return Fraction(s)
        m = _SLASH.match(s)
        if m:
            return Fraction(int(m.group(1)), int(m.group(2)))
        m = _FRAC.match(s)
        if m:
            value = Fraction(int(m.group(2) or m.group(3)), int(m.group(4) or m.group(5)))
            return -value if m.group(1) == "-" else value
    except (ValueError, ZeroDivisionError, OverflowError):
        pass
    return None


def _numbers_equal(x: Fraction, y: Fraction) -> bool:
    if x == y:
        return True
    try:
        return math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=0.0)
    except OverflowError:
        return False


def _mv_timeout(timeout_s: int) -> int | None:
    """Math-Verify times out with signal.alarm, which works only in the main thread."""
    return timeout_s if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=65536)
def _mv_parse(s: str, timeout_s: int | None) -> tuple:
    from math_verify import parse  # imported here: sympy takes ~0.5 s to load
    from math_verify.errors import TimeoutException

    try:
        return tuple(parse(f"${s}$", parsing_timeout=timeout_s))
    except (Exception, TimeoutException):
        FAILURES["parse"] += 1
        log.debug("math-verify parse failed on %r", s, exc_info=True)
        return ()


@functools.lru_cache(maxsize=65536)
def _fingerprint(s: str, timeout_s: int | None) -> complex | None:
    """The value of `s`'s parsed expression at fixed symbol values, or None (not an Expr).

    A cheap filter in front of Math-Verify's `verify` (~6 ms a pair): two answers whose
    values clearly differ are not equivalent, so `verify` only sees plausible pairs.
    """
    import sympy
    from math_verify.errors import TimeoutException
    from math_verify.utils import timeout

    parsed = _mv_parse(s, timeout_s)
    expr = parsed[0] if parsed else None
    if not isinstance(expr, sympy.Expr):  # relations, sets, tuples, matrices: no filter
        return None
    try:
        values = {x: sympy.Rational(derive("symbol", x.name) % 997 + 3, 1009)
                  for x in expr.free_symbols}
        v = timeout(timeout_seconds=timeout_s)(lambda: complex(expr.evalf(30, subs=values)))()
    except (Exception, TimeoutException):
        return None
    return v if math.isfinite(v.real) and math.isfinite(v.imag) else None


def _clearly_differ(a: str, b: str, timeout_s: int | None) -> bool:
    u, v = _fingerprint(a, timeout_s), _fingerprint(b, timeout_s)
    if u is None or v is None:
        return False
    return abs(u - v) > 1e-4 * max(abs(u), abs(v)) + 1e-6


def _math_verify(a: str, b: str, timeout_s: int) -> bool:
    from math_verify import verify
    from math_verify.errors import TimeoutException

    t = _mv_timeout(timeout_s)
    gold, pred = _mv_parse(a, t), _mv_parse(b, t)
    if not gold or not pred or _clearly_differ(a, b, t):
        return False
    try:
        return bool(verify(list(gold), list(pred), timeout_seconds=t))
    except (Exception, TimeoutException):
        FAILURES["verify"] += 1
        log.debug("math-verify verify failed on %r vs %r", a, b, exc_info=True)
        return False


@functools.lru_cache(maxsize=262144)
def _equivalent_normalized(a: str, b: str, kind: AnswerKind, timeout_s: int) -> bool:
    if a == b:
        return True
    if not a or not b or kind in (AnswerKind.CHOICE, AnswerKind.STRING):
        return False
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return _numbers_equal(x, y)  # two plain numbers: decided here, exactly
    return _math_verify(a, b, timeout_s)


def equivalent(
    a: str, b: str, kind: AnswerKind = AnswerKind.EXPRESSION, timeout_s: int = DEFAULT_TIMEOUT_S
) -> bool:
    """Whether answers `a` and `b` are the same answer. `a` is the reference (gold) side.

    CHOICE and STRING: equal normalised strings. NUMBER and EXPRESSION: equal normalised
    strings, or two plain numbers equal within 1e-9 relative, or Math-Verify says so
    within `timeout_s` seconds per step. A Math-Verify failure counts as not equivalent
    (and is counted in `FAILURES`).
    """
    return _equivalent_normalized(normalize(a, kind), normalize(b, kind), kind, timeout_s)


def group_answers(answers: Sequence[str | None], kind: AnswerKind) -> np.ndarray:
    """(n,) int32 answer classes of one problem's answers: 0, 1, ... by first appearance.

    None (or an answer that normalises to nothing) is -1. Each distinct normalised string
    is compared once, with the first member of each existing class.
    """
    classes = np.full(len(answers), -1, dtype=np.int32)
    class_of: dict[str, int] = {}
    representatives: list[str] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        s = normalize(answer, kind)
        if not s:
            continue
        if s not in class_of:
            match = next(
                (c for c, rep in enumerate(representatives)
                 if _equivalent_normalized(rep, s, kind, DEFAULT_TIMEOUT_S)),
                None,
            )
            if match is None:
                match = len(representatives)
                representatives.append(s)
            class_of[s] = match
        classes[i] = class_of[s]
    return classes


def is_correct(answer: str | None, gold: str | None, kind: AnswerKind) -> bool | None:
    """Whether `answer` matches `gold`: None without a gold answer, False without an answer."""
    if gold is None:
        return None
    if answer is None:
        return False
    return equivalent(gold, answer, kind)
