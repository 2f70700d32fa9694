"""An OpenAI-compatible endpoint for the arithmetic benchmark's experts (``userbench``), run as
a real HTTP server in its own process by the tests:

    python tests/answer_server.py PORT LOG [DELAY_S]

It answers ``/v1/models`` and ``/v1/chat/completions`` as each expert of ``userbench`` would
(the seed of a request picks the guesser's luck), sleeps ``DELAY_S`` per answer, and appends
one JSON line per answer served to LOG (model, question id, seed), flushed at once, so a test
can count what was generated.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from userbench import EXPERTS, answer_text, questions  # noqa: E402

ROWS = questions(200)


def serve(port: int, log_path: Path, delay: float) -> None:
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
                self._reply(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in EXPERTS]})
            else:
                self._reply(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            prompt = body["messages"][-1]["content"]
            row = next((r for r in ROWS if r["problem"] in prompt), None)
            if row is None or body.get("model") not in EXPERTS:
                self._reply(400, {"error": {"message": "unknown question or model"}})
                return
            seed = int(body.get("seed") or 0)
            time.sleep(delay)
            text = answer_text(body["model"], row, seed)
            with lock, log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"model": body["model"], "question_id": row["qid"], "seed": seed}) + "\n")
            self._reply(
                200,
                {
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())},
                },
            )

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
