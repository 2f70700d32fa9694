"""An OpenAI-compatible endpoint for the arithmetic benchmark's experts (``userbench``), run as
a real HTTP server by the tests, in its own process or (``make_server``) in a thread:

    python tests/answer_server.py PORT LOG [DELAY_S [CHUNK_DELAY_S]]

It answers ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions`` as each expert of
``userbench`` would (the seed of a request picks the guesser's luck), sleeps ``DELAY_S`` per
answer, and appends one JSON line per answer served to LOG (model, question id, seed), flushed
at once, so a test can count what was generated.

With ``"stream": true`` it sends the answer word by word as server-sent events in OpenAI's chunk
format, ``CHUNK_DELAY_S`` apart, then (with ``stream_options.include_usage``) a chunk holding
the usage, then ``data: [DONE]``. Two more models fail mid-stream, after their first words:
``broken`` sends an error event, ``hangup`` closes the connection (unstreamed, they answer as
``adder`` does).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from userbench import EXPERTS, answer_text, questions  # noqa: E402

ROWS = questions(200)
FAULTY = ("broken", "hangup")
MODELS = (*EXPERTS, *FAULTY)
_WORD = re.compile(r"\s*\S+\s*")


def make_server(port: int, log_path: Path, delay: float = 0.0, chunk_delay: float = 0.0) -> ThreadingHTTPServer:
    """The server, bound to 127.0.0.1:``port`` (0: any free port), not yet serving."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            if self.path.rstrip("/") == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
            else:
                self._reply(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            chat = self.path.rstrip("/") == "/v1/chat/completions"
            if not chat and self.path.rstrip("/") != "/v1/completions":
                self._reply(404, {"error": {"message": "not found"}})
                return
            prompt = body["messages"][-1]["content"] if chat else body["prompt"]
            row = next((r for r in ROWS if r["problem"] in prompt), None)
            model = body.get("model")
            if row is None or model not in MODELS:
                self._reply(400, {"error": {"message": "unknown question or model"}})
                return
            seed = int(body.get("seed") or 0)
            time.sleep(delay)
            text = answer_text("adder" if model in FAULTY else model, row, seed)
            with lock, log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"model": model, "question_id": row["qid"], "seed": seed}) + "\n")
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
            if body.get("stream"):
                with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(model, chat, text, usage if with_usage else None)
                return
            choice = {"index": 0, "finish_reason": "stop"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            self._reply(200, {"choices": [choice], "usage": usage})

        def _stream(self, model: str, chat: bool, text: str, usage: dict | None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            words = _WORD.findall(text)
            if chat:
                self._event({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
            for n, word in enumerate(words):
                if model in FAULTY and n == 3:
                    if model == "broken":
                        self._event({"error": {"message": "the model ran out of memory", "code": 500}})
                        self.wfile.write(b"data: [DONE]\n\n")
                    return  # hangup: closes the connection mid-answer
                last = n == len(words) - 1
                piece = {"delta": {"content": word}} if chat else {"text": word}
                self._event({"choices": [{"index": 0, **piece, "finish_reason": "stop" if last else None}]})
                time.sleep(chunk_delay)
            if usage is not None:
                self._event({"choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")

        def _event(self, chunk: dict) -> None:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def serve(port: int, log_path: Path, delay: float, chunk_delay: float = 0.0) -> None:
    make_server(port, log_path, delay, chunk_delay).serve_forever()


if __name__ == "__main__":
    serve(
        int(sys.argv[1]),
        Path(sys.argv[2]),
        float(sys.argv[3]) if len(sys.argv) > 3 else 0.0,
        float(sys.argv[4]) if len(sys.argv) > 4 else 0.0,
    )
