"""Prompts: a problem -> the chat-templated text the model continues.

One template per answer kind, rendered through the model's own chat template,
with a one-shot worked example that makes small models (SmolLM2-135M) write their
answer inside \\boxed{} (see shared/docs/offline.md: without it they rarely box).
`prompt_template` gives the same text with a literal `{question}` placeholder so a
run can record exactly what was asked. Substitute with `str.replace`, never
`str.format`: the text contains `\\boxed{}`. Nothing here tokenizes or generates.
"""

from __future__ import annotations

from dp.types import AnswerKind, Problem

PROMPT_TEMPLATE_ID = "oneshot-boxed-v1"
PLACEHOLDER = "{question}"

MATH_INSTRUCTION = "Think step by step and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = (
    "Think step by step and put the letter of your final answer (A, B, C, ...) within \\boxed{}."
)

# (user question, assistant answer) of the worked example, per instruction style
_MATH_SHOT = ("What is 5 + 6?", "5 + 6 = 11. The final answer is \\boxed{11}.")
_CHOICE_SHOT = (
    "Which number is even?\nA) 3\nB) 8\nC) 5\nD) 7",
    "3, 5 and 7 are odd; 8 is even. The final answer is \\boxed{B}.",
)


def _is_choice(kind: AnswerKind | str) -> bool:
    return AnswerKind(kind) is AnswerKind.CHOICE


def question_text(problem: Problem) -> str:
    """The question as shown to the model; choices (if any) listed as 'A) ...' lines."""
    lines = [problem.question.strip()]
    lines += [f"{chr(ord('A') + i)}) {c}" for i, c in enumerate(problem.choices)]
    return "\n".join(lines)


def _messages(kind: AnswerKind | str, question: str) -> list[dict[str, str]]:
    choice = _is_choice(kind)
    instruction = CHOICE_INSTRUCTION if choice else MATH_INSTRUCTION
    shot_q, shot_a = _CHOICE_SHOT if choice else _MATH_SHOT
    sep = "\n" if choice else " "  # choice lists end in a line; arithmetic stays on one
    return [
        {"role": "user", "content": f"{shot_q}{sep}{instruction}"},
        {"role": "assistant", "content": shot_a},
        {"role": "user", "content": f"{question}{sep}{instruction}"},
    ]


def _render(tokenizer, messages: list[dict[str, str]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # a base model without a chat template: plain turns
    turns = [f"{'Q' if m['role'] == 'user' else 'A'}: {m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nA:"


def prompt_template(tokenizer, kind: AnswerKind | str = AnswerKind.EXPRESSION) -> str:
    """The full prompt text for answer kind `kind`, with `{question}` where the question goes."""
    return _render(tokenizer, _messages(kind, PLACEHOLDER))


def build_prompt(tokenizer, problem: Problem) -> str:
    """The prompt text for `problem` (chat template applied, generation prompt appended)."""
    return _render(tokenizer, _messages(problem.kind, question_text(problem)))
