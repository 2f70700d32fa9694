"""Cost-aware routing: cascade ladders and escalation, top-p, routellm, calibration on recorded
answers, calibrations stored with a pool, and costs in pool files."""

from __future__ import annotations

import math
import random
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from common.answers import AnswerKind, Judge
from common.errors import BadInput
from router import ConfidenceModel, Heard, ProfileLookup, Router, Selection
from router.calibration import (
    KNOBS,
    Point,
    Target,
    calibrate,
    choose,
    fit_confidence,
    nearest,
    play,
    sweep,
)
from router.cascade import FEATURES, features, leader, vote_posterior
from router.policies import strong_and_weak, win_probability
from skills import ProfileBuilder
from tests.test_router import FixedScorer

DATA = Path(__file__).parent / "data"
SKILL = {"s": 1.0}
LETTERS = "ABCDEFGHIJ"


SCORER = FixedScorer({"q": SKILL})


def make_profile(accuracies, unmeasured=(), n=100):
    """Experts right on ``accuracy * n`` of ``n`` answers on skill "s" (``unmeasured``: none)."""
    b = ProfileBuilder([*accuracies, *unmeasured])
    for expert, accuracy in accuracies.items():
        for i in range(n):
            b.add(expert, ["s"], i < round(accuracy * n))
    return b.build()


def make_router(accuracies, costs=None, policy="cascade", unmeasured=(), tokens=False, **selection):
    """A router over recorded answers (no token log-probabilities) unless ``tokens``."""
    return Router(
        make_profile(accuracies, unmeasured),
        SCORER,
        policy,
        costs=costs,
        selection=Selection(**selection),
        token_experts=None if tokens else (),
    )


# -- cascade ladders --------------------------------------------------------------------------------

LADDERS = tomllib.loads((DATA / "cascade_ladders.toml").read_text())["case"]


@pytest.mark.parametrize("case", LADDERS, ids=[c["name"] for c in LADDERS])
def test_cascade_ladder(case):
    accuracies = {e: a for e, (a, _) in case["experts"].items()}
    costs = {e: c for e, (_, c) in case["experts"].items()}
    r = make_router(accuracies, costs, cascade_first=case["cascade_first"], max_k=case["max_k"])
    (d,) = r.route_weights([SKILL], whole_ladder=True)
    assert d.policy == "cascade"
    assert d.expert_names == case["first"]
    assert [list(rung.names) for rung in d.later] == case["later"]
    assert all(rung.replaces == case["replaces"] for rung in d.later)
    if case["replaces"]:  # the strong expert: best expected accuracy, alone on its rung
        (strong,) = d.later[0].names
        assert len(d.later) == 1
        assert r.competence(d)[strong] == max(r.competence(d).values())
        assert all(r.costs[e] < r.costs[strong] for e in d.expert_names)


def test_ladder_scores_are_expected_accuracies():
    r = make_router({"big": 0.9, "small": 0.6, "tiny": 0.5}, {"big": 70, "small": 4, "tiny": 1})
    (d,) = r.route_weights([SKILL], whole_ladder=True)
    competence = r.competence(d)
    for choice in (*d.experts, *d.later[0].experts):
        assert choice.score == pytest.approx(competence[choice.expert])


def test_unmeasured_covers_later_rungs():
    r = make_router({"a": 0.9, "b": 0.8}, unmeasured=("new",), cascade_first=1, max_k=6)
    (d,) = r.route_weights([SKILL], whole_ladder=True)
    assert d.expert_names == ["a"]
    assert [rung.names for rung in d.later] == [("b",), ("new",)]  # no evidence: ranked last
    assert d.unmeasured == ("new",)
    measured = make_router({"a": 0.9, "b": 0.8}, cascade_first=1).route_weights([SKILL], whole_ladder=True)[0]
    assert measured.unmeasured == ()


# -- escalation -------------------------------------------------------------------------------------

CHEAP_STRONG = ({"big": 0.9, "s1": 0.7, "s2": 0.65}, {"big": 70.0, "s1": 4.0, "s2": 3.0})


def cheap_strong(**selection):
    r = make_router(*CHEAP_STRONG, **selection)
    (d,) = r.route_weights([SKILL], whole_ladder=True)
    assert d.expert_names == ["s2", "s1"] and d.later[0].names == ("big",)  # by accuracy per cost
    return r, d


def test_agreement_stops_and_disagreement_escalates():
    r, d = cheap_strong()
    agree = r.escalate(d, [Heard("s1", "C"), Heard("s2", "C")], 1)
    assert agree.leader == "C" and not agree.escalate and agree.round == 1
    assert agree.confidence > 0.9 and agree.next_confidence == pytest.approx(r.competence(d)["big"])
    split = r.escalate(d, [Heard("s1", "C"), Heard("s2", "D")], 1)
    assert split.escalate and split.leader == "C"  # the more competent expert's answer leads
    assert split.confidence < 0.5 < split.next_confidence
    nothing = r.escalate(d, [Heard("s1", None), Heard("s2", None)], 1)
    assert nothing.leader is None and nothing.confidence < 0.01 and nothing.escalate


def test_default_model_reads_vote_posterior_and_next_accuracy():
    r, d = cheap_strong()
    heard = [Heard("s1", "C"), Heard("s2", "D")]
    competence = r.competence(d)
    got = r.escalate(d, heard, 1)
    assert got.confidence == pytest.approx(vote_posterior(heard, competence, "C", 10), abs=2e-3)
    assert ConfidenceModel().fitted_on == 0 and ConfidenceModel().features == FEATURES


def test_last_rung_never_escalates():
    r, d = cheap_strong(cascade_gain=-1.0)
    after = r.escalate(d, [Heard("s1", "C"), Heard("s2", "D"), Heard("big", None)], 2)
    assert after.round == 2 and after.next_confidence is None and not after.escalate
    r3 = make_router({"a": 0.9, "b": 0.8, "c": 0.7}, cascade_first=1, cascade_gain=-1.0)
    (d3,) = r3.route_weights([SKILL], whole_ladder=True)
    assert len(d3.later) == 2
    assert r3.escalate(d3, [Heard("a", "A")], 1).escalate
    assert r3.escalate(d3, [Heard("a", "A"), Heard("b", "B")], 2).escalate
    last = r3.escalate(d3, [Heard("a", "A"), Heard("b", "B"), Heard("c", "C")], 3)
    assert last.next_confidence is None and not last.escalate


def test_cascade_gain_moves_the_decision():
    split = [Heard("s1", "C"), Heard("s2", "D")]
    agree = [Heard("s1", "C"), Heard("s2", "C")]
    r, d = cheap_strong()
    gap = r.escalate(d, split, 1)
    margin = gap.next_confidence - gap.confidence
    below, above = cheap_strong(cascade_gain=margin - 0.01), cheap_strong(cascade_gain=margin + 0.01)
    assert below[0].escalate(below[1], split, 1).escalate
    assert not above[0].escalate(above[1], split, 1).escalate
    eager, _ = cheap_strong(cascade_gain=-1.0)
    assert not r.escalate(d, agree, 1).escalate and eager.escalate(d, agree, 1).escalate


def test_token_confidence_nudges_now():
    r, d = cheap_strong()
    plain = r.escalate(d, [Heard("s1", "C"), Heard("s2", "D")], 1).confidence
    sure = r.escalate(d, [Heard("s1", "C", -0.05), Heard("s2", "D", -0.05)], 1).confidence
    unsure = r.escalate(d, [Heard("s1", "C", -3.0), Heard("s2", "D", -0.05)], 1).confidence
    assert sure > plain > unsure
    # only the leader's supporters count: the other answer's log-probability changes nothing
    other = r.escalate(d, [Heard("s1", "C", -0.05), Heard("s2", "D", -9.0)], 1).confidence
    assert other == pytest.approx(sure)
    row = features(d, [Heard("s1", "C", math.log(0.8))], r.competence(d), ("big",), 10)
    assert row[FEATURES.index("has_token_confidence")] == 1.0
    assert row[FEATURES.index("token_confidence_logit")] == pytest.approx(math.log(0.8 / 0.2))


@pytest.mark.parametrize("n_options", [2, 4, 10])
def test_vote_posterior(n_options):
    competence = {"x": 0.7, "y": 0.6, "z": 0.3}
    for c in (0.2, 0.5, 0.7, 0.95):
        assert vote_posterior([Heard("x", "A")], {"x": c}, "A", n_options) == pytest.approx(c)
    assert vote_posterior([Heard("x", "A")], competence, None, n_options) == 0.0
    # an answer nobody gave: the chance of any one unchosen option
    assert vote_posterior([Heard("x", "A")], competence, "B", n_options) == pytest.approx(0.3 / (n_options - 1))
    for heard in (
        [Heard("x", "A"), Heard("y", "B")],
        [Heard("x", "A"), Heard("y", "A"), Heard("z", "B")],
        [Heard("x", "A"), Heard("y", "B"), Heard("z", "C")],
        [Heard("x", "A"), Heard("y", None)],
    ):
        candidates = {h.choice for h in heard if h.choice is not None}
        total = sum(vote_posterior(heard, competence, a, n_options) for a in candidates)
        assert total <= 1.0 + 1e-9
        if len(candidates) >= n_options:  # nothing left unchosen: the candidates share everything
            assert total == pytest.approx(1.0)
    # agreement raises the posterior over one expert alone
    both = vote_posterior([Heard("x", "A"), Heard("y", "A")], competence, "A", n_options)
    assert both > vote_posterior([Heard("x", "A")], competence, "A", n_options)


def test_leader_tie_rule():
    competence = {"x": 0.9, "y": 0.3, "z": 0.4, "w": 0.3}
    # count first: two weak votes (0.7 together) beat one strong one (0.9)
    assert leader([Heard("x", "A"), Heard("y", "B"), Heard("z", "B")], competence) == "B"
    assert leader([Heard("x", "A"), Heard("y", "B")], competence) == "A"  # then summed competence
    assert leader([Heard("y", "B"), Heard("x", "A")], competence) == "A"
    assert leader([Heard("y", "D"), Heard("w", "C")], competence) == "C"  # then the smaller string
    assert leader([Heard("w", "C"), Heard("y", "D")], competence) == "C"
    assert leader([Heard("x", None), Heard("y", "D")], competence) == "D"
    assert leader([Heard("x", None)], competence) is None and leader([], competence) is None


def test_skip_hopeless_first_rung():
    accuracies, costs = {"big": 0.9, "w1": 0.2, "w2": 0.25}, {"big": 70.0, "w1": 1.0, "w2": 2.0}
    r = make_router(accuracies, costs)
    (whole,) = r.route_weights([SKILL], whole_ladder=True)
    assert whole.expert_names == ["w1", "w2"] and whole.later[0].names == ("big",)
    # even if both weak experts agreed, the strong one would be asked: start with it
    assert r.escalate(whole, [Heard("w1", "A"), Heard("w2", "A")], 1).escalate
    (skipped,) = r.route_weights([SKILL])
    assert skipped.expert_names == ["big"] and skipped.later == ()
    assert r.route(["q"])[0].expert_names == ["big"]
    # experts whose engines give token log-probabilities could be sure enough to stop: kept
    (kept,) = make_router(accuracies, costs, tokens=True).route_weights([SKILL])
    assert kept.expert_names == ["w1", "w2"]
    # a first rung that could stop is kept
    hopeful = make_router({"big": 0.9, "s1": 0.7, "s2": 0.65}, {"big": 70.0, "s1": 4.0, "s2": 3.0})
    (kept,) = hopeful.route_weights([SKILL])
    assert kept.expert_names == ["s2", "s1"] and kept.later[0].names == ("big",)


def test_skip_hopeless_adds_rungs_that_join_the_vote():
    r = make_router({"a": 0.9, "b": 0.8, "c": 0.7}, cascade_first=1, cascade_gain=-1.0)
    (d,) = r.route_weights([SKILL])  # every climb is worth it: the whole ladder up front
    assert d.expert_names == ["a", "b", "c"] and d.later == ()
    (whole,) = r.route_weights([SKILL], whole_ladder=True)
    assert whole.expert_names == ["a"] and len(whole.later) == 2


# -- top-p and routellm -----------------------------------------------------------------------------

TOP_P = {"a": 0.9, "b": 0.85, "c": 0.5, "d": 0.45}


def top_p(**selection):
    r = make_router(TOP_P, policy="top-p", **selection)
    return r.route_weights([SKILL])[0]


def test_top_p_adds_experts_by_softmax_weight():
    competence = make_router(TOP_P).competence(top_p())
    scale = 0.05
    raw = {e: math.exp((competence[e] - max(competence.values())) / scale) for e in TOP_P}
    share = {e: w / sum(raw.values()) for e, w in raw.items()}
    assert share["a"] > share["b"] > share["c"]
    alone = top_p(top_p=share["a"] - 0.01)
    assert alone.expert_names == ["a"]
    assert alone.experts[0].score == pytest.approx(share["a"])
    assert top_p(top_p=share["a"] + 0.01).expert_names == ["a", "b"]
    assert top_p(top_p=1e-6).expert_names == ["a"]
    assert top_p(top_p=1.0).expert_names == ["a", "b", "c", "d"]
    assert top_p(top_p=1.0, max_k=2).expert_names == ["a", "b"]
    # a high temperature flattens the weights: more experts for the same p
    assert len(top_p(top_p=0.7, temperature=5.0).experts) > len(top_p(top_p=0.7).experts)


def test_routellm_pair_and_threshold():
    accuracies = {"big": 0.8, "mid": 0.9, "small": 0.4}
    costs = {"big": 70.0, "mid": 8.0, "small": 1.0}
    lookup = ProfileLookup(make_profile(accuracies), costs)
    assert strong_and_weak(lookup) == ("big", "small")  # by cost, not accuracy
    assert strong_and_weak(ProfileLookup(make_profile(accuracies))) == ("mid", "small")  # equal costs
    win = win_probability(lookup, SKILL, "big", "small")
    assert 0.0 < win < 1.0
    for threshold, expected in ((0.0, "big"), (1.0, "small"), (win, "big"), (min(1.0, win + 0.01), "small")):
        r = make_router(accuracies, costs, policy="routellm", win_threshold=threshold)
        (d,) = r.route_weights([SKILL])
        assert d.expert_names == [expected], threshold
        assert d.experts[0].score == pytest.approx(win)


# -- calibration on recorded answers ----------------------------------------------------------------


def letters_right(gold):
    """The judge's verdict on letter answers to these gold letters (what the pipeline gives calibration)."""
    judge = Judge(AnswerKind.LETTER)
    return lambda qid, answer: judge.correct(answer, gold[qid])


def hand_set():
    """Three questions, every expert's answer recorded (cheap s1, s2; strong big)."""
    recorded = {
        "agree": {"s1": Heard("s1", "B"), "s2": Heard("s2", "B"), "big": Heard("big", "C")},
        "split": {"s1": Heard("s1", "A"), "s2": Heard("s2", "D"), "big": Heard("big", "D")},
        "blank": {"s1": Heard("s1", None), "s2": Heard("s2", None), "big": Heard("big", "E")},
    }
    gold = {"agree": "B", "split": "D", "blank": "E"}
    return recorded, gold


def test_play_follows_the_cascade():
    recorded, _ = hand_set()
    r, _ = cheap_strong()
    decisions = r.route_weights([SKILL] * 3, list(recorded))
    outcomes = {str(d.question_id): play(r, d, recorded[str(d.question_id)]) for d in decisions}
    assert outcomes["agree"][:4] == ("B", ("s2", "s1"), 7.0, 1)
    # the strong answer replaces the cheap ones: D, though s1 (more competent) said A
    assert outcomes["split"][:4] == ("D", ("s2", "s1", "big"), 77.0, 2)
    assert outcomes["blank"][:4] == ("E", ("s2", "s1", "big"), 77.0, 2)


def test_play_other_policies_ask_once():
    recorded, _ = hand_set()
    r = make_router(*CHEAP_STRONG, policy="topk", k=3)
    (d,) = r.route_weights([SKILL], ["split"])
    assert play(r, d, recorded["split"])[:4] == ("D", ("big", "s1", "s2"), 77.0, 1)
    single = make_router(*CHEAP_STRONG, policy="routellm", win_threshold=1.0)
    (d,) = single.route_weights([SKILL], ["agree"])
    assert play(single, d, recorded["agree"])[:4] == ("B", ("s2",), 3.0, 1)


SYNTH_EXPERTS = {"big": (0.85, 70.0), "s1": (0.55, 4.0), "s2": (0.5, 3.0), "tiny": (0.4, 1.0)}


def synthetic(n=240, seed=3, logprobs=False):
    """Recorded answers of four experts on ``n`` questions, the cheap ones often wrong together
    (without log-probabilities, as ``answer_batch`` records them, unless ``logprobs``)."""
    rng = random.Random(seed)
    recorded, gold, builder = {}, {}, ProfileBuilder(list(SYNTH_EXPERTS))
    for i in range(n):
        qid = f"q{i}"
        gold[qid] = right = rng.choice(LETTERS)
        trap = rng.choice([x for x in LETTERS if x != right])
        hard = rng.random() < 0.3
        answers = {}
        for expert, (accuracy, _) in SYNTH_EXPERTS.items():
            ok = rng.random() < (accuracy - 0.2 if hard else accuracy + 0.1)
            choice = right if ok else (trap if rng.random() < 0.6 else rng.choice(LETTERS))
            answers[expert] = Heard(expert, choice, math.log(0.9 if ok else 0.5) if logprobs else None)
            builder.add(expert, ["s"], choice == right)
        recorded[qid] = answers
    return builder.build(), recorded, letters_right(gold)


@pytest.fixture(scope="module")
def synth():
    return synthetic()


def synth_maker(profile, policy):
    costs = {e: c for e, (_, c) in SYNTH_EXPERTS.items()}
    scorer = FixedScorer({})

    def make(selection, confidence=None):
        return Router(profile, scorer, policy, selection=selection, costs=costs, confidence=confidence)  # tokens: all

    return make


def test_sweep_gives_one_point_per_knob_value(synth):
    profile, recorded, gold = synth
    ids = list(recorded)
    weights = [SKILL] * len(ids)
    points = sweep(lambda s: synth_maker(profile, "cascade")(s), "cascade", weights, ids, recorded, gold, "big")
    grid = KNOBS["cascade"][1]
    assert [p.value for p in points] == pytest.approx(list(grid))
    costs = [p.cost_ratio for p in points]
    # a larger gain asks the strong expert less often: cost falls (allowing for skipped first rungs)
    assert costs[0] > costs[-1]
    assert all(b <= a + 0.05 for a, b in zip(costs, costs[1:]))
    assert points[-1].escalated <= points[0].escalated
    assert all(0 < p.cost_ratio <= (70 + 4 + 3) / 70 + 1e-9 for p in points)
    top = sweep(lambda s: synth_maker(profile, "top-p")(s), "top-p", weights, ids, recorded, gold, "big", [0.1, 1.0])
    assert [p.value for p in top] == [0.1, 1.0]
    assert top[0].experts_per_question == 1.0 and top[1].experts_per_question == 4.0
    with pytest.raises(BadInput, match="no threshold"):
        sweep(lambda s: synth_maker(profile, "all")(s), "all", weights, ids, recorded, gold, "big")


def pt(value, accuracy, cost):
    return Point(value=value, accuracy=accuracy, cost_ratio=cost, accuracy_ratio=accuracy / 0.8, experts_per_question=1)


POINTS = [pt(0.0, 0.80, 1.2), pt(0.1, 0.78, 0.6), pt(0.2, 0.70, 0.3), pt(0.3, 0.70, 0.2), pt(0.4, 0.50, 0.1)]


def test_choose_honours_the_target():
    assert choose(POINTS, Target(max_cost=0.65, reference="big")).value == 0.1
    assert choose(POINTS, Target(max_cost=0.25, reference="big")).value == 0.3  # same accuracy, cheaper
    assert choose(POINTS, Target(max_cost=5, reference="big")).value == 0.0
    assert choose(POINTS, Target(min_accuracy=0.85, reference="big")).value == 0.3  # cheapest at 0.875
    assert choose(POINTS, Target(min_accuracy=0.95, reference="big")).value == 0.1
    with pytest.raises(BadInput) as cost:
        choose(POINTS, Target(max_cost=0.05, reference="big"))
    assert "\n" not in str(cost.value) and "0.05" in str(cost.value) and "big" in str(cost.value)
    assert "0.1" in str(cost.value)  # the cheapest point's cost
    with pytest.raises(BadInput) as accuracy:
        choose(POINTS, Target(min_accuracy=1.1, reference="big"))
    assert "1.1" in str(accuracy.value) and "big" in str(accuracy.value) and "1" in str(accuracy.value)
    assert nearest(POINTS, Target(max_cost=0.05, reference="big")).value == 0.4
    assert nearest(POINTS, Target(min_accuracy=1.1, reference="big")).value == 0.0
    with pytest.raises(BadInput):
        choose([], Target(max_cost=1.0, reference="big"))
    with pytest.raises(ValidationError):
        Target(reference="big")
    with pytest.raises(ValidationError):
        Target(max_cost=1.0, min_accuracy=1.0, reference="big")


def test_calibrate_cascade():
    profile, recorded, gold = synthetic(n=100)
    ids = list(recorded)
    make = synth_maker(profile, "cascade")
    got = calibrate(make, "cascade", [SKILL] * len(ids), ids, recorded, gold, Target(max_cost=0.6, reference="big"))
    assert got.met and got.policy == "cascade" and set(got.selection) == {"cascade_first", "cascade_gain"}
    assert got.achieved.cost_ratio <= 0.6 and got.confidence is not None and got.confidence.fitted_on > 0
    # one curve per ladder shape (first rungs of 1, 2, 3 experts), each with its own confidence model
    assert got.questions == len(ids) and len(got.curve) == 3 * len(KNOBS["cascade"][1])
    assert {p.fixed["cascade_first"] for p in got.curve} == {1, 2, 3}
    assert got.selection["cascade_first"] == got.achieved.fixed["cascade_first"]
    assert got.achieved == max((p for p in got.curve if p.cost_ratio <= 0.6), key=lambda p: (p.accuracy, -p.cost_ratio))
    unreachable = Target(max_cost=0.001, reference="big")
    with pytest.raises(BadInput, match="0.001"):
        calibrate(make, "cascade", [SKILL] * len(ids), ids, recorded, gold, unreachable)
    loose = calibrate(make, "cascade", [SKILL] * len(ids), ids, recorded, gold, unreachable, strict=False)
    assert not loose.met and loose.achieved == nearest(loose.curve, unreachable)
    with pytest.raises(BadInput, match="'nobody' is not one of the pool's experts"):
        calibrate(make, "cascade", [SKILL] * len(ids), ids, recorded, gold, Target(max_cost=1, reference="nobody"))


def test_fit_confidence_ranks_agreement_above_disagreement(synth):
    profile, recorded, gold = synth
    ids = list(recorded)
    r = synth_maker(profile, "cascade")(Selection(), None)
    model = fit_confidence(r, [SKILL] * len(ids), ids, recorded, gold)
    assert model.fitted_on == len(ids)  # every question's ladder has one climb
    assert len(model.now.coef) == len(FEATURES) and len(model.next.coef) == len(FEATURES)
    (d,) = r.route_weights([SKILL], whole_ladder=True)
    competence, first = r.competence(d), d.expert_names
    agree = features(d, [Heard(e, "A") for e in first], competence, d.later[0].names, 10)
    split = features(d, [Heard(e, x) for e, x in zip(first, "AB")], competence, d.later[0].names, 10)
    assert model.now.probability(agree) > model.now.probability(split)
    with pytest.raises(BadInput, match="alike"):
        fit_confidence(
            r, [SKILL] * 2, ids[:2], recorded, letters_right({q: recorded[q]["big"].choice for q in ids[:2]})
        )


def test_model_fitted_with_logprobs_keeps_first_rungs():
    """A confidence model fitted on answers that carry log-probabilities leans on the token
    confidence; ``Router._skip_hopeless`` imagines the first rung agreeing with and without full
    token confidence, so such a model does not send every question past its cheap rung."""
    profile, recorded, gold = synthetic(n=120, logprobs=True)
    ids = list(recorded)
    make = synth_maker(profile, "cascade")
    model = fit_confidence(make(Selection(), None), [SKILL] * len(ids), ids, recorded, gold)
    points = sweep(lambda s: make(s, model), "cascade", [SKILL] * len(ids), ids, recorded, gold, "big", [0.1, 0.3])
    assert min(p.cost_ratio for p in points) < 1.0
