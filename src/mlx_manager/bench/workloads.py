"""Prompts of a fixed token length: exact when a local tokenizer is given, approximate (words) otherwise."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORDS = [
    "time",
    "person",
    "year",
    "way",
    "day",
    "thing",
    "man",
    "world",
    "life",
    "hand",
    "part",
    "child",
    "eye",
    "woman",
    "place",
    "work",
    "week",
    "case",
    "point",
    "number",
    "group",
    "problem",
    "fact",
    "river",
    "mountain",
    "window",
    "garden",
    "music",
    "letter",
    "story",
    "morning",
    "question",
    "answer",
    "market",
    "system",
]


@dataclass(frozen=True)
class Workload:
    name: str
    prompts: list[str]
    output_tokens: int


class PromptMaker:
    def __init__(self, tokenizer_dir: Path | None, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.tokenizer: Any = None
        if tokenizer_dir is not None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    def text(self, tokens: int) -> str:
        """Random words cut to exactly `tokens` tokens (re-tokenized until stable) with a tokenizer."""
        words = " ".join(self.rng.choice(WORDS) for _ in range(tokens))
        if self.tokenizer is None:
            return words  # roughly one token per common English word
        ids = self.tokenizer.encode(words, add_special_tokens=False)[:tokens]
        for _ in range(4):
            text = self.tokenizer.decode(ids)
            again = self.tokenizer.encode(text, add_special_tokens=False)
            if len(again) == tokens:
                return str(text)
            ids = (again + ids)[:tokens]
        return str(self.tokenizer.decode(ids))

    def random(self, count: int, prompt_tokens: int, output_tokens: int) -> Workload:
        return Workload("random", [self.text(prompt_tokens) for _ in range(count)], output_tokens)

    def shared_prefix(self, count: int, prefix_tokens: int, suffix_tokens: int, output_tokens: int) -> Workload:
        prefix = self.text(prefix_tokens)
        prompts = [f"{prefix} {self.text(suffix_tokens)}" for _ in range(count)]
        return Workload("shared-prefix", prompts, output_tokens)
