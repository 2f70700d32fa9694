"""The data aggregators take and give: expert answers in, one aggregation result out."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from common.answers import Judge
from common.errors import BadInput
from common.requests import Generation

Extract = Callable[[str], "str | None"]
"""Reads the benchmark's answer (a letter, an integer) out of a text; None when there is none."""

Competence = Mapping[str, float] | Callable[[str], float | None]
"""Accuracy of each expert on this question's skill: a mapping or a function of the expert name."""


class ExpertAnswer(BaseModel):
    """One expert's answer to one question: what aggregators read and what the trace shows.

    A failed expert call is an answer with ``error`` set and no text; votes and synthesis
    leave such answers out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str = Field(..., min_length=1, description="Name of the expert that wrote it.")
    text: str = Field("", description="The expert's full output (reasoning and answer).")
    choice: str | None = Field(None, description="The answer extracted from the text; None if none.")
    competence: float | None = Field(
        None, ge=0.0, le=1.0, description="The expert's accuracy on this question's skill, if known."
    )
    score: float | None = Field(None, description="The router's score for this expert on the question.")
    tokens_in: int = Field(0, ge=0)
    tokens_out: int = Field(0, ge=0)
    seconds: float = Field(0.0, ge=0.0)
    error: str | None = Field(None, description="Why the expert gave no answer (failed or not run).")
    error_type: str | None = Field(
        None, description="The class in the error tree of what failed it (e.g. 'ReplayMiss'), when known."
    )
    logprob: float | None = Field(
        None, le=0.0, description="Mean log-probability per generated token, where the engine gave one."
    )

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_generation(
        cls,
        generation: Generation,
        extract: Extract | None = None,
        competence: float | None = None,
        *,
        score: float | None = None,
    ) -> ExpertAnswer:
        """Wrap a generation, failed or not. ``choice`` is the answer its source extracted (a
        recording's pred) when it has one, else ``extract`` run once on a finished one."""
        ok = generation.error is None
        choice = generation.stated(extract)
        return cls(
            expert=generation.model,
            text=generation.text if ok else "",
            choice=choice,
            competence=competence,
            score=score,
            tokens_in=generation.tokens_in,
            tokens_out=generation.tokens_out,
            seconds=generation.seconds,
            error=generation.error,
            error_type=generation.error_type if not ok else None,
            logprob=generation.logprob if ok else None,
        )


class AggregationResult(BaseModel):
    """What an aggregator made of k expert answers. Field names are a stable contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(..., description="Aggregator used: 'majority', 'weighted', 'synthesis:<model>'.")
    text: str = Field(..., description="The final answer text.")
    choice: str | None = Field(..., description="The answer extracted from it; None if unreadable.")
    agreed_with: tuple[str, ...] = Field((), description="Experts whose choice equals the final choice.")
    inputs: tuple[str, ...] = Field((), description="Experts whose answers were used.")
    left_out: tuple[str, ...] = Field((), description="Inputs not used, each 'name: reason'.")
    confidence: float = Field(
        ...,
        ge=0.0,
        le=1.0,
        description=(
            "majority: the winner's vote share; weighted: the winner's posterior share, "
            "exp(score) normalised over the options; synthesis: the share of used experts "
            "whose choice equals the aggregator's."
        ),
    )
    scores: dict[str, float] = Field(default_factory=dict, description="Votes: score per choice.")
    prompt: str = Field("", description="What the aggregator model was asked (empty for votes).")
    fallback: str | None = Field(
        None, description="Why a vote stands in for the aggregator model (it failed or did not run)."
    )
    skipped: str | None = Field(
        None, description="Why the aggregator model was not called: the experts agreed (method 'consensus')."
    )
    tokens_in: int = Field(0, ge=0, description="Tokens the aggregator read (0 for votes).")
    tokens_out: int = Field(0, ge=0, description="Tokens the aggregator wrote (0 for votes).")
    seconds: float = Field(0.0, ge=0.0, description="Time the aggregation took.")


def resolve_competence(answers: Iterable[ExpertAnswer], competence: Competence | None) -> list[ExpertAnswer]:
    """The answers with ``competence`` (if given) written into each; it overrides their own (an
    answer that already holds that very value is kept as it is, not copied)."""
    answers = list(answers)
    if competence is None:
        return answers
    read = competence.get if isinstance(competence, Mapping) else competence
    out = []
    for answer in answers:
        value = read(answer.expert)
        if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise BadInput(f"competence of expert {answer.expert!r} must be in [0, 1], got {value!r}")
        value = None if value is None else float(value)
        same = answer.competence == value and type(answer.competence) is type(value)
        out.append(answer if same else answer.model_copy(update={"competence": value}))
    return out


TEXT_JUDGE = Judge()
"""The judge when a caller names none: free text, numbers compared as numbers."""


def agreement(
    answers: Iterable[ExpertAnswer], choice: str | None, judge: Judge | None = None
) -> tuple[tuple[str, ...], float]:
    """The experts whose answer is the same as ``choice`` by ``judge`` and their share of all
    ``answers`` (a blank or unreadable ``choice`` agrees with nobody)."""
    answers = list(answers)
    keys = (judge or TEXT_JUDGE).keys([choice, *(a.choice for a in answers)])
    agreed = tuple(a.expert for a, key in zip(answers, keys[1:]) if keys[0] is not None and key == keys[0])
    return agreed, (len(agreed) / len(answers) if answers else 0.0)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); (0, 1) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
