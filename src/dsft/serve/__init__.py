"""Serving: registered models behind an OpenAI-compatible endpoint (`dsft serve`).

backend   the Protocol every backend implements, and the request/result types
hf        transformers + peft: several adapters over one base in memory, a queue, batches
vllm      `vllm serve` with --enable-lora, dsft's gateway in front (GPU machines)
openai    OpenAI chat-completions <-> dsft's Conversation, renderer and tool-call parser
router    which model version answers a request: deployments, canaries, A/B variants
metrics   Prometheus counters and histograms, labelled by model version and variant
app       the FastAPI gateway: /v1/models, /v1/chat/completions, /health, /ready, /metrics
"""
