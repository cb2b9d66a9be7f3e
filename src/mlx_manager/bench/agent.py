"""Scripted coding-agent sessions, shaped the way Claude Code and Codex send them: a long system prompt with tool
definitions, then turns that append the assistant's reply, its tool calls and the tools' results.

Everything is seeded text (no downloads) and the assistant's turns are fixed rather than the model's output, so
every server sees the same prompts. Several agents share one system prompt and tool list, each with its own task.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_manager.bench.workloads import WORDS, PromptMaker

# Claude Code sends a per-request billing line at the head of its system prompt; it defeats a prefix cache
# unless the server strips it (our volatile_prompt_patterns do by default, the peers do not).
BILLING_LINE = "x-anthropic-billing-header: cc_version=2.1.{minor}; cc_entrypoint=cli; cch={hash};"
SESSION_DATE = "2026-12-03"


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | str  # text: the model's own JSON, sent back as it came


@dataclass(frozen=True)
class Turn:
    """What one request adds: the first turn a user's task, each later one the scripted reply to the previous
    request (text and tool calls) followed by the tools' results."""

    user: str = ""
    assistant: str = ""
    calls: tuple[ToolCall, ...] = ()
    results: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentSession:
    name: str
    system: str
    tools: tuple[Tool, ...]
    turns: tuple[Turn, ...]
    seed: int = 0

    def volatile_line(self, turn: int) -> str:
        """This request's billing line: different for every agent and turn, the same in every run."""
        digest = hashlib.sha256(f"{self.seed}/{self.name}/{turn}".encode()).hexdigest()
        return BILLING_LINE.format(minor=int(digest[:2], 16), hash=digest[2:10])


@dataclass(frozen=True)
class AgentShape:
    """Sizes in tokens of the model's tokenizer when one is given, else roughly in words."""

    agents: int = 3
    turns: int = 6
    system_tokens: int = 800
    tool_description_tokens: int = 40
    task_tokens: int = 150
    reply_tokens: tuple[int, int] = (20, 60)
    result_tokens: tuple[int, int] = (250, 900)
    seed: int = 0
    tools: int = 8  # the first this many of the eight tools below


# (name, parameters) of the tools offered; descriptions are seeded text of tool_description_tokens.
_TOOL_PARAMS: dict[str, dict[str, str]] = {
    "Bash": {"command": "The command to run.", "timeout": "Milliseconds before the command is stopped."},
    "Read": {"file_path": "Absolute path of the file.", "offset": "First line to read.", "limit": "Lines to read."},
    "Edit": {"file_path": "Absolute path.", "old_string": "Text to replace.", "new_string": "Replacement."},
    "Write": {"file_path": "Absolute path.", "content": "The whole new content of the file."},
    "Grep": {"pattern": "Regular expression.", "path": "Folder or file to search.", "glob": "Files to include."},
    "Glob": {"pattern": "Glob pattern such as src/**/*.py.", "path": "Folder to search from."},
    "TodoWrite": {"todos": "The updated todo list, one item a line."},
    "WebFetch": {"url": "The URL to fetch.", "prompt": "What to extract from the page."},
}
_INTEGER_PARAMS = {"timeout", "offset", "limit"}
_SECTIONS = ("Tone and style", "Doing tasks", "Tool usage policy", "Code references", "Git and commits")


def make_sessions(shape: AgentShape, tokenizer_dir: Path | None = None) -> list[AgentSession]:
    """`shape.agents` sessions of `shape.turns` requests each, sharing one system prompt and tool list."""
    maker = PromptMaker(tokenizer_dir, seed=shape.seed)
    offered = list(_TOOL_PARAMS.items())[: shape.tools]
    tools = tuple(_tool(maker, name, params, shape.tool_description_tokens) for name, params in offered)
    system = _system_prompt(maker, shape.system_tokens)
    sessions = []
    for index in range(shape.agents):
        maker.rng.seed(f"{shape.seed}/agent/{index}")
        name = f"agent-{index + 1}"
        turns = [Turn(user=f"Task: {maker.text(shape.task_tokens)}")]
        for number in range(1, shape.turns):
            turns.append(_step(maker, tools, shape, name, number))
        sessions.append(AgentSession(name, system, tools, tuple(turns), shape.seed))
    return sessions


def _tool(maker: PromptMaker, name: str, params: dict[str, str], description_tokens: int) -> Tool:
    properties = {
        key: {"type": "integer" if key in _INTEGER_PARAMS else "string", "description": text}
        for key, text in params.items()
    }
    required = [key for key in params if key not in _INTEGER_PARAMS]
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return Tool(name, f"{name}: {maker.text(description_tokens)}", schema)


def _system_prompt(maker: PromptMaker, tokens: int) -> str:
    head = (
        "You are an interactive coding agent. Use the instructions below and the tools available to you to help"
        " the user with software engineering tasks."
    )
    per_section = max(tokens // len(_SECTIONS), 8)
    sections = [f"# {title}\n{maker.text(per_section)}" for title in _SECTIONS]
    env = f"<env>\nWorking directory: /repo\nPlatform: linux\nToday's date: {SESSION_DATE}\n</env>"
    return "\n\n".join([head, *sections, env])


def _step(maker: PromptMaker, tools: tuple[Tool, ...], shape: AgentShape, agent: str, number: int) -> Turn:
    """The scripted reply to request `number - 1`: a sentence, one tool call (two on every third turn), results."""
    rng = maker.rng
    count = 2 if number % 3 == 0 else 1
    calls = []
    for i in range(count):
        tool = tools[rng.randrange(len(tools))]
        calls.append(ToolCall(f"call_{agent}_{number}_{i}", tool.name, _arguments(maker, tool)))
    results = tuple(_file_text(maker, rng.randint(*shape.result_tokens) // count) for _ in calls)
    return Turn(assistant=maker.text(rng.randint(*shape.reply_tokens)), calls=tuple(calls), results=results)


def _arguments(maker: PromptMaker, tool: Tool) -> dict[str, Any]:
    rng = maker.rng
    args: dict[str, Any] = {}
    for key, spec in tool.parameters["properties"].items():
        if spec["type"] == "integer":
            args[key] = rng.randint(1, 400)
        elif key.endswith("path"):
            args[key] = f"/repo/src/{rng.choice(WORDS)}/{rng.choice(WORDS)}_{rng.choice(WORDS)}.py"
        else:
            args[key] = maker.text(rng.randint(4, 12))
    return args


def _file_text(maker: PromptMaker, tokens: int) -> str:
    """A numbered listing, like a file read or a command's output, of about `tokens` tokens."""
    lines: list[str] = []
    total = 0
    while total < tokens:
        width = maker.rng.randint(6, 14)
        indent = "    " * maker.rng.randint(0, 2)
        line = f"{len(lines) + 1:>5}\t{indent}{maker.text(width)}"
        lines.append(line)
        # Counted line by line (plus the newline); a word count without a tokenizer.
        total += len(maker.tokenizer.encode(line, add_special_tokens=False)) + 1 if maker.tokenizer else width + 3
    return "\n".join(lines)
