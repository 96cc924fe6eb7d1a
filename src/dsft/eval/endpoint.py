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


def evaluate_endpoint(url: str, convs: list[Conversation], model: str = "default", max_new_tokens: int | None = None,
                      limit: int | None = None, timeout: float = 120.0) -> Scores:
    import httpx

    headers = {"Authorization": f"Bearer {os.environ['DSFT_API_KEY']}"} if os.environ.get("DSFT_API_KEY") else {}
    chosen = cases(convs)[:limit] if limit else cases(convs)
    scores = Scores()
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers) as client:
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
                raise UserError(f"endpoint {url} failed: {type(e).__name__}: {e}",
                                "check the URL, that the server is up, and DSFT_API_KEY") from None
            calls, ok, content = prediction_calls(message)
            scores.add(case, calls, ok, content, json.dumps(message, sort_keys=True))
    return scores
