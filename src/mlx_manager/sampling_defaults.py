"""Sampling values as a model, a profile or the server recommend them: plain data, imported by the settings
(config.py) and the engine alike, so the settings need nothing from the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingDefaults:
    """Some sampling values, as a model, a profile or the server recommend them; None = this layer does not say."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None

    def items(self) -> dict[str, float | int]:
        return {name: v for name in vars(self) if (v := getattr(self, name)) is not None}
