"""Getting a trained model out: merged safetensors in the HF layout, GGUF (+ an Ollama Modelfile).
Rollout (deployments) lives in dsft.registry.rollout, A/B tests in dsft.registry.abtest."""
