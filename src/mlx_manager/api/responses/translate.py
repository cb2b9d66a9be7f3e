"""A Responses request, with the conversation it continues, to the engine's request. No MLX here."""

from __future__ import annotations

from typing import Any

from mlx_manager.api.images import content as message_content
from mlx_manager.api.images import url_part
from mlx_manager.api.request import normalize as norm
from mlx_manager.api.request.model import EngineRequest
from mlx_manager.api.request.normalize import ToolChoice, ToolUse, bad
from mlx_manager.api.responses.items import FunctionTool
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.engine.types import ChatPrompt

_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as the conversation keeps it (and stores it): the items as the client sent them."""
    if isinstance(req.input, str):
        return [{"type": "message", "role": "user", "content": req.input}]
    return [item.model_dump(exclude_unset=True) for item in req.input]


def _text(content: Any, param: str) -> str:
    text = _content(content, param, images=False)
    assert isinstance(text, str)
    return text


def _content(content: Any, param: str, images: bool) -> str | list[dict[str, Any]]:
    """A string, or text and (in user messages, for vision models) input_image parts in order."""
    if isinstance(content, str):
        return content
    if content is not None and not isinstance(content, list):
        raise bad("Content must be a string or a list of content parts.", param)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_image" and images:
            if part.get("file_id") is not None:
                raise bad("input_image by file_id is not supported; send image_url as a data: URL.", f"{param}.{j}")
            parts.append(url_part(part.get("image_url"), f"{param}.{j}", "input_image"))
            continue
        if kind not in _TEXT_PARTS:
            where = "; send text (and input_image in user messages, for vision models)"
            raise bad(f"Content parts of type '{kind}' are not supported here{where}.", f"{param}.{j}")
        text = part.get("text") or part.get("refusal") or ""
        if not isinstance(text, str):
            raise bad(f"The text of a '{kind}' part must be a string.", f"{param}.{j}.text")
        parts.append({"type": "text", "text": text})
    return message_content(parts, "")


def chat_messages(items: list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
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
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise bad(f"Unknown message role '{role}'.", f"{param}.role")
            if role == "assistant":
                text = _text(item.get("content"), f"{param}.content")
                message = assistant()
                message["content"] = (message["content"] + text) if message["content"] else text
            else:
                text_or_parts = _content(item.get("content"), f"{param}.content", images=role == "user")
                out.append({"role": "system" if role == "developer" else role, "content": text_or_parts})
        elif kind == "function_call":
            _strings(item, ("call_id", "name", "arguments"), param)
            call = {"id": item.get("call_id"), "type": "function"}
            call["function"] = {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}
            assistant().setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            _strings(item, ("call_id",), param)
            output = item.get("output")
            content = output if isinstance(output, str) else _text(output, f"{param}.output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
        elif kind == "reasoning":
            key = "content" if item.get("content") else "summary"
            parts = item.get(key) or []
            if not isinstance(parts, list):
                raise bad(f"The {key} of a reasoning item must be a list of parts.", f"{param}.{key}")
            reasoning.append("".join(str(p.get("text", "")) for p in parts if isinstance(p, dict)))
        else:
            raise bad(f"Input items of type '{kind}' are not supported by this server.", f"{param}.type")
    return out


def _strings(item: dict[str, Any], keys: tuple[str, ...], param: str) -> None:
    for key in keys:
        if item.get(key) is not None and not isinstance(item[key], str):
            raise bad(f"'{key}' must be a string.", f"{param}.{key}")


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
        messages=chat_messages(history, req.instructions),
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
