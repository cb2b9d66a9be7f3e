"""Which output parser a chat request gets: its family's tool-call format and reasoning tags."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.families import Family
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.parsers import make_parser
from mlx_manager.engine.parsers.base import OutputParser
from mlx_manager.engine.reasoning_budget import ReasoningBudget
from mlx_manager.engine.types import ChatPrompt, Prompt

HARMONY = "harmony"  # gpt-oss: its channels carry reasoning as well as tool calls


def reasoning_opened(rendered: str, tags: tuple[str, str]) -> bool:
    """True when the template left a reasoning block open, so generation starts inside it."""
    start, end = tags
    return rendered.rfind(start) > rendered.rfind(end)


def output_parser_factory(
    family: Family, prompt: Prompt, rendered: str | None, constrained: bool = False
) -> Callable[[], OutputParser] | None:
    """A factory of per-sequence parsers, or None when raw text is the answer (completions, plain families).

    A grammar starts at the first generated token, so constrained output never begins inside reasoning, even when
    the template opened a <think> block; structured output (no forced tool) is the JSON itself.
    """
    if not isinstance(prompt, ChatPrompt) or (constrained and prompt.force_tool is None):
        return None
    tools = prompt.parse_tool_calls and family.tool_format is not None
    if family.tool_format == HARMONY:
        return partial(make_parser, HARMONY, reasoning=None, reasoning_started=False, tools=tools)
    if not tools and family.reasoning is None:
        return None
    started = (
        not constrained
        and family.reasoning is not None
        and rendered is not None
        and reasoning_opened(rendered, family.reasoning)
    )
    return partial(
        make_parser,
        family.tool_format or "hermes",
        reasoning="think" if family.reasoning else None,
        reasoning_started=started,
        tools=tools,
    )


def reasoning_budget_factory(
    lm: LoadedModel, prompt: Prompt, rendered: str | None, budget: int | None
) -> Callable[[], ReasoningBudget] | None:
    """Per-sequence budget processors, when a budget is asked for; a 400 when the family cannot honour it."""
    if budget is None:
        return None
    tags = lm.family.reasoning
    vocab = lm.tokenizer.get_vocab()
    if not isinstance(prompt, ChatPrompt) or tags is None or tags[0] not in vocab or tags[1] not in vocab:
        raise InvalidRequestError(
            f"max_reasoning_tokens needs a chat request to a model that reasons in single-token tags; "
            f"'{lm.info.id}' ({lm.family.name} family) does not.",
            param="max_reasoning_tokens",
        )
    started = rendered is not None and reasoning_opened(rendered, tags)
    return partial(ReasoningBudget, vocab[tags[0]], vocab[tags[1]], budget, started)
