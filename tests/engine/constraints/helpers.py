"""Shared pieces for the constrained-decoding tests: a loaded tiny model, batch runs and a schema check."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm import load
from mlx_lm.generate import BatchGenerator, StopSequences

from mlx_manager.engine.constraints import ConstraintFactory, GrammarProcessor, ToolCallSpec, ToolFunction

Processor = Callable[[mx.array, mx.array], mx.array]


@dataclass
class TinyLM:
    path: Path
    model: nn.Module
    tokenizer: Any
    vocab_size: int  # the model's logits width (1024), larger than the tokenizer's ~1000 ids
    stop_ids: frozenset[int]
    factory: ConstraintFactory

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))


def load_tiny(path: Path) -> TinyLM:
    model, tokenizer = load(str(path))[:2]
    vocab = int(json.loads((path / "config.json").read_text())["vocab_size"])
    stop = frozenset(tokenizer.eos_token_ids)
    return TinyLM(path, model, tokenizer, vocab, stop, ConstraintFactory(tokenizer, vocab, stop))


@dataclass
class Run:
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None
    finished_at: int | None = None  # index of the first token after which the grammar reported is_finished()


def generate(
    lm: TinyLM,
    prompts: Sequence[str],
    processors: Sequence[Sequence[Processor]],
    *,
    samplers: Sequence[Callable[[mx.array], mx.array] | None] | None = None,
    max_tokens: int = 256,
) -> list[Run]:
    """Run all prompts together in one BatchGenerator, the way the scheduler does, until each finishes."""
    gen = BatchGenerator(lm.model, completion_batch_size=len(prompts), prefill_batch_size=len(prompts))
    stop = StopSequences([[t] for t in sorted(lm.stop_ids)])
    try:
        uids = gen.insert(
            [lm.encode(p) for p in prompts],
            max_tokens=[max_tokens] * len(prompts),
            samplers=list(samplers) if samplers else None,  # type: ignore[arg-type]  # None: the default
            logits_processors=[list(p) for p in processors],
            stop_sequences=[stop] * len(prompts),
        )
        runs = {uid: Run() for uid in uids}
        grammar = {
            uid: next((p for p in procs if isinstance(p, GrammarProcessor)), None)
            for uid, procs in zip(uids, processors, strict=True)
        }
        while any(r.finish is None for r in runs.values()):
            _, responses = gen.next()
            for resp in responses:
                run = runs[resp.uid]
                run.tokens.append(resp.token)
                proc = grammar[resp.uid]
                if run.finished_at is None and proc is not None and proc.is_finished():
                    run.finished_at = len(run.tokens) - 1
                run.finish = resp.finish_reason or run.finish
        return [runs[u] for u in uids]
    finally:
        gen.close()


def hermes(functions: list[ToolFunction], **kwargs: Any) -> ToolCallSpec:
    """Qwen/Hermes style: each call in <tool_call> tags, one per line."""
    return ToolCallSpec(functions, prefix="<tool_call>\n", suffix="\n</tool_call>", separator="\n", **kwargs)


def bias(ids: Sequence[int], amount: float) -> Processor:
    """A processor that raises some tokens: makes a random model close its strings and objects."""
    idx = mx.array(list(ids))

    def apply(_tokens: mx.array, logits: mx.array) -> mx.array:
        return logits.at[..., idx].add(amount)

    return apply


def token_ids_with_text(lm: TinyLM, texts: set[str]) -> list[int]:
    vocab = lm.tokenizer.get_vocab()
    return [i for i in vocab.values() if i < lm.vocab_size and lm.decode([i]) in texts]


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """jsonschema when installed (it is not a project dependency); otherwise the subset these tests use."""
    try:
        import jsonschema
    except ImportError:
        _check(instance, schema, "$")
    else:
        jsonschema.validate(instance, schema)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(v: Any, s: dict[str, Any], at: str) -> None:
    types = s.get("type")
    if types is not None:
        assert any(_TYPES[t](v) for t in ([types] if isinstance(types, str) else types)), f"{at}: {v!r} not {types}"
    if "enum" in s:
        assert v in s["enum"], f"{at}: {v!r} not in {s['enum']}"
    if "const" in s:
        assert v == s["const"], f"{at}: {v!r} != {s['const']!r}"
    if isinstance(v, str):
        assert len(v) >= s.get("minLength", 0) and len(v) <= s.get("maxLength", len(v)), f"{at}: length"
        if "pattern" in s:
            assert re.search(s["pattern"], v), f"{at}: {v!r} !~ {s['pattern']}"
    if isinstance(v, int | float) and not isinstance(v, bool):
        assert s.get("minimum", v) <= v <= s.get("maximum", v), f"{at}: {v} out of range"
    if isinstance(v, list):
        assert s.get("minItems", 0) <= len(v) <= s.get("maxItems", len(v)), f"{at}: item count"
        for i, item in enumerate(v):
            _check(item, s.get("items", {}), f"{at}[{i}]")
    if isinstance(v, dict):
        props = s.get("properties", {})
        for key in s.get("required", []):
            assert key in v, f"{at}: missing {key}"
        for key, item in v.items():
            if key in props:
                _check(item, props[key], f"{at}.{key}")
            else:
                assert s.get("additionalProperties", True) is not False, f"{at}: unexpected {key}"
