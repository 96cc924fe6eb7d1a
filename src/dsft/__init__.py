"""dsft: local finetuning for DeepSeek models, from raw conversations to a served adapter."""

__version__ = "0.1.0"
