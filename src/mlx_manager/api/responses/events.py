"""The Responses stream: engine chunks to output items, each added, filled and done, as numbered events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.api.replies import api_finish
from mlx_manager.api.responses import render
from mlx_manager.api.responses.output import OutputFunctionCall, OutputItem, OutputReasoning, OutputText, ReasoningText
from mlx_manager.engine.types import GenerationChunk


@dataclass
class Events:
    sequence: int = 0

    def emit(self, kind: str, **data: Any) -> str:
        body = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return json.dumps(body, ensure_ascii=False)


@dataclass
class ItemStream:
    """Engine chunks to output items (reasoning, message, function_call), each added, filled and done."""

    events: Events
    done: list[OutputItem] = field(default_factory=list)
    kind: str | None = None
    item: OutputItem | None = None
    text: str = ""
    calls: set[int] = field(default_factory=set)
    finish_reason: str | None = None

    @property
    def index(self) -> int:
        return len(self.done)

    def feed(self, chunk: GenerationChunk, parallel: bool) -> list[str]:
        out: list[str] = []
        if chunk.reasoning:
            if self.kind != "reasoning":
                out += self._open("reasoning", render.reasoning_item(render.new_id("rs"), None, "in_progress"))
                out.append(self._part_added(ReasoningText(text="")))
            out.append(self._delta("response.reasoning_text.delta", chunk.reasoning))
        if chunk.text and (self.kind == "message" or chunk.text.strip()):
            if self.kind != "message":
                out += self._open("message", render.message_item(render.new_id("msg"), None, "in_progress"))
                out.append(self._part_added(OutputText(text="")))
            out.append(self._delta("response.output_text.delta", chunk.text if self.text else chunk.text.lstrip()))
        for call in chunk.tool_calls:
            if call.index > 0 and not parallel:
                continue
            if call.index not in self.calls:
                self.calls.add(call.index)
                item = render.function_call_item(render.new_id("fc"), call.id or "", call.name or "", "", "in_progress")
                out += self._open("function_call", item)
            if call.arguments:
                out.append(self._delta("response.function_call_arguments.delta", call.arguments))
        if chunk.finish_reason is not None:
            self.finish_reason = api_finish(chunk.finish_reason)
        return out

    def close(self) -> list[str]:
        out = self._close()
        if not self.done:  # an empty answer is still one (empty) message
            out += self._open("message", render.message_item(render.new_id("msg"), None, "in_progress"))
            out.append(self._part_added(OutputText(text="")))
            out += self._close()
        return out

    def _open(self, kind: str, item: OutputItem) -> list[str]:
        out = self._close()
        self.kind, self.item, self.text = kind, item, ""
        return [*out, self.events.emit("response.output_item.added", output_index=self.index, item=item.model_dump())]

    def _part_added(self, part: OutputText | ReasoningText) -> str:
        ids = {"item_id": self._id(), "output_index": self.index, "content_index": 0}
        return self.events.emit("response.content_part.added", **ids, part=part.model_dump())

    def _id(self) -> str:
        assert self.item is not None
        return self.item.id

    def _delta(self, kind: str, text: str) -> str:
        self.text += text
        ids: dict[str, Any] = {"item_id": self._id(), "output_index": self.index}
        if kind == "response.output_text.delta":
            return self.events.emit(kind, **ids, content_index=0, delta=text, logprobs=[])
        if kind == "response.reasoning_text.delta":
            return self.events.emit(kind, **ids, content_index=0, delta=text)
        return self.events.emit(kind, **ids, delta=text)

    def _close(self) -> list[str]:
        if self.kind is None or self.item is None:
            return []
        ids: dict[str, Any] = {"item_id": self.item.id, "output_index": self.index}
        out = []
        item: OutputItem
        if isinstance(self.item, OutputFunctionCall):
            item = self.item.model_copy(update={"arguments": self.text or "{}", "status": "completed"})
            done = {"name": item.name, "arguments": item.arguments}
            out.append(self.events.emit("response.function_call_arguments.done", **ids, **done))
        elif isinstance(self.item, OutputReasoning):
            reasoning = ReasoningText(text=self.text)
            item = self.item.model_copy(update={"content": [reasoning], "status": "completed"})
            out.append(self.events.emit("response.reasoning_text.done", **ids, content_index=0, text=self.text))
            out.append(
                self.events.emit("response.content_part.done", **ids, content_index=0, part=reasoning.model_dump())
            )
        else:
            text = OutputText(text=self.text)
            item = self.item.model_copy(update={"content": [text], "status": "completed"})
            text_done = {"content_index": 0, "text": self.text, "logprobs": []}
            out.append(self.events.emit("response.output_text.done", **ids, **text_done))
            out.append(self.events.emit("response.content_part.done", **ids, content_index=0, part=text.model_dump()))
        out.append(self.events.emit("response.output_item.done", output_index=self.index, item=item.model_dump()))
        self.done.append(item)
        self.kind = None
        return out
