"""Everything that happens to training data before a tokenizer sees it.

raw files --sources--> records --layouts--> Conversation --checks/quality--> findings, scores
--dedup/split--> a prepared, content-hashed dataset (see `prepare`).
"""

from dsft.data.conversation import Conversation, Message, Tool, ToolCall

__all__ = ["Conversation", "Message", "Tool", "ToolCall"]
