"""A user's own benchmark from a TOML spec file: valid specs over JSONL, gzipped JSONL and CSV,
and the table of broken specs in tests/data/bad_specs.toml (one line naming the culprit)."""

from __future__ import annotations

import gzip
import json
import tomllib
from pathlib import Path

import pytest

from common import errors
from common.errors import NotFound
from eval import AnswerKind, load_benchmark, load_spec

BAD = tomllib.loads((Path(__file__).parent / "data" / "bad_specs.toml").read_text(encoding="utf-8"))["case"]

GSM = [
    {"id": 1, "question": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "7", "subject": "add"},
    {"id": 2, "question": "A pen costs $1.50. What do 4 pens cost?", "answer": "$6.00", "subject": "money"},
    {"id": 3, "question": "What is 1,000 + 1,125?", "answer": "2,125", "subject": "add"},
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_spec_with_one_data_file(tmp_path):
    write(tmp_path / "gsm.jsonl", "\n".join(json.dumps(row) for row in GSM) + "\n")
    spec = write(
        tmp_path / "gsm.toml",
        """
[benchmark]
name = "gsm-mini"
version = "3"
data = "gsm.jsonl"
answer_kind = "number"
prompt = "{question}\\n\\nSolve it step by step; end with 'The answer is N'."
tolerance = 1e-9
[benchmark.fields]
id = "id"
question = "question"
answer = "answer"
category = "subject"
""",
    )
    bench = load_benchmark(spec)
    assert (bench.name, bench.version, bench.splits, bench.default_split) == ("gsm-mini", "3", ("test",), "test")
    assert bench.answer_kind is AnswerKind.NUMBER and bench.answers.tolerance == 1e-9
    items = bench.questions(tmp_path / "ignored")
    assert [q.id for q in items] == ["1", "2", "3"]
    assert [q.category for q in items] == ["add", "money", "add"]
    assert all(q.benchmark == "gsm-mini" for q in items)
    assert bench.prompt(items[1]) == f"{GSM[1]['question']}\n\nSolve it step by step; end with 'The answer is N'."
    assert bench.score(items[1], "4 x 1.50 = 6, so the answer is $6.") is True
    assert bench.score(items[2], "The answer is 2,125.") is True
    assert bench.score(items[0], "The answer is 8.") is False
    assert load_benchmark(str(spec)).name == "gsm-mini"  # a path given as text


def test_gzipped_jsonl_splits_with_a_list_of_options(tmp_path):
    rows = [
        {"q": "Capital of France?", "choices": ["Lyon", "Paris", "Nice"], "gold": "Paris"},
        {"q": "Largest planet?", "choices": ["Mars", "Jupiter"], "gold": "b"},
        {"q": "Smallest prime?", "choices": ["2", "3", "5", ""], "gold": "(A)"},
    ]
    (tmp_path / "data").mkdir()
    with gzip.open(tmp_path / "data" / "test.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write("\n".join(json.dumps(r) for r in rows))
    write(tmp_path / "data" / "train.jsonl", json.dumps(rows[0]) + "\n")
    spec = write(
        tmp_path / "quiz.toml",
        """
[benchmark]
name = "quiz"
answer_kind = "letter"
[benchmark.splits]
train = "data/train.jsonl"
test = "data/test.jsonl.gz"
[benchmark.fields]
question = "q"
answer = "gold"
options = "choices"
""",
    )
    bench = load_benchmark(spec)
    assert bench.splits == ("train", "test") and bench.default_split == "test"
    items = bench.questions(tmp_path)
    assert [q.answer for q in items] == ["B", "B", "A"]  # an option's text, a letter, a letter in brackets
    assert items[2].options == ("2", "3", "5")  # an empty last option is dropped
    assert all(q.category == "quiz" for q in items)  # no category field: the benchmark's name
    assert items[0].id.startswith("q-") and len({q.id for q in items}) == 3  # digests of the question
    assert [q.id for q in bench.questions(tmp_path, "train")] == [items[0].id]
    assert "(B) Paris" in bench.prompt(items[0]) and "one of A, B, C" in bench.prompt(items[0])
    assert bench.score(items[0], "The answer is (B).") and not bench.score(items[1], "The answer is (C).")
    with pytest.raises(NotFound, match="unknown quiz split 'dev'; splits: train, test"):
        bench.questions(tmp_path, "dev")


def test_csv_with_option_columns_and_option_numbers(tmp_path):
    write(
        tmp_path / "med.csv",
        "id,question,opa,opb,opc,opd,cop,subject\n"
        'm1,"Which vitamin, when lacking, causes scurvy?",A,B,C,D,3,nutrition\n'
        "m2,Which organ makes insulin?,Liver,Pancreas,Kidney,,2,endocrine\n",
    )
    spec = write(
        tmp_path / "med.toml",
        """
[benchmark]
name = "med"
answer_kind = "letter"
data = "med.csv"
index_base = 1
prompt = "[{category}] {question}\\n{options}\\nReply with one of {letters}."
[benchmark.fields]
id = "id"
question = "question"
answer = "cop"
category = "subject"
options = ["opa", "opb", "opc", "opd"]
""",
    )
    bench = load_spec(spec)
    first, second = bench.questions(tmp_path)
    assert (first.id, first.answer, first.options) == ("m1", "C", ("A", "B", "C", "D"))
    assert (second.answer, second.options) == ("B", ("Liver", "Pancreas", "Kidney"))
    assert bench.prompt(second) == (
        "[endocrine] Which organ makes insulin?\n(A) Liver\n(B) Pancreas\n(C) Kidney\nReply with one of A, B, C."
    )


@pytest.mark.parametrize("kind", ["integer", "math", "text"])
def test_default_prompts_per_kind(tmp_path, kind):
    write(tmp_path / "d.jsonl", json.dumps({"q": "What is {1+1}?", "a": "2"}))
    spec = write(
        tmp_path / "s.toml",
        f'[benchmark]\nname = "k"\nanswer_kind = "{kind}"\ndata = "d.jsonl"\n[benchmark.fields]\nquestion = "q"\n'
        'answer = "a"\n',
    )
    bench = load_benchmark(spec)
    (item,) = bench.questions(tmp_path)
    assert bench.prompt(item).startswith("What is {1+1}?\n\n")  # braces in the data are text, never a template
    assert bench.answer_format


def test_literal_braces_in_a_template_are_doubled(tmp_path):
    """As the README says: the template is a format string, so a literal brace is written twice,
    in a TOML literal string ('...') as in a basic one ("...", where backslashes escape)."""
    write(tmp_path / "d.jsonl", json.dumps({"q": "What is {1+1}?", "a": "2"}))
    spec = tmp_path / "s.toml"
    head = '[benchmark]\nname = "k"\nanswer_kind = "math"\ndata = "d.jsonl"\n'
    fields = '[benchmark.fields]\nquestion = "q"\nanswer = "a"\n'
    literal = r"""prompt = 'Reply with {{"answer": ...}}. {question} Put it in \boxed{{}}.'"""
    basic = r"""prompt = "Reply with {{\"answer\": ...}}. {question} Put it in \\boxed{{}}." """
    for prompt in (literal, basic):
        bench = load_benchmark(write(spec, head + prompt + "\n" + fields))
        (item,) = bench.questions(tmp_path)
        assert bench.prompt(item) == r'Reply with {"answer": ...}. What is {1+1}? Put it in \boxed{}.', prompt
    for single in (r"prompt = '{question} in \boxed{}'", "prompt = '{question} with a } alone'"):
        with pytest.raises(errors.ConfigError, match=r"benchmark\.prompt: .*\(write literal braces as \{\{ and \}\}\)"):
            load_benchmark(write(spec, head + single + "\n" + fields))


def test_missing_spec_file(tmp_path):
    with pytest.raises(NotFound, match="benchmark spec .*nope.toml does not exist"):
        load_benchmark(tmp_path / "nope.toml")


def test_unknown_builtin_name_suggests():
    with pytest.raises(NotFound, match=r"unknown benchmark 'mmlu-pro'; did you mean 'mmlu_pro'\?.*spec file"):
        load_benchmark("mmlu-pro")
    assert load_benchmark("aime").name == "aime"


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
def test_broken_spec(tmp_path, case):
    spec = write(tmp_path / "bench.toml", case["spec"])
    if "data" in case:
        write(tmp_path / case["data_name"], case["data"])
    with pytest.raises(getattr(errors, case["error"])) as caught:
        bench = load_benchmark(spec)
        assert case.get("when") == "questions", "the spec loaded but should not have"
        bench.questions(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    for name in case["names"]:
        assert name in message


def test_registered_benchmarks_are_known_by_name_only(tmp_path):
    from eval import named_benchmark, registered_benchmarks
    from tests import userbench

    spec = userbench.write_benchmark(tmp_path / "arith", 4)
    known = registered_benchmarks([spec])
    assert named_benchmark("arith", known).name == "arith" and named_benchmark("gpqa", known).name == "gpqa"
    for given in (str(spec), "arith.toml", "/etc/passwd", str(tmp_path)):
        with pytest.raises(NotFound, match="the benchmarks known here are aime, arith, gpqa") as caught:
            named_benchmark(given, known)
        assert "TOML" not in str(caught.value) and "folder" not in str(caught.value)
    with pytest.raises(NotFound, match=r"\(did you mean 'arith'\?\)"):
        named_benchmark("arit", known)
    with pytest.raises(errors.ConfigError, match="the name 'arith' is taken"):
        registered_benchmarks([spec, spec])
    clash = write(tmp_path / "arith" / "gpqa.toml", spec.read_text().replace('name = "arith"', 'name = "gpqa"'))
    with pytest.raises(errors.ConfigError, match="'gpqa' is a built-in benchmark"):
        registered_benchmarks([clash])
