"""`dsft eval --endpoint URL`: score any OpenAI-compatible chat endpoint with exactly the metrics
of in-process evaluation. Each example's prompt (the conversation before its first trained
assistant turn, with its tools) is sent to `{URL}/v1/chat/completions` greedily (temperature 0);
the returned message is scored as `dsft eval score` scores a prediction."""

from __future__ import annotations

import json
import os

from dsft.data.conversation import Conversation
from dsft.errors import UserError
from dsft.eval.score import prediction_calls
from dsft.eval.tooluse import Scores, cases


def served_model(listing: dict | None, asked: str | None, url: str) -> str:
    """The `model` to send: the one asked for, else the server's only model (from /v1/models);
    a server that lists none (or has no /v1/models) gets "default"."""
    ids = [m.get("id") for m in (listing or {}).get("data") or [] if isinstance(m, dict) and m.get("id")]
    if asked:
        if ids and asked not in ids and not any(asked in (m.get("aliases") or []) for m in listing["data"]):
            raise UserError(f"{url} does not serve {asked!r}; it serves {', '.join(ids)}",
                            "pass one of those to --served-model")
        return asked
    if len(ids) > 1:
        raise UserError(f"{url} serves {len(ids)} models ({', '.join(ids)})", "say which with --served-model NAME")
    return ids[0] if ids else "default"


def evaluate_endpoint(url: str, convs: list[Conversation], model: str | None = None, max_new_tokens: int | None = None,
                      limit: int | None = None, timeout: float = 120.0) -> Scores:
    """`model` None: the server's only model (see `served_model`)."""
    import httpx

    headers = {"Authorization": f"Bearer {os.environ['DSFT_API_KEY']}"} if os.environ.get("DSFT_API_KEY") else {}
    chosen = cases(convs)[:limit] if limit else cases(convs)
    scores = Scores()
    url = url.rstrip("/").removesuffix("/v1")  # the OpenAI client's base_url, or the server's root
    fix = "check the URL, that the server is up, and DSFT_API_KEY"
    with httpx.Client(base_url=url, timeout=timeout, headers=headers) as client:
        try:
            listed = client.get("/v1/models")
        except httpx.HTTPError as e:
            raise UserError(f"endpoint {url} failed: {type(e).__name__}: {e}", fix) from None
        if listed.status_code in (401, 403):
            raise UserError(f"endpoint {url} refused the API key (HTTP {listed.status_code})",
                            "set DSFT_API_KEY to the server's key")
        try:
            listing = listed.json() if listed.status_code == 200 else None
        except ValueError:
            listing = None
        model = served_model(listing, model, url)
        for case in chosen:
            body = case.prompt.to_openai()
            request = {"model": model, "messages": body["messages"], "temperature": 0, "max_tokens": max_new_tokens or 256}
            if "tools" in body:
                request["tools"] = body["tools"]
            try:
                response = client.post("/v1/chat/completions", json=request)
                response.raise_for_status()
                message = response.json()["choices"][0]["message"]
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
                raise UserError(f"endpoint {url} failed for model {model!r}: {type(e).__name__}: {e}", fix) from None
            calls, ok, content, names = prediction_calls(message)
            scores.add(case, calls, ok, content, json.dumps(message, sort_keys=True), names=names)
    return scores
