"""Hermes-style calls (Qwen2.5, Qwen3, NousHermes and many others).

<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>
"""

from __future__ import annotations

from mlx_manager.engine.parsers.calls import JsonBodyParser

START = "<tool_call>"
END = "</tool_call>"


class HermesParser(JsonBodyParser):
    def _text_mode(self) -> bool:
        marker = self._scan((START, END), self.text)
        if marker == START:
            self._begin(START, END)
        return bool(marker)  # a stray END is a special token: dropped
