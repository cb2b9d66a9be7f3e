"""Random argument objects survive every format's JSON wrapping, however the text is split."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.engine.parsers.fixtures import DS_CALL, DS_CALL_END, DS_CALLS, DS_CALLS_END, DS_SEP
from tests.engine.parsers.harness import run

WRAPPERS = {
    "hermes": '<tool_call>\n{{"name": "f", "arguments": {}}}\n</tool_call>',
    "llama3_json": '{{"name": "f", "parameters": {}}}',
    "mistral": '[TOOL_CALLS][{{"name": "f", "arguments": {}}}]',
    "mistral-v11": "[TOOL_CALLS]f[ARGS]{}",
    "phi4": '<|tool_call|>[{{"name": "f", "arguments": {}}}]<|/tool_call|>',
    "deepseek": DS_CALLS + DS_CALL + "function" + DS_SEP + "f\n```json\n{}\n```" + DS_CALL_END + DS_CALLS_END,
    "gemma": '{{"name": "f", "arguments": {}}}',
    "harmony": "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>",
}
CHARS = "ab Z09_-\"\\/'\n\t<>[]{}:,é中🎉"


def _string(rng: random.Random) -> str:
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 8)))


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randint(0, 7 if depth < 3 else 5)
    if kind == 0:
        return _string(rng)
    if kind == 1:
        return rng.randint(-1000, 1000)
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return _string(rng)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return _object(rng, depth + 1)


def _object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {_string(rng): _value(rng, depth) for _ in range(rng.randint(0, 5))}


@pytest.mark.parametrize("fmt", list(WRAPPERS))
def test_random_arguments_round_trip(fmt: str) -> None:
    rng = random.Random(fmt)
    for _ in range(15):
        args = _object(rng)
        dumped = json.dumps(args, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
        text = WRAPPERS[fmt].format(dumped)
        cuts = sorted(rng.sample(range(1, len(text)), 6))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        for split in ([text], list(text), pieces):
            assert run(fmt.split("-")[0], split).calls == [("f", args)], text
