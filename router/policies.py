"""Expert selection: the named policies, in one registry, and the settings they share.

Every policy sees the profile, one query (``Asking``: its skill weights, every expert's
expected accuracy and Symbolic-MoE score on them, made for the router's whole batch at once,
and its own seeded random generator) and the selection settings, and returns the chosen
experts (best first) with their scores.

- ``symbolic``: Symbolic-MoE. Expert score = global competence x sum over the query's skills
  of weight x local score (+1 right, -1 wrong); k experts drawn without replacement with
  probability proportional to the positive part of the score (competence when none is
  positive; experts with no positive score fill remaining places by score).
- ``topk``: the k best by the same score, deterministically.
- ``category``: Composition of Experts. The top named skill (topics left aside), if its
  weight reaches ``threshold``, picks the k experts most accurate on it; below, the k best overall.
- ``single-best``: the best expert overall. ``random``: k at random. ``all``: every expert.
- ``adaptive``: ours. Experts ranked by expected accuracy on the query (skill-weighted
  smoothed accuracies); the first j of them are used, j chosen to maximise the estimated
  accuracy of their majority vote (router.vote_model: experts share a question's difficulty)
  minus ``cost`` per expert. A clear specialist stays alone; comparable experts are pooled.
- ``top-p``: dynamic routing ("Harder Tasks Need More Experts"): experts by expected accuracy,
  each weighted by a softmax of it (``temperature``), added until their weight reaches ``top_p``.
- ``routellm``: the two-model baseline in the style of RouteLLM: the costliest expert when its
  predicted win over the cheapest (right where the cheap one is wrong) reaches ``win_threshold``,
  else the cheapest.
- ``cascade``: cheap experts first, more on escalation (``router.cascade``: the ladder is in the
  decision's ``later`` rungs; whether to climb it is decided after each round).

Costs come from the pool (``ProfileLookup.cost``; 1 per call when none are declared).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from common.names import unknown_name
from router.decision import ExpertChoice, Rung
from router.lookup import ProfileLookup, lookup_of
from router.skill_rows import SkillRows, expected_accuracies, symbolic_score_rows
from router.vote_model import vote_accuracies
from skills.profile import Profile


class Selection(BaseModel):
    """Settings of the selection layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(3, ge=1, le=64, description="Experts per query (policies with a fixed k).")
    threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="category: top-skill weight below which the best overall expert answers.",
    )
    cost: float = Field(
        0.005,
        ge=0.0,
        le=1.0,
        description="adaptive: estimated accuracy an extra expert must add (default: tuned by routing.py).",
    )
    max_k: int = Field(6, ge=1, le=64, description="adaptive: most experts per query.")
    n_options: int = Field(10, ge=2, le=26, description="adaptive: answer options a wrong vote spreads over.")
    spread: float = Field(
        5.0,
        ge=0.0,
        le=50.0,
        description="adaptive: spread of shared question difficulty (logit scale); 0 = independent experts.",
    )
    top_p: float = Field(0.7, gt=0.0, le=1.0, description="top-p: routing weight the chosen experts must reach.")
    temperature: float = Field(
        0.05, gt=0.0, le=10.0, description="top-p: routing weight = softmax of expected accuracy / temperature."
    )
    win_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="routellm: predicted win probability from which the strong model answers."
    )
    cascade_first: int = Field(2, ge=1, le=64, description="cascade: experts of the first rung.")
    cascade_gain: float = Field(
        0.1, ge=-1.0, le=1.0, description="cascade: estimated accuracy the next rung must add to be asked."
    )


class Chosen(NamedTuple):
    """What a policy picked: the experts asked up front (best first), whether a low-confidence
    fallback chose them, and a cascade's later rungs."""

    experts: list[ExpertChoice]
    fallback: bool = False
    later: tuple[Rung, ...] = ()


class Asking:
    """One query as a policy reads it: its (normalised) skill weights, every expert's expected
    accuracy and Symbolic-MoE score on them (read from its batch's matrices), and a random
    generator seeded by ``seed``."""

    __slots__ = ("_rng", "index", "lookup", "rows", "seed")

    def __init__(self, rows: SkillRows, index: int, lookup: ProfileLookup, seed: str) -> None:
        self.rows, self.index, self.lookup, self.seed = rows, index, lookup, seed
        self._rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        """``random.Random(seed)``, made on first use: most policies draw nothing, and seeding
        costs more than the rest of routing a query."""
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng

    @property
    def skills(self) -> dict[str, float]:
        return self.rows.rows[self.index]

    @property
    def categories(self) -> dict[str, float]:
        """The named skills renormalised (``category_weights``)."""
        return self.rows.categories[self.index]

    @property
    def expected(self) -> dict[str, float]:
        """Every expert's expected accuracy (``expected_accuracy``)."""
        return self.rows.expected(self.lookup)[self.index]

    @property
    def symbolic(self) -> dict[str, float]:
        """Every expert's Symbolic-MoE score (``symbolic_scores``)."""
        return self.rows.symbolic(self.lookup)[self.index]


Policy = Callable[[ProfileLookup, Asking, Selection], Chosen]
"""A policy reads the profile through a ``ProfileLookup`` (the router keeps one per profile)."""


def symbolic_scores(profile: Profile | ProfileLookup, skills: Mapping[str, float]) -> dict[str, float]:
    """Symbolic-MoE score of every expert for a query with these skill weights."""
    lookup = lookup_of(profile)
    return dict(zip(lookup.experts, symbolic_score_rows(lookup, [skills])[0].tolist()))


def expected_accuracy(profile: Profile | ProfileLookup, skills: Mapping[str, float]) -> dict[str, float]:
    """Each expert's smoothed accuracy, averaged over the query's skills by weight (overall when none)."""
    lookup = lookup_of(profile)
    return dict(zip(lookup.experts, expected_accuracies(lookup, [skills])[0].tolist()))


def _ranked(scores: Mapping[str, float], profile: ProfileLookup) -> list[str]:
    """Best first; experts without evidence after every measured one, whatever their score
    (Symbolic-MoE's score is 0 for them, above any measured expert with a negative score)."""
    unmeasured, weaker = profile.rank_parts()
    if not scores.keys() <= unmeasured.keys():  # an expert the profile does not list: asked one by one
        return sorted(scores, key=lambda e: (not profile.measured(e), -scores[e], -profile.competence(e), e))
    return sorted(scores, key=lambda e: (unmeasured[e], -scores[e], weaker[e], e))


def _choices(experts: list[str], scores: Mapping[str, float]) -> list[ExpertChoice]:
    return [ExpertChoice(expert=e, score=float(scores[e])) for e in experts]


def _symbolic(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    scores = query.symbolic
    weights = {e: max(s, 0.0) for e, s in scores.items()}
    if not any(weights.values()):
        weights = {e: profile.competence(e) for e in profile.experts}
    k = min(sel.k, len(profile.experts))
    pool = [e for e in profile.experts if weights[e] > 0]
    picked: list[str] = []
    while pool and len(picked) < k:
        total = sum(weights[e] for e in pool)
        point, upto = query.rng.random() * total, 0.0
        for expert in pool:
            upto += weights[expert]
            if point < upto:
                break
        picked.append(expert)
        pool.remove(expert)
    ranked = _ranked(scores, profile)
    picked += [e for e in ranked if e not in picked][: k - len(picked)]
    return Chosen(_choices(sorted(picked, key=ranked.index), scores), False)


def _topk(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    scores = query.symbolic
    return Chosen(_choices(_ranked(scores, profile)[: sel.k], scores), False)


def _category(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    categories = query.categories
    top = max(categories, key=categories.__getitem__) if categories else None
    if top is not None and categories[top] >= sel.threshold:
        scores = {e: profile.accuracy(e, top) for e in profile.experts}
        return Chosen(_choices(_ranked(scores, profile)[: sel.k], scores), False)
    scores = {e: profile.accuracy(e) for e in profile.experts}
    return Chosen(_choices(_ranked(scores, profile)[: sel.k], scores), True)


def _single_best(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    scores = {e: profile.accuracy(e) for e in profile.experts}
    return Chosen(_choices(_ranked(scores, profile)[:1], scores), False)


def _random(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    picked = query.rng.sample(profile.experts, min(sel.k, len(profile.experts)))
    return Chosen(_choices(picked, {e: 0.0 for e in picked}), False)


def _all(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    scores = query.expected
    return Chosen(_choices(_ranked(scores, profile), scores), False)


def _adaptive(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    scores = query.expected
    ranked = _ranked(scores, profile)[: sel.max_k]
    best_j, best_value = 1, float("-inf")
    votes = vote_accuracies([scores[e] for e in ranked], sel.n_options, sel.spread)  # of the first j, j = 1...
    for j, vote in enumerate(votes, 1):
        value = vote - sel.cost * j
        if value > best_value + 1e-12:
            best_j, best_value = j, value
    return Chosen(_choices(ranked[:best_j], scores), False)


def _top_p(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    scores = query.expected
    ranked = _ranked(scores, profile)
    top = max(scores.values())
    raw = {e: math.exp((scores[e] - top) / sel.temperature) for e in ranked}
    total = sum(raw.values())
    picked, reached = [], 0.0
    for expert in ranked:
        picked.append(expert)
        reached += raw[expert] / total
        if reached >= sel.top_p - 1e-12 or len(picked) >= sel.max_k:
            break
    return Chosen(_choices(picked, {e: raw[e] / total for e in picked}))


def strong_and_weak(profile: ProfileLookup) -> tuple[str, str]:
    """RouteLLM's pair: the costliest expert (the most accurate among equals) and the cheapest
    (likewise); with equal costs, the most and the least accurate overall."""
    by_cost = sorted(profile.experts, key=lambda e: (profile.cost(e), profile.accuracy(e), e))
    strong, weak = by_cost[-1], by_cost[0]
    if profile.cost(strong) == profile.cost(weak):
        by_accuracy = sorted(profile.experts, key=lambda e: (profile.accuracy(e), e))
        strong, weak = by_accuracy[-1], by_accuracy[0]
    return strong, weak


def win_probability(profile: ProfileLookup, skills: Mapping[str, float], strong: str, weak: str) -> float:
    """Predicted chance that the strong expert is right where the weak one is wrong, from their
    accuracies on the query's skills (taken as independent)."""
    return _win(expected_accuracy(profile, skills), strong, weak)


def _win(accuracy: Mapping[str, float], strong: str, weak: str) -> float:
    return accuracy[strong] * (1.0 - accuracy[weak])


def _routellm(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    strong, weak = strong_and_weak(profile)
    win = _win(query.expected, strong, weak)
    return Chosen([ExpertChoice(expert=strong if win >= sel.win_threshold else weak, score=win)])


def _cascade(profile: ProfileLookup, query: Asking, sel: Selection) -> Chosen:
    """The ladder of ``router.cascade``: cheap experts first, the strong one (or more) on escalation."""
    scores = query.expected
    ranked = _ranked(scores, profile)
    tied = [e for e in ranked if scores[e] == scores[ranked[0]]]
    if any(profile.measured(e) for e in tied):  # equally good on the evidence: the cheaper
        strong = min((e for e in tied if profile.measured(e)), key=lambda e: (profile.cost(e), ranked.index(e)))
    else:  # no evidence at all: the larger model is the better bet
        strong = max(tied, key=lambda e: (profile.cost(e), -ranked.index(e)))
    cheaper = [e for e in ranked if profile.cost(e) < profile.cost(strong)]
    if cheaper:
        by_value = sorted(cheaper, key=lambda e: (-scores[e] / profile.cost(e), ranked.index(e)))
        first = by_value[: sel.cascade_first]
        later = (Rung(experts=tuple(_choices([strong], scores)), replaces=True),)
        return Chosen(_choices(first, scores), False, later)
    ranked = ranked[: max(sel.max_k, sel.cascade_first)]
    first, rest = ranked[: sel.cascade_first], ranked[sel.cascade_first :]
    return Chosen(_choices(first, scores), False, tuple(Rung(experts=tuple(_choices([e], scores))) for e in rest))


POLICIES: dict[str, Policy] = {
    "symbolic": _symbolic,
    "topk": _topk,
    "category": _category,
    "single-best": _single_best,
    "random": _random,
    "all": _all,
    "adaptive": _adaptive,
    "top-p": _top_p,
    "routellm": _routellm,
    "cascade": _cascade,
}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise unknown_name("routing policy", name, POLICIES) from None
