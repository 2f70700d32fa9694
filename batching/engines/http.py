"""Any OpenAI-compatible server (``vllm serve``, a hosted API) as an engine, over httpx.

Chat experts call ``POST /chat/completions``, completion experts ``POST /completions``.
Connection errors, 5xx and 429 are retried with exponential backoff; a request that still
fails comes back as a ``Generation`` with ``error`` set, and a batch in which every request
failed to reach the server raises ``EndpointError`` (the engine itself is down).

Asked for deltas, it asks the server to stream (``"stream": true`` with usage in the last
chunk) and reads the server-sent events as they come. A streamed request is retried only
until the server accepts it: once text has been handed out, a failure (an error event, a
dropped connection, a stream that ends unfinished) fails that request.

A request that asks for log-probabilities (``Request.logprobs``) sends ``"logprobs": true`` to
chat completions (``0``, the sampled token's only, to completions) and gets the mean of the
per-token values the reply or its chunks carry; a server that sends none gives None.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from batching.engines.base import DeltaCallback, ResultCallback, chat_messages, completion_prompt, mean_logprob
from batching.engines.http_replies import (
    StreamFailed,
    announce,
    chunks,
    describe,
    error_text,
    json_body,
    preview,
    read_chunk,
    token_logprobs,
)
from batching.spec import ExpertSpec, HTTPSource
from common.errors import EndpointError, EngineError
from common.requests import Generation, Request

__all__ = ["HTTPEngine"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# failures before the server saw the request, or a dropped connection: safe to send again
_RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)


class _Unreachable(Exception):
    """Every attempt failed before the server answered."""


class HTTPEngine:
    """Serves one ``ExpertSpec`` with an ``http`` source."""

    def __init__(
        self,
        spec: ExpertSpec,
        *,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(spec.source, HTTPSource):
            raise EndpointError(f"expert {spec.name!r} is not an http source (kind={spec.source.kind!r})")
        self.spec = spec
        self.source: HTTPSource = spec.source
        self.base_url = self.source.base_url.rstrip("/")
        self._transport = transport
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._client: httpx.Client | None = None
        self.served_models: list[str] = []

    @property
    def loaded(self) -> bool:
        return self._client is not None

    def footprint_mb(self) -> float | None:
        """The server holds the model, not this process: the declared size, else nothing."""
        return self.spec.memory_mb if self.spec.memory_mb is not None else 0.0

    # -- life cycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Open a client and check that the server answers and serves this model."""
        if self._client is not None:
            return
        client = httpx.Client(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=httpx.Timeout(self.source.timeout_s, connect=min(10.0, self.source.timeout_s)),
            limits=httpx.Limits(max_connections=self.source.concurrency),
            transport=self._transport,
        )
        try:
            self.served_models = self._check_models(client)
        except BaseException:
            client.close()
            raise
        self._client = client
        logger.info("connected %s to %s (model %s)", self.spec.name, self.base_url, self.source.model)

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            logger.info("disconnected %s from %s", self.spec.name, self.base_url)

    def _headers(self) -> dict[str, str]:
        env = self.source.api_key_env
        if env is None:
            return {}
        key = os.environ.get(env)
        if not key:
            raise EndpointError(f"expert {self.spec.name!r}: environment variable {env} (its api_key_env) is not set")
        return {"Authorization": f"Bearer {key}"}

    def _check_models(self, client: httpx.Client) -> list[str]:
        url = f"{self.base_url}/models"
        try:
            response = self._send(client, "GET", "/models")
        except _Unreachable as exc:
            raise EndpointError(f"cannot reach {url}: {exc}") from exc
        except httpx.HTTPError as exc:  # timeouts, dropped writes: no usable answer
            raise EndpointError(f"cannot reach {url}: {describe(exc)}") from exc
        if response.status_code == 404:
            raise EndpointError(f"{url} answered 404 Not Found: is base_url right? (it usually ends in /v1)")
        if response.status_code in (401, 403):
            hint = f"check {self.source.api_key_env}" if self.source.api_key_env else "set api_key_env"
            raise EndpointError(f"{url} refused access (HTTP {response.status_code}): {hint}")
        if response.status_code != 200:
            raise EndpointError(f"{url} answered HTTP {response.status_code}: {error_text(response)}")
        body = json_body(response, url)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            raise EndpointError(f"{url} answered JSON without a 'data' list of models with ids: {preview(response)}")
        served = [m["id"] for m in data]
        if self.source.model not in served:
            raise EndpointError(
                f"{self.base_url} does not serve model {self.source.model!r}; it serves: {', '.join(served) or 'none'}"
            )
        return served

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> list[Generation]:
        """Send the batch ``concurrency`` requests at a time; ``on_result`` as each answer
        arrives and, with ``on_delta``, the text of each as the server streams it. Both are
        called in this thread. If one raises, requests not yet sent are cancelled, streams
        being read are dropped, and the exception propagates."""
        client = self._client
        if client is None:
            raise EngineError(f"engine {self.spec.name!r} asked to generate before load()")
        if not requests:
            return []
        unreachable: list[str] = []
        events: queue.SimpleQueue[tuple[int, str | None]] = queue.SimpleQueue()  # (index, delta or None: done)
        stop = threading.Event()

        def one(i: int, request: Request) -> Generation:
            try:
                if on_delta is None:
                    return self._generate_one(client, request)
                return self._stream_one(client, request, lambda text: events.put((i, text)), stop)
            except _Unreachable as exc:
                unreachable.append(str(exc))
                return Generation(
                    request_id=request.id, model=self.spec.name, error=f"cannot reach {self.base_url}: {exc}"
                )

        out: list[Generation | None] = [None] * len(requests)
        workers = min(self.source.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"http-{self.spec.name}") as pool:
            futures = [pool.submit(one, i, request) for i, request in enumerate(requests)]
            for i, future in enumerate(futures):
                future.add_done_callback(announce(events, i))  # queued after the request's deltas
            try:
                left = len(requests)
                while left:
                    i, text = events.get()
                    if text is not None:
                        if on_delta is not None:
                            on_delta(i, text)
                        continue
                    left -= 1
                    done = out[i] = futures[i].result()
                    if on_result is not None:
                        on_result(i, done)
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
        if len(unreachable) == len(requests):
            raise EndpointError(f"{self.base_url} unreachable for all {len(requests)} request(s): {unreachable[-1]}")
        return out  # type: ignore[return-value]  # every future filled its slot

    def _generate_one(self, client: httpx.Client, request: Request) -> Generation:
        chat = self.spec.prompt_mode == "chat"
        path = "/chat/completions" if chat else "/completions"
        body = self._body(request, chat)
        started = time.monotonic()

        def failed(reason: str) -> Generation:
            return Generation(
                request_id=request.id, model=self.spec.name, seconds=time.monotonic() - started, error=reason
            )

        try:
            response = self._send(client, "POST", path, json=body)
        except httpx.TimeoutException as exc:
            return failed(f"timed out after {self.source.timeout_s:.0f}s on {path} ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return failed(f"{path} failed: {describe(exc)}")
        if response.status_code != 200:
            return failed(f"{path} answered HTTP {response.status_code}: {error_text(response)}")
        try:
            reply = json_body(response, path)
            choice = reply["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            if not isinstance(text, str):
                raise TypeError(f"text is {type(text).__name__}")
            usage = reply.get("usage") or {}
            tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            logprob = mean_logprob(token_logprobs(choice, chat)) if request.logprobs else None
        except EndpointError as exc:
            return failed(str(exc))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return failed(f"malformed reply from {path} ({type(exc).__name__}: {exc}): {preview(response)}")
        return Generation(
            request_id=request.id,
            model=self.spec.name,
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            seconds=time.monotonic() - started,
            finish_reason=choice.get("finish_reason"),
            logprob=logprob,
        )

    def _stream_one(
        self, client: httpx.Client, request: Request, emit: Callable[[str], None], stop: threading.Event
    ) -> Generation:
        """One request streamed: ``emit`` each piece of text as its chunk arrives; the generation
        holds their concatenation, and the token counts of the usage chunk when the server sent one.
        Stops reading (and fails the request) once ``stop`` is set."""
        chat = self.spec.prompt_mode == "chat"
        path = "/chat/completions" if chat else "/completions"
        body = {**self._body(request, chat), "stream": True, "stream_options": {"include_usage": True}}
        started = time.monotonic()
        parts: list[str] = []
        logprobs: list[float | None] = []  # per token, from the chunks that carry them

        def failed(reason: str) -> Generation:
            return Generation(
                request_id=request.id, model=self.spec.name, seconds=time.monotonic() - started, error=reason
            )

        try:
            response = self._send(client, "POST", path, stream=True, json=body)
            try:
                if response.status_code != 200:
                    response.read()
                    return failed(f"{path} answered HTTP {response.status_code}: {error_text(response)}")
                finish, usage = None, None
                for chunk in chunks(response, path):
                    if stop.is_set():
                        return failed("abandoned: the batch ended before the stream did")
                    if chunk is None:  # [DONE]
                        break
                    text, reason, counts, values = read_chunk(chunk, chat, path)
                    if text:
                        parts.append(text)
                        emit(text)
                    logprobs.extend(values)
                    finish, usage = reason or finish, counts or usage
                else:
                    if finish is None:
                        raise StreamFailed(f"the stream from {path} ended before the answer was finished")
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            return failed(f"timed out after {self.source.timeout_s:.0f}s on {path} ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return failed(f"{path} failed: {describe(exc)}")
        except StreamFailed as exc:
            return failed(str(exc))
        tokens_in, tokens_out = usage or (0, 0)
        return Generation(
            request_id=request.id,
            model=self.spec.name,
            text="".join(parts),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            seconds=time.monotonic() - started,
            finish_reason=finish,
            logprob=mean_logprob(logprobs) if request.logprobs else None,
        )

    def _body(self, request: Request, chat: bool) -> dict[str, Any]:
        sampling = request.sampling(self.spec.sampling)
        body: dict[str, Any] = {
            "model": self.source.model,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty  # a vLLM server extension
        if request.logprobs:
            body["logprobs"] = True if chat else 0  # completions take how many alternatives to add
        if chat:
            body["messages"] = chat_messages(request, self.spec.system_prompt)
            if self.spec.chat_template:
                body["chat_template"] = self.spec.chat_template  # a vLLM server extension
        else:
            body["prompt"] = completion_prompt(request, self.spec.system_prompt)
        return body

    def _send(
        self, client: httpx.Client, method: str, path: str, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request with retries; raises _Unreachable if no attempt got an answer. With
        ``stream`` the body is left unread (the caller closes the response)."""
        attempts = self.source.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                if stream:
                    response = client.send(client.build_request(method, path, **kwargs), stream=True)
                else:
                    response = client.request(method, path, **kwargs)
            except _RETRY_ERRORS as exc:
                if last:
                    raise _Unreachable(describe(exc)) from exc
                logger.debug("%s %s failed (%s); retrying", method, path, exc)
                self._sleep(self._delay(attempt, None))
                continue
            if response.status_code in _RETRY_STATUS and not last:
                response.close()
                logger.debug("%s %s answered %d; retrying", method, path, response.status_code)
                self._sleep(self._delay(attempt, response.headers.get("retry-after")))
                continue
            return response
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self._backoff_s * 2**attempt
        if retry_after is not None:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass  # an HTTP date: keep the exponential delay
        return min(delay, self._max_backoff_s)
