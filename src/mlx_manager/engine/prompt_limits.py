"""Cheap checks before a prompt is templated or tokenized, so an oversized request costs almost nothing: its size
in bytes and its message count (settings), and a bound on characters from the context length (a prompt longer
than the context can hold at the tokenizer's longest token, twice over, cannot fit and is never tokenized)."""

from __future__ import annotations

from typing import Any

from mlx_manager.engine.errors import ContextLengthError, InvalidRequestError
from mlx_manager.engine.types import ChatPrompt, Prompt

# Headroom over "longest token x context": normalizers (NFC and the like) can fold two characters into one.
CHARS_SLACK = 2


class PromptTooLongError(ContextLengthError):
    """The rendered prompt has more characters than the model's context can hold: refused before tokenizing."""

    def __init__(self, chars: int, context_length: int, max_chars: int, param: str) -> None:
        super().__init__(0, 0, context_length, param)
        self.message = (
            f"This model's maximum context length is {context_length} tokens. However, your prompt is {chars}"
            f" characters long, more than {context_length} tokens can hold (at most {max_chars} characters for"
            " this model's tokenizer). Please reduce the prompt."
        )
        self.args = (self.message,)


def text_bytes(value: Any) -> int:
    """UTF-8 bytes of every string in a prompt's messages and tools (images are checked on their own)."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(text_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(text_bytes(v) for v in value)
    return 0


def check_size(prompt: Prompt, max_bytes: int | None, max_messages: int | None) -> None:
    """400s naming the setting, before any templating: too many messages, or too many bytes of text."""
    param = "messages" if isinstance(prompt, ChatPrompt) else "prompt"
    if isinstance(prompt, ChatPrompt) and max_messages is not None and len(prompt.messages) > max_messages:
        raise InvalidRequestError(
            f"The request has {len(prompt.messages)} messages; this server accepts at most {max_messages}"
            " (max_messages).",
            param=param,
        )
    if max_bytes is None:
        return
    size = text_bytes([prompt.messages, prompt.tools]) if isinstance(prompt, ChatPrompt) else text_bytes(prompt.text)
    if size > max_bytes:
        raise InvalidRequestError(
            f"The prompt is {size} bytes of text; this server accepts at most {max_bytes} (max_prompt_bytes).",
            param=param,
        )


def max_chars(context_length: int | None, max_token_chars: int) -> int | None:
    """The most characters a prompt of `context_length` tokens can have; None when either is unknown."""
    if not context_length or max_token_chars <= 0:
        return None
    return context_length * max_token_chars * CHARS_SLACK


def check_chars(text: str, context_length: int | None, max_token_chars: int, param: str) -> None:
    limit = max_chars(context_length, max_token_chars)
    if limit is not None and context_length and len(text) > limit:
        raise PromptTooLongError(len(text), context_length, limit, param)
