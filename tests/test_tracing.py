"""OpenTelemetry: one request through ``coe serve`` (a real uvicorn server, fake engines) is one
trace, recorded by the SDK's in-memory exporter: the request's server span, its wait in the
queue, the batch, and the pipeline's stages (route, plan, the run's phases, each model's load
and batch, the aggregation or its skip) with the pool, policy, model and token counts as
attributes; the trace id is in the ``traceresponse`` header and in the answer's trace. A
caller's ``traceparent`` is continued; requests answered in one batch are linked to it; the
SDK's answers join the caller's trace. While nothing traces there are no spans, no header and
no trace id. ``configure()`` follows the ``OTEL_*`` variables, and a real OTLP/HTTP export
reaches a receiver."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from batching import FakeEngine
from common import tracing
from common.errors import ConfigError
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT
from orchestrator.service import ServiceSettings, create_app
from orchestrator.service.state import Service
from tests.live_server import serving

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.provide(provider)
    try:
        yield exporter
    finally:
        tracing.provide(None)
        provider.shutdown()


def core_settings(tmp_path):
    pool = PROJECT_ROOT / "pools" / "default"
    return load_settings(pool=pool, runs_dir=tmp_path / "runs", memory_budget_mb=20_000, policy="all", cache="off")


def service_app(tmp_path, answer=None, **service):
    core = core_settings(tmp_path)

    def engines(spec, cpus=None):
        return FakeEngine(spec) if answer is None else FakeEngine(spec, answer=answer)

    settings = ServiceSettings(core=core, **service)
    return create_app(settings, service=Service(settings, Orchestrator(core, engine_factory=engines)))


def children(found: list[ReadableSpan], parent: ReadableSpan, name: str | None = None) -> list[ReadableSpan]:
    return [
        s
        for s in found
        if s.parent is not None and s.parent.span_id == parent.context.span_id and name in (None, s.name)
    ]


def one(found: list[ReadableSpan], parent: ReadableSpan, name: str) -> ReadableSpan:
    matches = children(found, parent, name)
    assert len(matches) == 1, (name, [s.name for s in children(found, parent)])
    return matches[0]


def test_one_request_is_one_trace_of_its_stages(tmp_path, spans):
    with serving(service_app(tmp_path)) as url:
        reply = httpx.post(f"{url}/v1/answer", json={"question": "Is water wet?", "k": 2}, timeout=30)
    assert reply.status_code == 200, reply.text
    version, trace_id, span_id, flags = reply.headers["traceresponse"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert reply.json()["trace"]["trace_id"] == trace_id

    found = list(spans.get_finished_spans())
    assert {f"{s.context.trace_id:032x}" for s in found} == {trace_id}  # one trace
    (request,) = [s for s in found if s.parent is None]
    assert request.name == "POST /v1/answer" and f"{request.context.span_id:016x}" == span_id
    assert request.attributes["http.route"] == "/v1/answer"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["coe.pool"] == "default" and request.attributes["coe.policy"] == "all"
    assert sorted(s.name for s in children(found, request)) == ["coe.batch", "coe.queue"]
    batch = one(found, request, "coe.batch")
    assert batch.attributes["coe.questions"] == 1 and batch.attributes["coe.requests"] == 1

    pipeline = one(found, batch, "coe.pipeline")
    assert pipeline.attributes["coe.pool"] == "default" and pipeline.attributes["coe.aggregation"] == "synthesis"
    assert [s.name for s in sorted(children(found, pipeline), key=lambda s: s.start_time)] == [
        "coe.route",
        "coe.plan",
        "coe.run",
        "coe.aggregate",
    ]
    route = one(found, pipeline, "coe.route")
    assert sorted(route.attributes["coe.experts"]) == ["gemma3", "smollm2"]
    plan = one(found, pipeline, "coe.plan")
    assert plan.attributes["coe.tasks"] == 3 and plan.attributes["coe.loads_planned"] == 2
    phase = one(found, one(found, pipeline, "coe.run"), "coe.phase")
    loads = children(found, phase, "coe.load")
    assert sorted(s.attributes["coe.model"] for s in loads) == ["gemma3", "smollm2"]
    assert {s.attributes["coe.load"] for s in loads} == {"warm"}  # the service loaded them as it started
    batches = {(s.attributes["coe.model"], s.attributes["coe.role"]): s for s in children(found, phase, "coe.generate")}
    assert set(batches) == {("gemma3", "expert"), ("smollm2", "expert"), ("smollm2", "aggregator")}
    expert_tokens = {e["expert"]: e["tokens_out"] for e in reply.json()["trace"]["experts"]}
    for (model, role), made in batches.items():
        assert made.attributes["coe.requests"] == 1 and made.attributes["coe.failed"] == 0
        assert made.attributes["gen_ai.usage.input_tokens"] > 0
        if role == "expert":
            assert made.attributes["gen_ai.usage.output_tokens"] == expert_tokens[model]
    aggregated = one(found, pipeline, "coe.aggregate")
    assert aggregated.attributes["coe.aggregations.called"] == 1


def test_the_callers_trace_is_continued(tmp_path, spans):
    with serving(service_app(tmp_path)) as url:
        header = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
        reply = httpx.post(f"{url}/v1/chat/completions", json=_chat("Is ice cold?"), headers=header, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["traceresponse"].split("-")[1] == TRACE
    assert reply.json()["trace"]["trace_id"] == TRACE
    (request,) = [s for s in spans.get_finished_spans() if s.name == "POST /v1/chat/completions"]
    assert request.parent is not None and f"{request.parent.span_id:016x}" == PARENT


def test_requests_answered_in_one_batch_are_linked(tmp_path, spans):
    async def two(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            asked = [client.post("/v1/answer", json={"question": q}) for q in ("Is a whale a fish?", "Is 91 prime?")]
            return await asyncio.gather(*asked)

    with serving(service_app(tmp_path, gather_ms=1_000)) as url:
        replies = asyncio.run(two(url))
    assert [r.status_code for r in replies] == [200, 200]
    ids = [r.json()["trace"]["trace_id"] for r in replies]
    assert ids == [r.headers["traceresponse"].split("-")[1] for r in replies] and ids[0] != ids[1]
    found = list(spans.get_finished_spans())
    (batch,) = [s for s in found if s.name == "coe.batch"]
    assert batch.attributes["coe.requests"] == 2
    requests = {f"{s.context.trace_id:032x}": s for s in found if s.name == "POST /v1/answer"}
    mine = f"{batch.context.trace_id:032x}"
    other = requests[next(i for i in ids if i != mine)]
    assert batch.parent is not None and batch.parent.span_id == requests[mine].context.span_id
    assert [link.context.span_id for link in batch.links] == [other.context.span_id]
    assert [link.context.span_id for link in other.links] == [batch.context.span_id]
    assert len(children(found, other, "coe.queue")) == 1  # its wait is in its own trace


def test_a_skipped_aggregation_is_a_skip_span(tmp_path, spans):
    with serving(service_app(tmp_path, answer=lambda spec, request: "The answer is (A)")) as url:
        body = {"question": "Which one?", "options": ["this", "that"]}
        reply = httpx.post(f"{url}/v1/answer", json=body, timeout=30)
    assert reply.status_code == 200 and reply.json()["trace"]["aggregation"]["skipped"]
    (skip,) = [s for s in spans.get_finished_spans() if s.name == "coe.skip"]
    assert skip.attributes["coe.aggregations.skipped"] == 1
    roles = [s.attributes["coe.role"] for s in spans.get_finished_spans() if s.name == "coe.generate"]
    assert sorted(roles) == ["expert", "expert"]  # the aggregator was not called


def test_an_answer_the_semantic_cache_reuses_is_given_in_its_own_requests_trace(tmp_path, spans):
    from orchestrator.pools.settings import SemanticCacheSettings

    asked = "A farmer has 12 apples and sells 5 of them. How many apples does the farmer have left?"
    again = "A farmer has 12 apples and sells 5 of them. How many apples does he have left?"
    with serving(service_app(tmp_path, semantic_cache=SemanticCacheSettings(enabled=True))) as url:
        first, second = (httpx.post(f"{url}/v1/answer", json={"question": q}, timeout=60) for q in (asked, again))
    assert second.json()["trace"]["semantic_cache"]["outcome"] == "hit"
    ids = [reply.headers["traceresponse"].split("-")[1] for reply in (first, second)]
    assert ids[0] != ids[1] and [r.json()["trace"]["trace_id"] for r in (first, second)] == ids
    assert not [
        s for s in spans.get_finished_spans() if s.name == "coe.queue" and f"{s.context.trace_id:032x}" == ids[1]
    ]


def test_sdk_answers_join_the_callers_trace(tmp_path, spans):
    with Orchestrator(core_settings(tmp_path), engine_factory=lambda spec, cpus=None: FakeEngine(spec)) as coe:
        with tracing.tracer().start_as_current_span("my work") as mine:  # type: ignore[union-attr]
            answer = coe.answer("Is a tomato a fruit?")
    assert answer.trace.trace_id == f"{mine.get_span_context().trace_id:032x}"
    (pipeline,) = [s for s in spans.get_finished_spans() if s.name == "coe.pipeline"]
    assert pipeline.parent is not None and pipeline.parent.span_id == mine.get_span_context().span_id
    loads = [s for s in spans.get_finished_spans() if s.name == "coe.load"]
    assert sorted((s.attributes["coe.model"], s.attributes["coe.load"]) for s in loads) == [
        ("gemma3", "loaded"),
        ("smollm2", "loaded"),
    ]


def test_nothing_traces_without_a_provider(tmp_path):
    exporter = InMemorySpanExporter()
    TracerProvider().add_span_processor(SimpleSpanProcessor(exporter))  # made, never provided
    assert tracing.tracer() is None
    with serving(service_app(tmp_path)) as url:
        reply = httpx.post(f"{url}/v1/answer", json={"question": "Is water wet?"}, timeout=30)
    assert reply.status_code == 200 and "traceresponse" not in reply.headers
    assert reply.json()["trace"]["trace_id"] is None
    assert not exporter.get_finished_spans()


@pytest.mark.parametrize(
    ("environ", "installed"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ],
)
def test_configure_installs_nothing_unless_asked(environ, installed):
    assert tracing.configure(environ) is installed
    assert tracing.tracer() is None


def test_configure_refuses_unknown_exporters_and_protocols():
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER: unknown exporter 'jaeger'"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert tracing.tracer() is None


_EXPORT_SCRIPT = """
from batching import FakeEngine
from common import tracing
from orchestrator import Orchestrator, load_settings
from orchestrator.pools.settings import PROJECT_ROOT

assert tracing.configure()
core = load_settings(pool=PROJECT_ROOT / "pools" / "default", memory_budget_mb=20_000, policy="all", cache="off")
with Orchestrator(core, engine_factory=lambda spec, cpus=None: FakeEngine(spec)) as coe:
    print(coe.answer("Is a whale a fish?").trace.trace_id)
"""


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the handler's interface
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_export_reaches_a_collector(tmp_path):
    """A process configured only by the standard variables exports its spans over OTLP/HTTP
    (protobuf) when it exits: what a collector would receive, decoded."""
    collector = HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_port}",
        COE_RUNS_DIR=str(tmp_path / "runs"),
        PYTHONPATH=str(PROJECT_ROOT),
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", _EXPORT_SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
    finally:
        collector.shutdown()
        collector.server_close()
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.split()[-1]
    assert [path for path, _ in _Collector.received] and {p for p, _ in _Collector.received} == {"/v1/traces"}
    names, services, traces = [], set(), set()
    for _, body in _Collector.received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            services |= {a.value.string_value for a in resource.resource.attributes if a.key == "service.name"}
            for scope in resource.scope_spans:
                assert scope.scope.name == tracing.NAME
                names += [s.name for s in scope.spans]
                traces |= {s.trace_id.hex() for s in scope.spans}
    assert services == {"symbolic-coe"} and traces == {trace_id}
    assert {"coe.pipeline", "coe.route", "coe.plan", "coe.run", "coe.load", "coe.generate", "coe.aggregate"} <= set(
        names
    )


def _chat(question: str) -> dict[str, object]:
    return {"model": "default", "messages": [{"role": "user", "content": question}]}


def test_a_bad_exporter_is_one_line_from_the_cli(monkeypatch, capsys):
    from orchestrator.cli.main import main

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "coe: error: OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'; known here: otlp, console, none\n"
    )
