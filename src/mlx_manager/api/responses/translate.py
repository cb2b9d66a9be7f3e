"""A Responses request, with the conversation it continues, to the engine's request. No MLX here."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from mlx_manager.api.images import content as message_content
from mlx_manager.api.images import url_part
from mlx_manager.api.request import normalize as norm
from mlx_manager.api.request.model import EngineRequest
from mlx_manager.api.request.normalize import ToolChoice, ToolUse, bad
from mlx_manager.api.responses.items import (
    Content,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputImage,
    InputItem,
    InputText,
    MessageItem,
    OutputTextPart,
    ReasoningItem,
    Refusal,
    Text,
)
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.engine.types import ChatPrompt

# The conversation a request continues, stored as the items were sent (and answered), read back typed.
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as the conversation keeps it (and stores it): the items as the client sent them."""
    if isinstance(req.input, str):
        return [{"type": "message", "role": "user", "content": req.input}]
    return [item.model_dump(exclude_unset=True) for item in req.input]


def _items(history: list[dict[str, Any]]) -> list[InputItem]:
    try:
        return _ITEMS.validate_python(history)
    except ValidationError as exc:  # a stored response from a version that answered differently
        raise bad(f"The conversation cannot be continued: {exc.errors()[0]['msg']}", "previous_response_id") from exc


def _text(content: Content | None, param: str) -> str:
    text = _content(content, param, images=False)
    assert isinstance(text, str)
    return text


def _content(content: Content | None, param: str, images: bool) -> str | list[dict[str, Any]]:
    """A string, or text and (in user messages, for vision models) input_image parts in order."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        if isinstance(part, InputText | OutputTextPart | Text):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, Refusal):
            parts.append({"type": "text", "text": part.refusal})
        elif isinstance(part, InputImage) and not images:
            where = "; send text (and input_image in user messages, for vision models)"
            raise bad(f"Content parts of type 'input_image' are not supported here{where}.", f"{param}.{j}")
        elif isinstance(part, InputImage) and part.file_id is not None:
            raise bad("input_image by file_id is not supported; send image_url as a data: URL.", f"{param}.{j}")
        elif isinstance(part, InputImage):
            parts.append(url_part(part.image_url, f"{param}.{j}", "input_image"))
    return message_content(parts, "")


def chat_messages(items: list[InputItem], instructions: str | None) -> list[dict[str, Any]]:
    """Chat-template messages: function calls join the assistant turn they belong to, reasoning rides along."""
    out: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    reasoning: list[str] = []

    def assistant() -> dict[str, Any]:
        if not out or out[-1]["role"] != "assistant":
            out.append({"role": "assistant", "content": ""})
        if reasoning:
            out[-1]["reasoning_content"] = "\n".join(reasoning)
            reasoning.clear()
        return out[-1]

    for i, item in enumerate(items):
        param = f"input.{i}"
        if isinstance(item, MessageItem) and item.role == "assistant":
            text = _text(item.content, f"{param}.content")
            message = assistant()
            message["content"] = (message["content"] + text) if message["content"] else text
        elif isinstance(item, MessageItem):
            text_or_parts = _content(item.content, f"{param}.content", images=item.role == "user")
            out.append({"role": "system" if item.role == "developer" else item.role, "content": text_or_parts})
        elif isinstance(item, FunctionCallItem):
            function = {"name": item.name, "arguments": item.arguments or "{}"}
            assistant().setdefault("tool_calls", []).append(
                {"id": item.call_id, "type": "function", "function": function}
            )
        elif isinstance(item, FunctionCallOutputItem):
            content = item.output if isinstance(item.output, str) else _text(item.output, f"{param}.output")
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": content})
        elif isinstance(item, ReasoningItem):
            reasoning.append("".join(part.text for part in item.content or item.summary))
    return out


def _tools(req: ResponsesRequest) -> ToolUse:
    tools = []
    for i, tool in enumerate(req.tools or []):
        if not isinstance(tool, FunctionTool):
            raise bad(f"Tool type '{tool.type}' is not supported; this server runs function tools only.", f"tools.{i}")
        function = tool.model_dump(include={"name", "description", "parameters"}, exclude_none=True)
        tools.append({"type": "function", "function": function})
    return norm.tool_use(tools, _tool_choice(req))


def _tool_choice(req: ResponsesRequest) -> ToolChoice:
    choice = req.tool_choice
    named = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "function" else None
    shape = "{'type': 'function', 'name': ...}"
    return norm.tool_choice(choice, str(named) if named else None, req.parallel_tool_calls is not False, shape)


def engine_request(req: ResponsesRequest, history: list[dict[str, Any]]) -> EngineRequest:
    """The conversation so far (stored turns, then this request's input) and this request's settings."""
    tools = _tools(req)
    prompt = ChatPrompt(
        messages=chat_messages(_items(history), req.instructions),
        template_kwargs=norm.template_kwargs(req.reasoning.effort if req.reasoning else None),
        tools=tools.tools or None,
        parse_tool_calls=bool(tools.tools),
        parallel_tool_calls=tools.parallel,
        force_tool=tools.force,
    )
    fmt = req.text.format if req.text else None
    missing = "text.format json_schema needs a schema."
    structured = norm.response_format(
        fmt.type if fmt else None, fmt.schema_ if fmt else None, missing, "text.format.schema"
    )
    norm.one_constraint(tools, structured, "text.format")
    params = norm.sampling_params(
        req,
        max_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        response_format=structured,
        max_reasoning_tokens=req.max_reasoning_tokens,
    )
    return EngineRequest(req.model, prompt, params, norm.explicit_fields(req, {"max_output_tokens": "max_tokens"}))
