"""Incremental detokenization that is exact: the streamed pieces join to tokenizer.decode(all tokens).

mlx-lm's streaming detokenizers drop the first token's leading space, which breaks text completions
("Once upon a time" + " there") and logprob token alignment. This decodes a short sliding window instead,
seeded with the prompt's last tokens so the first generated token keeps its spacing.
"""

from __future__ import annotations

from typing import Any

CONTEXT_TOKENS = 4


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: list[int]) -> None:
        self._decode = tokenizer.decode
        self.ids: list[int] = list(prompt_ids[-CONTEXT_TOKENS:])
        self.prefix = 0
        self.read = len(self.ids)

    def _text(self, start: int, end: int | None = None) -> str:
        return str(self._decode(self.ids[start:end], skip_special_tokens=False))

    def add(self, token: int) -> str:
        """Return the new text this token completes ('' while a multi-byte character is unfinished)."""
        self.ids.append(token)
        before = self._text(self.prefix, self.read)
        after = self._text(self.prefix)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still pending at the end, even an incomplete character."""
        before = self._text(self.prefix, self.read)
        after = self._text(self.prefix)
        self.prefix = self.read = len(self.ids)
        return after[len(before) :]
