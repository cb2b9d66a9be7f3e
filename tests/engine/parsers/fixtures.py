"""Golden outputs per format, written from each model family's documented tool-call syntax.

Each fixture is a complete generation and the (content, reasoning, calls) a parser must produce from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DS_CALLS = "<｜tool▁calls▁begin｜>"
DS_CALLS_END = "<｜tool▁calls▁end｜>"
DS_CALL = "<｜tool▁call▁begin｜>"
DS_CALL_END = "<｜tool▁call▁end｜>"
DS_SEP = "<｜tool▁sep｜>"

# Markup that must never show up in content or reasoning, per format.
MARKUP: dict[str, tuple[str, ...]] = {
    "hermes": ("<tool_call>", "</tool_call>"),
    "llama3_json": ("<|python_tag|>",),
    "mistral": ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"),
    "phi4": ("<|tool_call|>", "<|/tool_call|>", "functools["),
    "glm4": ("<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"),
    "deepseek": (DS_CALLS, DS_CALLS_END, DS_CALL, DS_CALL_END, DS_SEP, "```json"),
    "gemma": ("```tool_code",),
    "harmony": ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"),
}
THINK_MARKUP = ("<think>", "</think>", "[THINK]", "[/THINK]")


@dataclass(frozen=True)
class Fixture:
    id: str
    format: str
    text: str
    content: str = ""
    reasoning: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    think: str | None = None  # reasoning syntax handed to make_parser
    started: bool = False  # the prompt opened the reasoning block


FIXTURES = [
    # --- hermes (Qwen2.5, Qwen3) ---
    Fixture(
        "hermes-single-call",
        "hermes",
        "I'll check the current weather for you.\n<tool_call>\n"
        '{"name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}\n</tool_call>',
        content="I'll check the current weather for you.\n",
        calls=[("get_current_weather", {"location": "Paris, France", "unit": "celsius"})],
    ),
    Fixture(
        "hermes-qwen3-thinking-parallel-calls",
        "hermes",
        "<think>\nThe user wants the weather in Tokyo and the local time. I can call both tools at once.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"timezone": "Asia/Tokyo"}}\n</tool_call>',
        reasoning="The user wants the weather in Tokyo and the local time. I can call both tools at once.",
        calls=[("get_weather", {"city": "Tokyo"}), ("get_time", {"timezone": "Asia/Tokyo"})],
        think="think",
    ),
    Fixture(
        "hermes-qwen3-thinking-opened-by-prompt",
        "hermes",
        "Simple arithmetic, no tool needed.\n</think>\n\n2 + 2 = 4.",
        content="2 + 2 = 4.",
        reasoning="Simple arithmetic, no tool needed.",
        think="think",
        started=True,
    ),
    Fixture(
        "hermes-escapes-unicode-and-nesting",
        "hermes",
        '<tool_call>\n{"name": "write_file", "arguments": {"path": "notes/ünï.md", "content": '
        '"# Title\\n\\nSome \\"quoted\\" text\\twith a tab \\u00e9 🎉", "options": {"overwrite": true, '
        '"mode": null, "tags": ["a", "b"], "size": -1.5e3}}}\n</tool_call>\nDone.',
        content="Done.",
        calls=[
            (
                "write_file",
                {
                    "path": "notes/ünï.md",
                    "content": '# Title\n\nSome "quoted" text\twith a tab é 🎉',
                    "options": {"overwrite": True, "mode": None, "tags": ["a", "b"], "size": -1500.0},
                },
            )
        ],
    ),
    Fixture(
        "hermes-arguments-before-name",
        "hermes",
        '<tool_call>\n{"arguments": {"query": "mlx"}, "name": "search"}\n</tool_call>',
        calls=[("search", {"query": "mlx"})],
    ),
    Fixture(
        "hermes-plain-text-with-angle-brackets",
        "hermes",
        "If a < b and b > c, then <tool or <tool_call is just text; so is {a: [1]}.",
        content="If a < b and b > c, then <tool or <tool_call is just text; so is {a: [1]}.",
    ),
    Fixture(
        "hermes-tool-markup-inside-reasoning-stays-reasoning",
        "hermes",
        '<think>I could emit <tool_call>{"name": "x", "arguments": {}}</tool_call> but will not.</think>Fine.',
        content="Fine.",
        reasoning='I could emit <tool_call>{"name": "x", "arguments": {}}</tool_call> but will not.',
        think="think",
    ),
    # --- llama3_json (Llama 3.1 / 3.2 / 3.3) ---
    Fixture(
        "llama3-bare-object",
        "llama3_json",
        '{"name": "get_weather", "parameters": {"location": "San Francisco, CA", "unit": "fahrenheit"}}',
        calls=[("get_weather", {"location": "San Francisco, CA", "unit": "fahrenheit"})],
    ),
    Fixture(
        "llama3-python-tag-two-calls",
        "llama3_json",
        '<|python_tag|>{"name": "search", "parameters": {"query": "latest mlx release"}}; '
        '{"name": "get_time", "arguments": {"tz": "UTC"}}',
        calls=[("search", {"query": "latest mlx release"}), ("get_time", {"tz": "UTC"})],
    ),
    Fixture(
        "llama3-plain-answer-with-braces",
        "llama3_json",
        'The capital of France is Paris. In JSON: {"capital": "Paris"}.',
        content='The capital of France is Paris. In JSON: {"capital": "Paris"}.',
    ),
    Fixture(
        "llama3-json-answer-that-is-no-call",
        "llama3_json",
        '{"result": 42, "unit": "kg"}',
        content='{"result": 42, "unit": "kg"}',
    ),
    # --- mistral ---
    Fixture(
        "mistral-v3-array",
        "mistral",
        '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, France", '
        '"format": "celsius"}, "id": "a1B2c3D4e"}]',
        calls=[("get_current_weather", {"location": "Paris, France", "format": "celsius"})],
    ),
    Fixture(
        "mistral-v3-content-then-two-calls",
        "mistral",
        'Let me look that up.[TOOL_CALLS][{"name": "search", "arguments": {"q": "arr[0] & [x]"}}, '
        '{"name": "get_time", "arguments": {}}]',
        content="Let me look that up.",
        calls=[("search", {"q": "arr[0] & [x]"}), ("get_time", {})],
    ),
    Fixture(
        "mistral-v11-name-args",
        "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "days": 2}[TOOL_CALLS]get_time[ARGS]{"timezone": "CET"}',
        calls=[("get_weather", {"city": "Paris", "days": 2}), ("get_time", {"timezone": "CET"})],
    ),
    Fixture(
        "mistral-magistral-think-then-call",
        "mistral",
        '[THINK]Need the forecast.[/THINK][TOOL_CALLS]forecast[ARGS]{"city": "Lyon"}',
        reasoning="Need the forecast.",
        calls=[("forecast", {"city": "Lyon"})],
        think="mistral",
    ),
    Fixture(
        "mistral-plain-text-with-brackets",
        "mistral",
        "Use arr[0] or [TOOL] tags; [TOOL_CALL] is not a marker.",
        content="Use arr[0] or [TOOL] tags; [TOOL_CALL] is not a marker.",
    ),
    # --- phi4 (Phi-4-mini) ---
    Fixture(
        "phi4-single-call",
        "phi4",
        '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Seattle"}}]<|/tool_call|>',
        calls=[("get_weather", {"city": "Seattle"})],
    ),
    Fixture(
        "phi4-content-and-two-calls",
        "phi4",
        'Let me check both. <|tool_call|>[{"name": "get_weather", "arguments": {"city": "Oslo"}}, '
        '{"name": "get_time", "parameters": {"tz": "Europe/Oslo"}}]<|/tool_call|>',
        content="Let me check both. ",
        calls=[("get_weather", {"city": "Oslo"}), ("get_time", {"tz": "Europe/Oslo"})],
    ),
    Fixture(
        "phi4-functools",
        "phi4",
        'functools[{"name": "get_stock_price", "arguments": {"symbol": "MSFT"}}]',
        calls=[("get_stock_price", {"symbol": "MSFT"})],
    ),
    # --- glm4 (GLM-4.5 / 4.6 / 4.7) ---
    Fixture(
        "glm4-think-then-call",
        "glm4",
        "<think>The user asks about the weather in Beijing, so I call get_weather.</think>\n"
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n"
        "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
        reasoning="The user asks about the weather in Beijing, so I call get_weather.",
        calls=[("get_weather", {"city": "Beijing", "days": 3})],
        think="think",
    ),
    Fixture(
        "glm4-typed-values-and-two-calls",
        "glm4",
        "I'll write the file and then list the folder.\n<tool_call>write_file\n"
        "<arg_key>path</arg_key>\n<arg_value>src/main.py</arg_value>\n"
        '<arg_key>content</arg_key>\n<arg_value>def main():\n    print("hi <b>")\n</arg_value>\n'
        '<arg_key>tags</arg_key>\n<arg_value>["a", "b"]</arg_value>\n'
        "<arg_key>force</arg_key>\n<arg_value>true</arg_value>\n</tool_call>\n"
        '<tool_call>list_dir\n<arg_key>options</arg_key>\n<arg_value>{"depth": 2}</arg_value>\n</tool_call>',
        content="I'll write the file and then list the folder.\n",
        calls=[
            (
                "write_file",
                {
                    "path": "src/main.py",
                    "content": 'def main():\n    print("hi <b>")',
                    "tags": ["a", "b"],
                    "force": True,
                },
            ),
            ("list_dir", {"options": {"depth": 2}}),
        ],
    ),
    Fixture(
        "glm4-compact-47-and-no-args",
        "glm4",
        "<tool_call>get_time<arg_key>timezone</arg_key><arg_value>UTC</arg_value></tool_call>"
        "<tool_call>list_files\n</tool_call>",
        calls=[("get_time", {"timezone": "UTC"}), ("list_files", {})],
    ),
    Fixture(
        "glm4-string-that-starts-like-json",
        "glm4",
        "<tool_call>search\n<arg_key>query</arg_key>\n<arg_value>new york pizza</arg_value>\n</tool_call>",
        calls=[("search", {"query": "new york pizza"})],
    ),
    # --- deepseek (R1 / V3 / V3.1) ---
    Fixture(
        "deepseek-r1-think-then-call",
        "deepseek",
        "Okay, the user wants the weather in Hangzhou. I should call the tool.\n</think>\n\n"
        f"{DS_CALLS}{DS_CALL}function{DS_SEP}get_weather\n```json\n"
        '{"location": "Hangzhou", "unit": "celsius"}\n```'
        f"{DS_CALL_END}{DS_CALLS_END}",
        reasoning="Okay, the user wants the weather in Hangzhou. I should call the tool.",
        calls=[("get_weather", {"location": "Hangzhou", "unit": "celsius"})],
        think="think",
        started=True,
    ),
    Fixture(
        "deepseek-v3-content-and-two-calls",
        "deepseek",
        f"Let me check both cities.{DS_CALLS}{DS_CALL}function{DS_SEP}get_weather\n```json\n"
        '{"city": "Beijing"}\n```'
        f"{DS_CALL_END}\n{DS_CALL}function{DS_SEP}get_weather\n```json\n"
        '{"city": "Shanghai"}\n```'
        f"{DS_CALL_END}{DS_CALLS_END}",
        content="Let me check both cities.",
        calls=[("get_weather", {"city": "Beijing"}), ("get_weather", {"city": "Shanghai"})],
    ),
    Fixture(
        "deepseek-v31-name-before-separator",
        "deepseek",
        f'{DS_CALLS}{DS_CALL}get_weather{DS_SEP}{{"city": "Beijing"}}{DS_CALL_END}'
        f'{DS_CALL}get_time{DS_SEP}{{"timezone": "Asia/Shanghai"}}{DS_CALL_END}{DS_CALLS_END}',
        calls=[("get_weather", {"city": "Beijing"}), ("get_time", {"timezone": "Asia/Shanghai"})],
    ),
    # --- gemma (Gemma 3 prompt convention) ---
    Fixture(
        "gemma-tool-code-block",
        "gemma",
        'I will check that for you.\n```tool_code\nget_weather(city="London", unit="celsius")\n```',
        content="I will check that for you.\n",
        calls=[("get_weather", {"city": "London", "unit": "celsius"})],
    ),
    Fixture(
        "gemma-print-default-api-two-calls",
        "gemma",
        '```tool_code\nprint(default_api.search(query="mlx", limit=5, exact=True))\n'
        'print(default_api.get_time(tz="UTC", fields=["h", "m"], extra=None))\n```',
        calls=[
            ("search", {"query": "mlx", "limit": 5, "exact": True}),
            ("get_time", {"tz": "UTC", "fields": ["h", "m"], "extra": None}),
        ],
    ),
    Fixture(
        "gemma-bare-json-reply",
        "gemma",
        '{"name": "get_weather", "parameters": {"city": "Berlin"}}',
        calls=[("get_weather", {"city": "Berlin"})],
    ),
    Fixture(
        "gemma-ordinary-code-blocks-stay-text",
        "gemma",
        'Here:\n```python\nprint("hi")\n```\nand\n```tool_code\nx = 1\n```',
        content='Here:\n```python\nprint("hi")\n```\nand\n```tool_code\nx = 1\n```',
    ),
    # --- harmony (gpt-oss) ---
    Fixture(
        "harmony-analysis-then-final",
        "harmony",
        "<|channel|>analysis<|message|>User asks 2+2. Simple.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
        content="2 + 2 = 4.",
        reasoning="User asks 2+2. Simple.",
    ),
    Fixture(
        "harmony-analysis-then-tool-call",
        "harmony",
        "<|channel|>analysis<|message|>Need to use get_weather for Tokyo.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"location":"Tokyo","unit":"c"}<|call|>',
        reasoning="Need to use get_weather for Tokyo.",
        calls=[("get_weather", {"location": "Tokyo", "unit": "c"})],
    ),
    Fixture(
        "harmony-recipient-before-channel",
        "harmony",
        "<|channel|>analysis<|message|>Look up order 7.<|end|>"
        '<|start|>assistant to=functions.lookup_order<|channel|>commentary json<|message|>{"id": 7}<|call|>',
        reasoning="Look up order 7.",
        calls=[("lookup_order", {"id": 7})],
    ),
    Fixture(
        "harmony-preamble-then-call",
        "harmony",
        "<|channel|>commentary<|message|>Checking the calendar now.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.list_events <|constrain|>json"
        '<|message|>{"day": "2025-01-02"}<|call|>',
        content="Checking the calendar now.",
        calls=[("list_events", {"day": "2025-01-02"})],
    ),
    Fixture(
        "harmony-final-without-stop-token",
        "harmony",
        "<|channel|>final<|message|>Hello there! Use a<|b> freely.",
        content="Hello there! Use a<|b> freely.",
    ),
]
