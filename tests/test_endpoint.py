"""`dsft eval --endpoint` against a small OpenAI-compatible test server wrapping the tiny model
(until issue 6's server exists): the same numbers as in-process evaluation."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from conftest import run_dsft


@pytest.fixture
def server(tiny_model):
    from dsft.chat.parse import parse_assistant
    from dsft.chat.render import render_prompt
    from dsft.data.pipeline import to_conversation
    from dsft.eval.tooluse import generate, load_for_eval

    model, tok = load_for_eval(str(tiny_model))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

        def _send(self, status, payload):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(payload).encode())

        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["model"] != "tiny":  # as dsft serve answers a model it does not serve
                return self._send(404, {"error": {"message": f"the model {body['model']!r} does not exist here"}})
            conv = to_conversation({"messages": body["messages"], "tools": body.get("tools")}, prompt=True)
            with lock:
                text = generate(model, tok, [render_prompt(conv, tok)], body["max_tokens"])[0]
            parsed = parse_assistant(text)
            message = {"role": "assistant", "content": parsed.content if parsed.ok else text}
            if parsed.ok and parsed.tool_calls:
                message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                    "name": c.name, "arguments": json.dumps(c.arguments)}} for c in parsed.tool_calls]
            out = json.dumps({"choices": [{"index": 0, "message": message}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.mark.slow
def test_endpoint_scores_like_in_process(tmp_path, tiny_model, server):
    run_dsft("data", "generate", "-n", "8", "--seed", "14", "--out", tmp_path / "d.jsonl", check=0)
    common = ["--data", tmp_path / "d.jsonl", "--max-new-tokens", "24", "--batch-size", "1", "--json"]
    # --no-constrain: this test server decodes freely (dsft serve's grammar is tested in test_serve.py)
    local = json.loads(run_dsft("eval", "--model", tiny_model, *common, "--no-constrain", check=0).stdout)
    remote = json.loads(run_dsft("eval", "--endpoint", server, *common, check=0).stdout)
    local.pop("perplexity")
    for key in ("n", "parse_rate", "tool_name_accuracy", "tool_args_exact_match", "arg_f1", "by_category"):
        assert remote[key] == local[key], key
    proc = run_dsft("eval", "--endpoint", "http://127.0.0.1:9", "--data", tmp_path / "d.jsonl", check=2)
    assert "endpoint" in proc.stderr and "fix:" in proc.stderr


@pytest.mark.parametrize("listing, asked, sent", [
    ({"data": [{"id": "full8", "aliases": ["prod"]}]}, None, "full8"),  # the server's only model
    ({"data": [{"id": "full8", "aliases": ["prod"]}]}, "prod", "prod"),  # an alias it answers to
    ({"data": [{"id": "a"}, {"id": "b"}]}, "b", "b"),
    (None, None, "default"),  # no /v1/models: a server that ignores `model`
    (None, "mine", "mine"),
    ({"data": [{"id": "a"}, {"id": "b"}]}, None, "serves 2 models (a, b)"),
    ({"data": [{"id": "a"}]}, "nope", "does not serve 'nope'"),
])
def test_eval_endpoint_requests_the_served_model(listing, asked, sent):
    from dsft.errors import UserError
    from dsft.eval.endpoint import served_model

    try:
        assert served_model(listing, asked, "http://h") == sent
    except UserError as e:
        assert sent in e.message and "--served-model" in e.fix


@pytest.mark.parametrize("message, calls, ok, names", [
    ({"content": "Hello there."}, 0, True, []),
    ({"content": None, "tool_calls": [{"id": "a", "type": "function",
                                       "function": {"name": "f", "arguments": "{\"x\": 1}"}}]}, 1, True, ["f"]),
    ({"content": None, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{x"}}]},
     0, False, ["f"]),
    # a call the server could not parse comes back as content: broken, as in-process scoring says
    ({"content": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"x\": "}, 0, False, ["f"]),
    ({"content": "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">"}, 0, False, ["f"]),
    ({"content": "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": "}, 0, False, ["f"]),  # ChatML
    ({"content": "{\"name\": \"f\", \"parameters\": {\"x\": "}, 0, False, ["f"]),  # Llama 3: a JSON call opens the turn
    ({"content": 'The record is {"name": "Ada", "born": 1815}.'}, 0, True, []),  # elsewhere JSON is just text
])
def test_a_served_reply_is_read_as_the_in_process_parse_would(message, calls, ok, names):
    from dsft.eval.score import prediction_calls

    got = prediction_calls({"choices": [{"message": message}]})
    assert (len(got.calls), got.parsed, got.names) == (calls, ok, names)
