"""An oracle generator for the documents path: a chat-completions server that writes only true
pairs about the biography in the passage (the person whose name opens it), one per request:
at the i-th temperature of the nine-step schedule the i-th field (mod 6), and for the reverse
style the data's reverse question. The first request ever fails with HTTP 500 (the client retries)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from engram_data.contract import FIELDS, read_jsonl
from engram_data.documents.qa import temperature_schedule
from engram_data.render import QUESTIONS  # the data's own forward questions

SCHEDULE = temperature_schedule(9)  # --temperatures 9; --temperatures 3 asks at three of them
assert set(temperature_schedule(3)) <= set(SCHEDULE)


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet HTTP handler that answers JSON."""

    def _send(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chat(self, body: dict, content: str):
        """A chat completion of ``content``: JSON, or server-sent events in two pieces where
        the request streams (as the documents pipeline's client asks)."""
        if not body.get("stream"):
            return self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})
        half = len(content) // 2
        events = [
            {
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": content[:half]}, "finish_reason": None}
                ]
            },
            {"choices": [{"index": 0, "delta": {"content": content[half:]}, "finish_reason": "stop"}]},
        ]
        data = "".join(
            f"data: {json.dumps({'id': 'c', 'object': 'chat.completion.chunk', 'created': 0, 'model': 'stub', **e})}\n\n"
            for e in events
        )
        data = (data + "data: [DONE]\n\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class OracleChat(JsonHandler):
    people_file: Path | None = None  # read at the first request: a study writes its people first
    people: dict[str, dict] = {}
    calls = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        OracleChat.calls += 1
        if OracleChat.calls == 1:
            return self._send(500, {"error": "warming up"})
        if not OracleChat.people:
            OracleChat.people = {p["name"]: p for p in read_jsonl(OracleChat.people_file)}
        prompt, t = body["messages"][-1]["content"], body["temperature"]
        passage = prompt.split("):\n", 1)[1]
        p = next(p for name, p in OracleChat.people.items() if passage.startswith(name))
        if "reverse direction" in prompt:
            pair = {"question": f"Who was born on {p['birth_date']} in {p['birth_city']}?", "answer": p["name"]}
        else:
            field = FIELDS[SCHEDULE.index(t) % len(FIELDS)]  # 9 temperatures: every field; 3: three
            pair = {"question": QUESTIONS[field].format(name=p["name"]), "answer": p[field]}
        self._chat(body, json.dumps([pair]))


@contextmanager
def oracle_server(people_file: Path, first: int | None = None) -> Iterator[str]:
    """The oracle on a free local port (its ``/v1`` URL), for the people in ``people_file``
    (the first ``first`` of them)."""
    OracleChat.people_file, OracleChat.calls = people_file, 0
    OracleChat.people = {p["name"]: p for p in read_jsonl(people_file)[:first]} if people_file.exists() else {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), OracleChat)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
