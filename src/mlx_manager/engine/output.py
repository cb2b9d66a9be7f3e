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
from mlx_manager.engine.structured import HARMONY, Constraint, reasoning_opened
from mlx_manager.engine.types import ChatPrompt, Prompt


def output_parser_factory(
    family: Family, prompt: Prompt, rendered: str | None, constraint: Constraint | None = None
) -> Callable[[], OutputParser] | None:
    """A factory of per-sequence parsers, or None when raw text is the answer (completions, plain families).

    Structured output (no forced tool) is the JSON itself, after any reasoning the grammar allowed before it.
    """
    if not isinstance(prompt, ChatPrompt):
        return None
    json_answer = constraint is not None and prompt.force_tool is None
    tools = not json_answer and prompt.parse_tool_calls and family.tool_format is not None
    if family.tool_format == HARMONY:
        return partial(make_parser, HARMONY, reasoning=None, reasoning_started=False, tools=tools)
    if family.reasoning is None or (constraint is not None and constraint.reasoning == "none"):
        return partial(make_parser, family.tool_format or "hermes", reasoning=None, tools=tools) if tools else None
    return partial(
        make_parser,
        family.tool_format or "hermes",
        reasoning="think",
        reasoning_started=rendered is not None and reasoning_opened(rendered, family.reasoning),
        tools=tools,
    )


def reasoning_budget_factory(
    lm: LoadedModel, prompt: Prompt, rendered: str | None, budget: int | None, strict: bool = True
) -> Callable[[], ReasoningBudget] | None:
    """Per-sequence budget processors, when a budget is asked for; a 400 when the family cannot honour it
    (unless not `strict`: then there is simply no reasoning to bound)."""
    if budget is None:
        return None
    tags = lm.family.reasoning
    vocab = lm.tokenizer.get_vocab()
    if not isinstance(prompt, ChatPrompt) or tags is None or tags[0] not in vocab or tags[1] not in vocab:
        if not strict:
            return None
        raise InvalidRequestError(
            f"max_reasoning_tokens needs a chat request to a model that reasons in single-token tags; "
            f"'{lm.info.id}' ({lm.family.name} family) does not.",
            param="max_reasoning_tokens",
        )
    started = rendered is not None and reasoning_opened(rendered, tags)
    return partial(ReasoningBudget, vocab[tags[0]], vocab[tags[1]], budget, started)
