"""Router: policies and their registry, the Router facade, scorers, the classifier artefact."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest

import router
from common.errors import BadInput, ConfigError, NotFound
from orchestrator.pools.artefacts import PoolArtefacts
from router import (
    POLICIES,
    ClassifierScorer,
    KeywordScorer,
    ProfileLookup,
    RouteDecision,
    Router,
    Selection,
    expected_accuracy,
    get_policy,
    symbolic_scores,
    train_classifier,
    vote_accuracies,
    vote_accuracy,
)
from skills import HashingEmbedder, ProfileBuilder, SkillMapper


def test_all_is_exported():
    for name in router.__all__:
        assert hasattr(router, name), name


def profile():
    """strong: good at maths; lawyer: good at law; weak: bad at both; mid: average."""
    b = ProfileBuilder(["strong", "lawyer", "weak", "mid"])
    table = {"strong": (0.9, 0.3), "lawyer": (0.3, 0.8), "weak": (0.1, 0.1), "mid": (0.5, 0.5)}
    for expert, (maths, law) in table.items():
        for i in range(100):
            b.add(expert, ["mathematics"], i < maths * 100)
            b.add(expert, ["law"], i < law * 100)
    return b.build()


class FixedScorer:
    """Skill weights looked up per query text (a stand-in for the classifier)."""

    name = "fixed"

    def __init__(self, table):
        self.table = table

    def skill_weights(self, texts):
        return [self.table[t] for t in texts]


MATHS = {"mathematics": 0.9, "law": 0.1}
LAW = {"law": 1.0}
UNSURE = {"law": 0.4, "mathematics": 0.35, "history": 0.25}
SCORER = FixedScorer({"m": MATHS, "l": LAW, "u": UNSURE})


def route(policy, text, **kw):
    return Router(profile(), SCORER, policy, **kw).route([text])[0]


def test_registry_has_the_named_policies_and_suggests_on_typos():
    assert set(POLICIES) == {
        *("symbolic", "topk", "category", "single-best", "random", "all", "adaptive"),
        *("top-p", "routellm", "cascade"),
    }
    with pytest.raises(NotFound, match="did you mean 'adaptive'"):
        get_policy("adaptiv")
    with pytest.raises(NotFound, match="did you mean 'topk'"):
        Router(profile(), SCORER, "topkk")


def test_symbolic_scores_follow_skills_and_competence():
    p = profile()
    scores = symbolic_scores(p, MATHS)
    # strong: 0.9*(80) + 0.1*(-40) = 68, times its competence 0.6
    assert scores["strong"] == pytest.approx(p.competence("strong") * (0.9 * 80 + 0.1 * -40))
    assert max(scores, key=scores.get) == "strong"
    assert max(symbolic_scores(p, LAW), key=symbolic_scores(p, LAW).get) == "lawyer"


def test_topk_is_deterministic_top_k():
    d = route("topk", "m", k=2)
    assert d.expert_names == ["strong", "mid"]
    assert d.policy == "topk" and d.skills == MATHS and d.confidence == pytest.approx(0.9)
    assert route("topk", "l", k=1).expert_names == ["lawyer"]


def test_symbolic_samples_by_positive_score_without_replacement():
    counts = Counter()
    for seed in range(300):
        names = route("symbolic", "m", k=2, seed=seed).expert_names
        assert len(set(names)) == 2
        counts.update(names)
    # only strong (68) and mid (0) ... mid's score is 0: strong always, then the next by score
    assert counts["strong"] == 300
    law = Counter(n for s in range(300) for n in route("symbolic", "l", k=1, seed=s).expert_names)
    assert set(law) == {"lawyer"}  # the only expert with a positive law score
    # same seed and question: same draw, whatever else is routed with it
    r = Router(profile(), SCORER, "symbolic", k=2, seed=7)
    alone = r.route(["u"], question_ids=["q9"])[0]
    batch = r.route(["m", "u"], question_ids=["q1", "q9"])[1]
    assert alone.experts == batch.experts


def test_symbolic_draw_frequencies_are_proportional():
    b = ProfileBuilder(["x", "y"])
    for i in range(10):
        b.add("x", ["s"], True)
        b.add("y", ["s"], i < 7)  # local scores 10 and 4
    p = b.build()
    scores = symbolic_scores(p, {"s": 1.0})
    share = scores["x"] / (scores["x"] + scores["y"])
    scorer = FixedScorer({"q": {"s": 1.0}})
    firsts = Counter(Router(p, scorer, "symbolic", k=1, seed=s).route(["q"])[0].expert_names[0] for s in range(2000))
    assert firsts["x"] / 2000 == pytest.approx(share, abs=0.04)


def test_category_maps_top_skill_and_falls_back_below_threshold():
    d = route("category", "l", k=1)
    assert d.expert_names == ["lawyer"] and not d.fallback
    unsure = route("category", "u", k=1)  # top skill weight 0.4 < 0.5: best overall expert
    assert unsure.fallback and unsure.expert_names == [profile().best_expert()]
    lenient = Router(profile(), SCORER, "category", k=1, selection=Selection(threshold=0.3)).route(["u"])[0]
    assert lenient.expert_names == ["lawyer"] and not lenient.fallback


def test_single_best_random_and_all():
    assert route("single-best", "l", k=3).expert_names == [profile().best_expert()]
    r = route("random", "m", k=3, seed=1)
    assert len(set(r.expert_names)) == 3
    assert r.expert_names == route("random", "m", k=3, seed=1).expert_names
    draws = {tuple(route("random", "m", k=2, seed=s).expert_names) for s in range(30)}
    assert len(draws) > 5
    assert sorted(route("all", "m").expert_names) == sorted(profile().experts)
    assert route("all", "m").expert_names[0] == "strong"


def test_adaptive_adds_experts_only_when_worth_the_cost():
    cheap = Selection(cost=0.0, spread=0.0, max_k=4)
    costly = Selection(cost=0.5, spread=0.0, max_k=4)
    many = Router(profile(), SCORER, "adaptive", selection=cheap).route(["u"])[0]
    one = Router(profile(), SCORER, "adaptive", selection=costly).route(["u"])[0]
    assert len(one.experts) == 1
    assert len(many.experts) >= 3
    # errors that nearly always go together: a second opinion is worth little
    apart = Router(profile(), SCORER, "adaptive", selection=Selection(cost=0.01, spread=0.0)).route(["u"])[0]
    together_sel = Selection(cost=0.01, spread=8.0)
    together = Router(profile(), SCORER, "adaptive", selection=together_sel).route(["u"])[0]
    assert len(together.experts) < len(apart.experts)
    # a clear specialist is ranked first
    specialist = Router(profile(), SCORER, "adaptive", selection=Selection(cost=0.0)).route(["m"])[0]
    assert specialist.expert_names[0] == "strong"


def test_vote_accuracy():
    assert vote_accuracy([0.7]) == pytest.approx(0.7)
    assert vote_accuracy([0.7, 0.4]) == pytest.approx(0.7)  # a tie goes to the first-ranked
    three = 0.6**3 + 3 * 0.6**2 * 0.4 + 0.6 * 0.4 * 0.4  # >= 2 right, or only the first right
    assert vote_accuracy([0.6, 0.6, 0.6]) == pytest.approx(three)
    # shared difficulty: the same marginal accuracies gain less from voting, and nearly nothing
    # when the experts are right or wrong together
    by_spread = [vote_accuracy([0.6, 0.6, 0.6], spread=s) for s in (0.0, 1.0, 2.0, 4.0)]
    assert by_spread[0] == pytest.approx(three)
    assert all(a > b > 0.6 for a, b in zip(by_spread, by_spread[1:]))
    assert vote_accuracy([0.6], spread=3.0) == pytest.approx(0.6)
    # distinct wrong letters cannot outvote a right one: only "first wrong, both others right" adds
    assert vote_accuracy([0.9, 0.2, 0.2]) == pytest.approx(0.9 + 0.1 * 0.2 * 0.2)
    # with two options the wrong votes coincide and can outvote the specialist
    assert vote_accuracy([0.9, 0.2, 0.2], n_options=2) < 0.9
    with pytest.raises(BadInput):
        vote_accuracy([])
    with pytest.raises(BadInput):
        vote_accuracy([1.5])


@pytest.mark.parametrize("spread", [0.0, 5.0])
@pytest.mark.parametrize("n_options", [2, 4, 10])
def test_vote_accuracies_of_prefixes_match_each_prefix_alone(spread, n_options):
    accuracies = [0.81, 0.77, 0.74, 0.70, 0.52, 0.31]
    prefixes = vote_accuracies(accuracies, n_options, spread)
    assert len(prefixes) == 6 and prefixes[0] == 0.81
    for j in range(1, 7):
        alone = vote_accuracy(accuracies[:j], n_options, spread)
        assert prefixes[j - 1] == pytest.approx(alone, rel=1e-12)
        if spread == 0.0:  # the plain count over every right/wrong pattern, for independent experts
            assert alone == pytest.approx(_independent_vote(accuracies[:j], n_options), rel=1e-12)


def _independent_vote(accuracies, n_options):
    """Enumerate who is right; wrong votes spread evenly over the wrong letters, the first-ranked
    expert's among the biggest group; a tie goes to the first-ranked expert's letter."""
    total = 0.0
    for pattern in itertools.product([True, False], repeat=len(accuracies)):
        chance = math.prod(p if right else 1 - p for p, right in zip(accuracies, pattern))
        right, wrong = sum(pattern), len(pattern) - sum(pattern)
        biggest_wrong = -(-wrong // (n_options - 1))
        total += chance * (right >= biggest_wrong if pattern[0] else right > biggest_wrong)
    return total


def test_profile_lookup_answers_as_the_profile():
    p = profile()
    lookup = ProfileLookup(p)
    assert lookup.experts == p.experts
    for expert in p.experts:
        assert lookup.competence(expert) == p.competence(expert)
        assert lookup.measured(expert) == p.measured(expert)
        assert lookup.accuracy(expert) == p.accuracy(expert)
        for skill in ("law", "mathematics", "Mathematics", "unseen"):
            assert lookup.accuracy(expert, skill) == p.accuracy(expert, skill)
            assert lookup.score(expert, skill) == p.score(expert, skill)
    for skills in (MATHS, LAW, UNSURE, {}):
        assert symbolic_scores(lookup, skills) == symbolic_scores(p, skills)
        total = sum(skills.values())
        by_hand = {e: sum(w * p.accuracy(e, s) for s, w in skills.items()) / total for e in p.experts} if skills else {}
        assert expected_accuracy(lookup, skills) == (by_hand or {e: p.accuracy(e) for e in p.experts})


def test_route_decision_validation_and_inputs():
    with pytest.raises(ValueError):
        RouteDecision(skills={}, experts=(), confidence=0.5, policy="x")
    r = Router(profile(), SCORER, "topk")
    with pytest.raises(BadInput):
        r.route("m")
    with pytest.raises(BadInput, match="question ids"):
        r.route(["m"], question_ids=["1", "2"])
    with pytest.raises(BadInput, match="weight"):
        r.route_weights([{"law": -1.0}])
    empty = r.route_weights([{}])[0]  # nothing known: overall competence decides
    assert empty.skills == {} and empty.confidence == 0.0 and len(empty.experts) == 3
    assert json.loads(empty.model_dump_json())["policy"] == "topk"


TRAIN = [
    ("integrate the polynomial and find the derivative", "math"),
    ("solve the equation for x using algebra", "math"),
    ("compute the integral of the function", "math"),
    ("find the derivative of the function at x", "math"),
    ("the court ruled the contract void", "law"),
    ("a tort claim against the defendant in court", "law"),
    ("the plaintiff sued for breach of contract", "law"),
    ("is the statute constitutional under the court ruling", "law"),
]


def test_classifier_train_save_load_and_score(tmp_path):
    emb = HashingEmbedder(256)
    texts, labels = zip(*(TRAIN * 3))
    clf = train_classifier(texts, labels, emb, seed=0)
    assert clf.labels == ["law", "mathematics"]
    stored = PoolArtefacts(tmp_path)
    path = stored.save_classifier(clf)
    assert path == tmp_path / "router" / "classifier.v1.json"
    assert stored.save_classifier(clf).name == "classifier.v2.json"
    meta = json.loads(path.read_text())["meta"]
    assert meta["embedder"] == "hashing-256" and meta["labels"] == ["law", "mathematics"]
    loaded = stored.latest_classifier()
    scorer = ClassifierScorer(loaded, emb)
    weights = scorer.skill_weights(["the derivative of the integral", "the court and the contract"])
    assert max(weights[0], key=weights[0].get) == "mathematics"
    assert max(weights[1], key=weights[1].get) == "law"
    assert all(abs(sum(w.values()) - 1) < 1e-9 for w in weights)
    assert np.allclose(loaded.predict_proba(emb.embed(["court"])), clf.predict_proba(emb.embed(["court"])))
    with pytest.raises(ConfigError, match="trained on 'hashing-256'"):
        ClassifierScorer(loaded, HashingEmbedder(64))


CHEMISTRY = [
    ("balance the redox reaction of the acid", "chemistry"),
    ("the molar mass of the compound and its bonds", "chemistry"),
    ("an exothermic reaction releases heat from the bonds", "chemistry"),
    ("titrate the base with the acid solution", "chemistry"),
]


@pytest.mark.parametrize("calibrate", [True, False])
@pytest.mark.parametrize("rows", [TRAIN, TRAIN + CHEMISTRY], ids=["two-labels", "three-labels"])
def test_classifier_from_plain_numbers_predicts_like_sklearn(calibrate, rows):
    """The stored numbers reproduce scikit-learn's own probabilities, with no estimator kept."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    from router import ClassifierPayload, SkillClassifier
    from skills import normalise_skill

    emb = HashingEmbedder(128)
    texts, labels = zip(*(rows * 3))
    clf = train_classifier(texts, labels, emb, calibrate=calibrate, seed=0)
    base = LogisticRegression(C=4.0, max_iter=2000, random_state=0)
    reference = CalibratedClassifierCV(base, method="sigmoid", cv=3) if calibrate else base
    reference.fit(emb.embed(list(texts)), [normalise_skill(label) for label in labels])
    queries = emb.embed(["the court and the acid", "integral of the contract", "heat", "nothing known"])
    assert clf.labels == [str(c) for c in reference.classes_]
    assert np.allclose(clf.predict_proba(queries), reference.predict_proba(queries), atol=1e-6)
    again = SkillClassifier.from_payload(ClassifierPayload.model_validate_json(clf.to_payload().model_dump_json()))
    assert np.array_equal(again.predict_proba(queries), clf.predict_proba(queries))
    assert len(clf.to_payload().members) == (3 if calibrate else 1)


def test_classifier_bad_inputs_and_artefacts(tmp_path):
    emb = HashingEmbedder(64)
    with pytest.raises(BadInput, match="needs labelled questions"):
        train_classifier([], [], emb)
    with pytest.raises(BadInput, match="1 training label"):
        train_classifier(["a", "b"], ["law", ""], emb)
    with pytest.raises(BadInput, match="labels"):
        train_classifier(["a", "b"], ["law"], emb)
    stored = PoolArtefacts(tmp_path)
    assert stored.latest_classifier() is None
    texts, labels = zip(*(TRAIN * 3))
    path = stored.save_classifier(train_classifier(texts, labels, emb, calibrate=False))
    raw = json.loads(path.read_text())
    raw["meta"]["labels"] = "law"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="labels"):
        stored.latest_classifier()
    raw["meta"]["labels"] = ["law", "mathematics"]
    raw["members"][0]["coef"][0] = raw["members"][0]["coef"][0][:-1]  # one number short
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"members\[0\] takes 63 features, meta.n_features is 64"):
        stored.latest_classifier()


def test_one_label_makes_a_certain_classifier(tmp_path):
    emb = HashingEmbedder(64)
    clf = train_classifier(["two plus two", "a train leaves at noon"], ["GSM8K", "gsm8k"], emb)
    assert clf.labels == ["gsm8k"] and not clf.meta.calibrated and clf.to_payload().members == []
    weights = ClassifierScorer(clf, emb).skill_weights(["anything at all", "what is 3 times 4?"])
    assert weights == [{"gsm8k": 1.0}, {"gsm8k": 1.0}]
    stored = PoolArtefacts(tmp_path)
    path = stored.save_classifier(clf)
    assert stored.latest_classifier().labels == ["gsm8k"]
    raw = json.loads(path.read_text())
    raw["members"] = [{"coef": [[0.0] * 64], "intercept": [0.0]}]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="one label has no members"):
        stored.latest_classifier()
    raw["meta"]["labels"], raw["members"] = ["law", "law"], []
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="distinct"):
        stored.latest_classifier()
    raw["meta"]["labels"] = ["law", "maths"]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="need at least one member"):
        stored.latest_classifier()


def test_keyword_scorer_maps_keywords_to_skills():
    mapper = SkillMapper(["organic chemistry", "contract law"], HashingEmbedder())
    keywords = ["contract law", "organic chemistry", "contract law"]
    scorer = KeywordScorer(mapper, lambda texts: [keywords] * len(texts))
    (weights,) = scorer.skill_weights(["any question"])
    assert weights["contract law"] == pytest.approx(2 / 3)
    d = Router(profile(), scorer, "category", selection=Selection(threshold=0.6)).route(["q"])[0]
    assert d.top_skill == "contract law" and not d.fallback
    with pytest.raises(BadInput):
        KeywordScorer(mapper, lambda texts: []).skill_weights(["q"])


def test_category_policy_and_confidence_leave_topics_aside():
    scorer = FixedScorer({"q": {"law": 0.4, "mathematics": 0.1, "topic:3": 0.5}})
    d = Router(profile(), scorer, "category", k=1, selection=Selection(threshold=0.6)).route(["q"])[0]
    assert d.confidence == pytest.approx(0.8)  # law's share of the named skills
    assert d.expert_names == ["lawyer"] and not d.fallback
    only_topics = Router(profile(), FixedScorer({"q": {"topic:1": 1.0}}), "category", k=1).route(["q"])[0]
    assert only_topics.confidence == 1.0


def _clustered(rng, centres, n):
    rows = np.repeat(centres, n, axis=0) + 0.05 * rng.standard_normal((len(centres) * n, centres.shape[1]))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_topics_cluster_and_score_softly(tmp_path):
    from router import TopicScorer, train_topics

    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3]
    vectors = _clustered(rng, centres, 30)
    emb = HashingEmbedder(8)
    topics = train_topics(vectors, emb, 3, seed=0)
    labels = topics.labels(vectors)
    # the three planted groups come out as three topics, one per group
    groups = [set(labels[i * 30 : (i + 1) * 30]) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3
    scorer = TopicScorer(topics, emb)
    (weights,) = scorer.weights_from_vectors(vectors[:1])
    assert max(weights, key=weights.get) == labels[0]
    assert sum(weights.values()) == pytest.approx(1.0)
    path = PoolArtefacts(tmp_path).save_topics(topics)
    assert path.name == "topics.v1.json"
    assert PoolArtefacts(tmp_path).latest_topics().labels(vectors) == labels
    with pytest.raises(ConfigError):
        TopicScorer(topics, HashingEmbedder(16))
    with pytest.raises(BadInput):
        train_topics(vectors[:2], emb, 3)


def test_mixture_scorer_adds_weighted_parts():
    from router import MixtureScorer

    a = FixedScorer({"q": {"law": 1.0}})
    b = FixedScorer({"q": {"law": 0.5, "topic:1": 0.5}})
    (weights,) = MixtureScorer([(a, 3.0), (b, 1.0)]).skill_weights(["q"])
    assert weights == pytest.approx({"law": 0.75 + 0.125, "topic:1": 0.125})
    assert list(weights) == ["law", "topic:1"]
    with pytest.raises(BadInput):
        MixtureScorer([])
    with pytest.raises(BadInput):
        MixtureScorer([(a, -1.0), (b, 1.0)])


def test_router_artefacts_train_save_load(tmp_path):
    from eval.benchmarks import Question
    from router import MixtureScorer, train_router

    questions = [
        Question(id=str(i), benchmark="mmlu_pro", text=text, answer="A", category=label)
        for i, (text, label) in enumerate(TRAIN * 3)
    ]
    emb = HashingEmbedder(128)
    arts = train_router(questions, emb, n_topics=3, seed=0)
    assert arts.skills_of["0"][0] == "mathematics" and arts.skills_of["0"][1].startswith("topic:")
    paths = PoolArtefacts(tmp_path).save_router(arts)
    assert [p.name for p in paths] == ["classifier.v1.json", "topics.v1.json"]
    scorer = PoolArtefacts(tmp_path).latest_scorer(emb)
    assert isinstance(scorer, MixtureScorer)
    (weights,) = scorer.skill_weights(["the court ruled on the contract"])
    assert sum(w for s, w in weights.items() if s.startswith("topic:")) == pytest.approx(0.5)
    assert max((s for s in weights if not s.startswith("topic:")), key=weights.get) == "law"
    # profile skills and scorer skills meet: the router finds counts for both kinds
    profile_ = ProfileBuilder(["x", "y"])
    for q in questions:
        profile_.add("x", arts.skills_of[q.id], q.category == "law")
        profile_.add("y", arts.skills_of[q.id], q.category == "math")
    d = Router(profile_.build(), scorer, "topk", k=1).route(["a tort claim in court"])[0]
    assert d.expert_names == ["x"]
    no_topics = train_router(questions, emb, n_topics=None)
    assert all(len(skills) == 1 for skills in no_topics.skills_of.values())
    with pytest.raises(BadInput, match="no category"):
        train_router([questions[0].model_copy(update={"category": None})], emb)
