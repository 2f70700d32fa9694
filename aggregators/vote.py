"""Vote aggregators: no model needed, only the experts' extracted choices.

``majority``  one vote per expert; the tie rule is in ``majority``'s docstring. This is the
              project's one majority vote: the pipeline's fallback and every benchmark use it.
``weighted``  each vote weighs the log-odds of the expert's accuracy on the question's skill,
              log(p / (1 - p)) with p clipped to [clip, 1 - clip]; with ``n_options`` given the
              weight is log((n_options - 1) p / (1 - p)), the multi-class form (a vote weighs
              more than nothing only when the expert beats chance, 1 / n_options).

Answers are counted by the judge (``common.answers.Judge``): "7425", "7425.00" and "$7,425"
are one answer to a number judge, "C" and the text of option C one to a letter judge. Blank
and unreadable answers count in the denominator of a vote share but vote for nothing. The
winner is stated as its most competent supporter wrote it. Competence comes from each
answer's ``competence`` field, or from the ``competence`` argument (a mapping or a function of
the expert name), which overrides it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from aggregators.result import TEXT_JUDGE, AggregationResult, Competence, ExpertAnswer, resolve_competence
from common.answers import Judge, plurality
from common.errors import BadInput
from common.names import unknown_name


def _check(answers: Sequence[ExpertAnswer]) -> list[ExpertAnswer]:
    answers = list(answers)
    if not answers:
        raise BadInput("a vote needs at least one expert answer; got none")
    names = [a.expert for a in answers]
    repeated = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if repeated:
        raise BadInput(f"each expert may vote once; repeated: {', '.join(repeated)}")
    return answers


def _keys(answers: Sequence[ExpertAnswer], judge: Judge | None) -> list[str | None]:
    """Each answer's vote: the judge's key of its choice (None: it abstains)."""
    return (judge or TEXT_JUDGE).keys([a.choice for a in answers])


def _supporters(answers: Sequence[ExpertAnswer], keys: Sequence[str | None]) -> dict[str, list[ExpertAnswer]]:
    """Each key's answers, in the answers' order (abstentions have none)."""
    out: dict[str, list[ExpertAnswer]] = {}
    for answer, key in zip(answers, keys, strict=True):
        if key is not None:
            out.setdefault(key, []).append(answer)
    return out


def _voice(backers: Sequence[ExpertAnswer]) -> ExpertAnswer | None:
    """The most competent expert among ``backers`` (the first one on a tie)."""
    if not backers:
        return None
    return max(backers, key=lambda a: a.competence if a.competence is not None else -1.0)


def _result(
    method: str,
    answers: list[ExpertAnswer],
    keys: Sequence[str | None],
    key: str | None,
    confidence: float,
    scores: dict[str, float],
    started: float,
) -> AggregationResult:
    supporters = _supporters(answers, keys)
    backers = supporters.get(key, []) if key is not None else []
    voice = _voice(backers)
    written = {k: _voice(supporters.get(k, [])) for k in scores}  # each answer as its voice wrote it
    scores = {(w.choice or k) if (w := written[k]) is not None else k: v for k, v in scores.items()}
    return AggregationResult(
        method=method,
        text=voice.text if voice is not None else "",
        choice=voice.choice if voice is not None else None,
        agreed_with=tuple(a.expert for a in backers),
        inputs=tuple(a.expert for a in answers),
        confidence=min(1.0, max(0.0, confidence)),
        scores=scores,
        seconds=time.perf_counter() - started,
    )


def majority(
    answers: Sequence[ExpertAnswer], *, competence: Competence | None = None, judge: Judge | None = None
) -> AggregationResult:
    """One vote per expert, answers counted by ``judge``; confidence is the winner's share of all answers.

    The tie rule, applied in order among the choices with the most votes:
      1. the choice whose supporters have the larger summed competence wins (an expert
         without a competence counts 0), so with competence given, two weak experts can
         still lose a 2-2 tie to two strong ones;
      2. then the smaller key ("A" before "B"), so the result never depends on the order of
         the answers.
    Blank and unreadable answers count in the confidence's denominator but vote for nothing.
    ``scores`` counts the votes of each answer (as its most competent supporter wrote it).
    """
    started = time.perf_counter()
    answers = resolve_competence(_check(answers), competence)
    keys = _keys(answers, judge)
    won = plurality(keys, [a.competence or 0.0 for a in answers])
    counts: dict[str, float] = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if won is None:
        return _result("majority", answers, keys, None, 0.0, {}, started)
    return _result("majority", answers, keys, won, counts[won] / len(answers), counts, started)


def log_odds_weight(p: float, *, n_options: int | None = None, clip: float = 0.01) -> float:
    """log(p / (1 - p)), plus log(n_options - 1) when the number of options is given."""
    if not 0.0 < clip < 0.5:
        raise BadInput(f"clip must be in (0, 0.5), got {clip}")
    if n_options is not None and n_options < 2:
        raise BadInput(f"n_options must be at least 2, got {n_options}")
    p = min(1.0 - clip, max(clip, p))
    weight = math.log(p / (1.0 - p))
    return weight + (math.log(n_options - 1) if n_options is not None else 0.0)


def weighted(
    answers: Sequence[ExpertAnswer],
    *,
    competence: Competence | None = None,
    n_options: int | None = None,
    clip: float = 0.01,
    judge: Judge | None = None,
) -> AggregationResult:
    """Competence-weighted vote, answers counted by ``judge``. Every expert needs a competence
    (BadInput names those without).

    The score of a choice is the sum of its voters' log-odds weights; the winner is the
    highest-scoring choice someone voted for (ties: more voters, then the smaller string).
    Confidence is exp(score) of the winner over the sum of exp(score) of every option
    (options nobody chose score 0 and count when ``n_options`` is given).
    """
    started = time.perf_counter()
    answers = resolve_competence(_check(answers), competence)
    missing = sorted(a.expert for a in answers if a.competence is None)
    if missing:
        raise BadInput(f"weighted vote needs the competence of every expert; missing: {', '.join(missing)}")
    keys = _keys(answers, judge)
    scores: dict[str, float] = {}
    voters: dict[str, int] = {}
    for answer, key in zip(answers, keys):
        if key is None:
            continue
        weight = log_odds_weight(answer.competence or 0.0, n_options=n_options, clip=clip)
        scores[key] = scores.get(key, 0.0) + weight
        voters[key] = voters.get(key, 0) + 1
    if not scores:
        return _result("weighted", answers, keys, None, 0.0, {}, started)
    choice = max(sorted(scores), key=lambda c: (round(scores[c], 12), voters[c]))
    unvoted = max(0, (n_options or 0) - len(scores))
    top = max(max(scores.values()), 0.0 if unvoted else -math.inf)
    mass = sum(math.exp(s - top) for s in scores.values()) + unvoted * math.exp(-top)
    confidence = math.exp(scores[choice] - top) / mass
    return _result("weighted", answers, keys, choice, confidence, scores, started)


VOTERS: dict[str, Callable[..., AggregationResult]] = {"majority": majority, "weighted": weighted}


def get_voter(name: str) -> Callable[..., AggregationResult]:
    """The vote aggregator called ``name``; an unknown name suggests the closest."""
    try:
        return VOTERS[name]
    except KeyError:
        raise unknown_name("vote aggregator", name, VOTERS) from None
