"""Incremental parsers that split generated text into content, reasoning and tool calls, one file per format."""

from __future__ import annotations

from collections.abc import Callable

from mlx_manager.engine.parsers.base import (
    Event,
    IdFactory,
    OutputParser,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
)
from mlx_manager.engine.parsers.deepseek import DeepSeekParser
from mlx_manager.engine.parsers.gemma import GemmaParser
from mlx_manager.engine.parsers.glm4 import Glm4Parser
from mlx_manager.engine.parsers.harmony import HarmonyParser
from mlx_manager.engine.parsers.hermes import HermesParser
from mlx_manager.engine.parsers.llama3_json import Llama3JsonParser
from mlx_manager.engine.parsers.mistral import MistralParser
from mlx_manager.engine.parsers.phi4 import Phi4Parser
from mlx_manager.engine.parsers.reasoning import Pipeline, ThinkParser

_TOOL_PARSERS: dict[str, Callable[[IdFactory | None], OutputParser]] = {
    "hermes": HermesParser,
    "llama3_json": Llama3JsonParser,
    "mistral": MistralParser,
    "phi4": Phi4Parser,
    "glm4": Glm4Parser,
    "deepseek": DeepSeekParser,
    "gemma": GemmaParser,
}
FORMATS: tuple[str, ...] = (*_TOOL_PARSERS, "harmony")
# Reasoning syntaxes by name: (opening tag, closing tag).
REASONING: dict[str, tuple[str, str]] = {"think": ("<think>", "</think>"), "mistral": ("[THINK]", "[/THINK]")}


def make_parser(
    format: str,
    *,
    reasoning: str | None = None,
    reasoning_started: bool = False,
    tools: bool = True,
    id_factory: IdFactory | None = None,
) -> OutputParser:
    """A fresh parser for one generated sequence.

    reasoning: a key of REASONING, or None for no reasoning block; reasoning_started: the prompt opened it.
    harmony handles its own reasoning channel and ignores both.
    """
    if format == "harmony":
        return HarmonyParser(id_factory, tools=tools)
    if format not in _TOOL_PARSERS:
        raise ValueError(f"unknown output format {format!r}; expected one of {', '.join(FORMATS)}")
    if reasoning is not None and reasoning not in REASONING:
        raise ValueError(f"unknown reasoning syntax {reasoning!r}; expected one of {', '.join(REASONING)}")
    think = ThinkParser(*REASONING[reasoning], started=reasoning_started) if reasoning else None
    tool_parser = _TOOL_PARSERS[format](id_factory) if tools else None
    if think is None and tool_parser is not None:
        return tool_parser
    return Pipeline(think, tool_parser)


__all__ = [
    "FORMATS",
    "REASONING",
    "Event",
    "OutputParser",
    "Pipeline",
    "ReasoningDelta",
    "TextDelta",
    "ThinkParser",
    "ToolCallArgsDelta",
    "ToolCallStart",
    "make_parser",
]
