"""Responses input items and tools, typed: messages (the default item), function calls and their outputs, and
reasoning, with their content parts. Items and parts carry members a local server has no use for (ids, statuses,
annotations, encrypted reasoning): accepted, not acted on. An item or part of a type this server does not take is
a 400 naming the type; a tool Responses hosts is a 400 from translate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic.json_schema import SkipJsonSchema


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


def _tag(known: frozenset[str], default: str | None = None) -> Callable[[Any], str]:
    """Which union member a value is, by its `type` (`default` when absent); "unsupported" for any other type."""

    def tag(value: Any) -> str:
        kind = value.get("type", default) if isinstance(value, dict) else getattr(value, "type", None)
        return kind if isinstance(kind, str) and kind in known else "unsupported"

    return tag


def _kind(data: Any) -> Any:
    return data.get("type") if isinstance(data, dict) else None


# --- content parts -----------------------------------------------------------------------------------------------


class InputText(_Open):
    type: Literal["input_text"]
    text: str


class OutputTextPart(_Open):
    type: Literal["output_text"]
    text: str


class Text(_Open):
    type: Literal["text"]
    text: str


class Refusal(_Open):
    type: Literal["refusal"]
    refusal: str


class InputImage(_Open):
    """An image as a data: URL, in user messages for vision models (remote URLs are not fetched, file ids not
    supported)."""

    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class UnsupportedPart(_Open):
    """A content part of any other type: refused with a 400 naming it."""

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        raise ValueError(
            f"Content parts of type '{_kind(data)}' are not supported here; send text (and input_image in user"
            " messages, for vision models)."
        )


ContentPart = Annotated[
    Annotated[InputText, Tag("input_text")]
    | Annotated[OutputTextPart, Tag("output_text")]
    | Annotated[Text, Tag("text")]
    | Annotated[Refusal, Tag("refusal")]
    | Annotated[InputImage, Tag("input_image")]
    | Annotated[SkipJsonSchema[UnsupportedPart], Tag("unsupported")],
    Discriminator(_tag(frozenset({"input_text", "output_text", "text", "refusal", "input_image"}))),
]
# A list first, so that a bad part is named by where it is (input.0.content.1.text), not as "not a string".
Content = list[ContentPart] | str


# --- input items -------------------------------------------------------------------------------------------------


class MessageItem(_Open):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: Content | None = None


class FunctionCallItem(_Open):
    """A call the model made earlier, answered by a function_call_output with the same call_id."""

    type: Literal["function_call"]
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: str | None = None
    output: Content | None = None


class ReasoningPart(_Open):
    type: str | None = None  # summary_text or reasoning_text
    text: str = ""


class ReasoningItem(_Open):
    """Earlier reasoning; its content (else its summary) rides along with the assistant turn it preceded."""

    type: Literal["reasoning"]
    summary: list[ReasoningPart] = Field(default_factory=list)
    content: list[ReasoningPart] | None = None


class UnsupportedItem(_Open):
    """An input item of any other type (item_reference, computer calls, ...): refused with a 400 naming it."""

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        raise ValueError(f"Input items of type '{_kind(data)}' are not supported by this server.")


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[SkipJsonSchema[UnsupportedItem], Tag("unsupported")],
    Discriminator(_tag(frozenset({"message", "function_call", "function_call_output", "reasoning"}), "message")),
]


# --- tools -------------------------------------------------------------------------------------------------------


class FunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class HostedTool(_Open):
    """A tool OpenAI runs (web_search, file_search, code_interpreter, ...): this server runs function tools only,
    so it is a 400."""

    type: str


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[HostedTool, Tag("unsupported")],
    Discriminator(_tag(frozenset({"function"}))),
]
