"""Prompts of our own wording: per answer kind, few-shot, and user templates with placeholders."""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence

from common.errors import ConfigError
from common.query import Query
from eval.answers import ANSWER_FORMATS, AnswerKind
from eval.question import LETTERS, Question, format_options

LETTER_FORMAT = ANSWER_FORMATS[AnswerKind.LETTER]


def choice_prompt(question: Query) -> str:
    letters = LETTERS[: len(question.options)]
    return (
        f"{question.text.strip()}\n\nOptions:\n{format_options(question.options)}\n\n"
        f'Think step by step, then finish with the line "The answer is (X)" where X is one of '
        f"{', '.join(letters)}."
    )


def integer_prompt(question: Question) -> str:
    return (
        f"{question.text.strip()}\n\nReason step by step. The answer is an integer from 0 to 999; "
        f"put it in \\boxed{{}} at the end."
    )


def few_shot_prompt(question: Question) -> str:
    """The question's preamble (its worked examples), then the question as ``choice_prompt`` asks it."""
    if not question.preamble:
        return choice_prompt(question)
    return f"{question.preamble}\n\nQuestion: {choice_prompt(question)}"


def worked_example(question: Question, reasoning: str) -> str:
    """One few-shot example: the question, its options and a worked answer."""
    reasoning = reasoning.strip()
    if reasoning.startswith("A:"):
        reasoning = reasoning[2:].strip()
    return f"Question: {question.text.strip()}\nOptions:\n{format_options(question.options)}\nAnswer: {reasoning}"


def few_shot_preamble(topic: str, examples: Sequence[str]) -> str:
    return (
        f"Here are worked examples of multiple-choice questions about {topic}, each answered step by step.\n\n"
        + "\n\n".join(examples)
        + "\n\nAnswer the next question the same way."
    )


# --- templates ------------------------------------------------------------------------------

PLACEHOLDERS = {
    "question": "the question's text",
    "options": "the options, one per line: (A) ...",
    "letters": "the option letters: A, B, C, D",
    "category": "the item's category",
}

DEFAULT_TEMPLATES: dict[AnswerKind, str] = {
    AnswerKind.LETTER: (
        "{question}\n\nOptions:\n{options}\n\n"
        'Think step by step, then finish with the line "The answer is (X)" where X is one of {letters}.'
    ),
    AnswerKind.INTEGER: "{question}\n\nReason step by step, then put the final integer answer in \\boxed{{}}.",
    AnswerKind.NUMBER: '{question}\n\nReason step by step, then finish with the line "The answer is N" (N a number).',
    AnswerKind.MATH: "{question}\n\nReason step by step, then put the final answer in \\boxed{{}}.",
    AnswerKind.TEXT: '{question}\n\nThink it through, then finish with the line "The answer is X" (X short).',
}


def template_fields(template: str) -> list[str]:
    """The placeholder names of a ``str.format`` template; raises ValueError on a malformed one
    or on anything but a plain name (no ``{0}``, ``{x.attr}``, ``{x[0]}``, ``{x!r}``, ``{x:>9}``)."""
    names = []
    for _text, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"placeholder {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
                " is not a plain name"
            )
        names.append(name)
    return names


def check_template(template: str, where: str, *, has_options: bool) -> None:
    """ConfigError naming ``where`` when the template is malformed, uses an unknown placeholder,
    lacks ``{question}``, or shows options an item does not have."""
    try:
        names = template_fields(template)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} (write literal braces as {{{{ and }}}})") from exc
    for name in names:
        if name not in PLACEHOLDERS:
            raise ConfigError(f"{where}: unknown placeholder {{{name}}}; known: {', '.join(PLACEHOLDERS)}")
    if "question" not in names:
        raise ConfigError(f"{where}: the template has no {{question}}")
    if not has_options and ({"options", "letters"} & set(names)):
        raise ConfigError(f"{where}: {{options}} and {{letters}} need an options field")


def template_prompt(template: str) -> Callable[[Question], str]:
    """A prompt function filling a checked template from each item."""

    def prompt(question: Question) -> str:
        return template.format(
            question=question.text.strip(),
            options=format_options(question.options),
            letters=", ".join(LETTERS[: len(question.options)]),
            category=question.category or "",
        )

    return prompt
