"""The service's redactor: the places it knows by name, anything else that looks like a server
path, a URL or an IP address by a placeholder; words a client needs are left alone."""

from __future__ import annotations

import pytest

from orchestrator.service.redact import ADDRESS, SERVER_PATH, Redactor, path_names, url_names

REDACT = Redactor(
    {
        **path_names([("/srv/coe/data", "data folder"), ("/srv/coe/data/gpqa", "the gpqa folder")]),
        **url_names("redis://:secret@cache.internal:6380/0", "the store"),
    }
)

CASES = [
    (
        "benchmark file /srv/coe/data/mmlu/test.jsonl does not exist",
        "benchmark file <data folder>/mmlu/test.jsonl does not exist",
    ),
    ("/srv/coe/data/gpqa/x.csv:3: no column", "<the gpqa folder>/x.csv:3: no column"),
    ("/srv/coe/data2/x is not the data folder", f"{SERVER_PATH} is not the data folder"),
    (
        "job store redis://***@cache.internal:6380/0 is unreachable: Error 111 connecting to cache.internal:6380.",
        "job store <the store> is unreachable: Error 111 connecting to <the address of the store>.",
    ),
    ("cannot reach http://10.1.2.3:8000/v1/models: refused", f"cannot reach {ADDRESS}: refused"),
    ("Error connecting to 192.168.0.7:6379. Refused", f"Error connecting to {ADDRESS}. Refused"),
    ("unknown benchmark '/etc/passwd'; known: aime", f"unknown benchmark '{SERVER_PATH}'; known: aime"),
    ("spec ~/bench/x.toml is bad", f"spec {SERVER_PATH} is bad"),
    ("run store /tmp/runs/generations.v3.sqlite cannot be read", f"run store {SERVER_PATH} cannot be read"),
]
KEPT = [
    "k must be from 1 to 2",
    "model is POOL or POOL/POLICY; this service serves default, default/topk",
    "command POST /v1/batches (batch_01)",
    "questions[3] is 2399 characters long; the limit is 2000 (max_question_chars)",
    "and/or 1/2 10 / 3",
    "rate limit: 3 requests per minute per key",
]


@pytest.mark.parametrize(("text", "shown"), CASES)
def test_server_places_are_named_or_hidden(text, shown):
    assert REDACT(text) == shown
    assert REDACT(shown) == shown  # redacting twice changes nothing


@pytest.mark.parametrize("text", KEPT)
def test_words_a_client_needs_are_kept(text):
    assert REDACT(text) == text


def test_shown_logs_the_original(caplog):
    caplog.set_level("INFO", logger="orchestrator.service.redact")
    assert REDACT.shown("cannot read /srv/coe/data/x") == "cannot read <data folder>/x"
    assert "cannot read /srv/coe/data/x" in caplog.text
    assert REDACT.shown(None) is None
