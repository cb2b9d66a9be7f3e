"""Responses input items to the engine's chat prompt, and an engine reply to Responses output items."""

from __future__ import annotations

import uuid
from typing import Any

from mlx_manager.api.images import content as message_content
from mlx_manager.api.images import url_part
from mlx_manager.api.replies import Reply
from mlx_manager.api.request import normalize as norm
from mlx_manager.api.request.model import EngineRequest
from mlx_manager.api.request.normalize import ToolChoice, ToolUse, bad
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.engine.types import ChatPrompt, GenerationChunk
from mlx_manager.engine.types import Usage as EngineUsage

_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    if isinstance(req.input, str):
        return [{"type": "message", "role": "user", "content": req.input}]
    return list(req.input)


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
        if tool.get("type") != "function" or not tool.get("name"):
            raise bad(
                f"Tool type '{tool.get('type')}' is not supported; this server runs function tools only.",
                f"tools.{i}",
            )
        function = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
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


def output_items(reply: Reply) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply.reasoning:
        items.append(reasoning_item(new_id("rs"), reply.reasoning, "completed"))
    if reply.content or not reply.tool_calls:
        items.append(message_item(new_id("msg"), reply.content, "completed"))
    for call in reply.tool_calls:
        items.append(function_call_item(new_id("fc"), call.id, call.name, call.arguments or "{}", "completed"))
    return items


def reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [output_text(text)]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments}
    return {**item, "status": status}


def reasoning_tokens(chunks: list[GenerationChunk]) -> int:
    """Tokens whose output was reasoning only (a chunk mixing the two counts as answer)."""
    return sum(len(c.token_ids) for c in chunks if c.reasoning and not (c.text or c.tool_calls))


def usage(engine_usage: EngineUsage, reasoning: int) -> dict[str, Any]:
    return {
        "input_tokens": engine_usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": engine_usage.cached_tokens},
        "output_tokens": engine_usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": engine_usage.total_tokens,
    }


def response_object(
    req: ResponsesRequest,
    response_id: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    usage_out: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": req.model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "reasoning": req.reasoning.model_dump() if req.reasoning else {"effort": None, "summary": None},
        "store": req.store,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": {"format": req.text.format.model_dump(by_alias=True, exclude_none=True)}
        if req.text and req.text.format
        else {"format": {"type": "text"}},
        "tool_choice": req.tool_choice or "auto",
        "tools": req.tools or [],
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "truncation": req.truncation or "disabled",
        "usage": usage_out,
        "metadata": req.metadata or {},
        "user": req.user,
    }
