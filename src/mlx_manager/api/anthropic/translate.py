"""Anthropic requests to the engine's own request (the one the OpenAI API builds too), and replies back."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from mlx_manager.api.anthropic.schemas import (
    ContentBlock,
    ImageBlockParam,
    MessageParam,
    MessagesRequest,
    MessagesRequestBase,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolResultBlockParam,
    ToolUseBlock,
    Usage,
)
from mlx_manager.api.images import ImageRef, image_part
from mlx_manager.api.images import content as message_content
from mlx_manager.api.replies import Reply
from mlx_manager.api.request import normalize as norm
from mlx_manager.api.request.model import EngineRequest
from mlx_manager.api.request.normalize import Limits, ToolChoice, ToolUse, bad
from mlx_manager.engine.types import ChatPrompt, SamplingParams
from mlx_manager.engine.types import Usage as EngineUsage

log = logging.getLogger(__name__)

_STOP_REASONS: dict[str | None, StopReason] = {"length": "max_tokens", "tool_calls": "tool_use"}


# Anthropic's tool_choice types in the engine's terms.
_MODES: dict[str, Literal["auto", "none", "required", "function"]] = {
    "auto": "auto",
    "none": "none",
    "any": "required",
    "tool": "function",
}


def _text(blocks: Any, param: str) -> str:
    """Text of a string or a list of text blocks (system prompts, tool results): no images there."""
    if isinstance(blocks, str):
        return blocks
    texts = []
    for block in blocks or []:
        if block.type != "text":
            raise bad(
                f"Content blocks of type '{block.type}' are not supported here; send text"
                " (images go in user message content, for vision models).",
                param,
            )
        texts.append(block.text)
    return "\n".join(texts)


def _image_ref(block: ImageBlockParam, param: str) -> ImageRef:
    source = block.source
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return ImageRef(param=param, kind="image", data=source["data"])
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return ImageRef(param=param, kind="image", url=source["url"])  # refused once decoded: nothing is fetched
    raise bad(f"Image source type '{source.get('type')}' is not supported; send base64 data.", f"{param}.source")


def _tool_result(block: ToolResultBlockParam, param: str) -> dict[str, Any]:
    content = _text(block.content or "", param)
    if block.is_error:
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": content}


def _messages(req: MessagesRequestBase) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system:
        out.append({"role": "system", "content": _text(req.system, "system")})
    for i, msg in enumerate(req.messages):
        out.extend(_message(msg, f"messages.{i}.content"))
    return out


def _message(msg: MessageParam, param: str) -> list[dict[str, Any]]:
    if isinstance(msg.content, str):
        return [{"role": msg.role, "content": msg.content}]
    texts: list[dict[str, Any]] = []  # text and image parts, in order
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(msg.content):
        where = f"{param}.{j}"
        kind = block.type
        if kind == "text":
            texts.append({"type": "text", "text": block.text})  # type: ignore[union-attr]
        elif kind == "image" and msg.role == "user":
            texts.append(image_part(_image_ref(block, where)))  # type: ignore[arg-type]
        elif kind == "tool_result" and msg.role == "user":
            results.append(_tool_result(block, where))  # type: ignore[arg-type]
        elif kind == "tool_use" and msg.role == "assistant":
            calls.append(
                {
                    "id": block.id,  # type: ignore[union-attr]
                    "type": "function",
                    "function": {"name": block.name, "arguments": json.dumps(block.input)},  # type: ignore[union-attr]
                }
            )
        elif kind == "thinking" and msg.role == "assistant":
            reasoning.append(block.thinking)  # type: ignore[union-attr]
        elif kind == "redacted_thinking" and msg.role == "assistant":
            continue  # encrypted by another provider: nothing a local model can read
        else:
            raise bad(f"Content blocks of type '{kind}' are not supported in {msg.role} messages here.", where)
    if msg.role == "user":
        # Tool results answer the previous assistant turn, so they come before the user's new text.
        return results + ([{"role": "user", "content": message_content(texts, "\n")}] if texts or not results else [])
    message: dict[str, Any] = {"role": "assistant", "content": message_content(texts, "\n")}
    if reasoning:
        message["reasoning_content"] = "\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tools(req: MessagesRequestBase) -> ToolUse:
    """The tools as OpenAI function tools, and the call the model must make."""
    choice = req.tool_choice
    kind = choice.type if choice is not None else "auto"
    parallel = not (choice is not None and choice.disable_parallel_tool_use)
    if kind == "none" or not req.tools:
        return norm.tool_use([], ToolChoice(_MODES[kind], choice.name if choice else None, parallel))
    tools = []
    for i, tool in enumerate(req.tools):
        if tool.type not in (None, "custom"):
            raise bad(
                f"Tool type '{tool.type}' is a server tool Anthropic hosts; this server runs client tools only.",
                f"tools.{i}.type",
            )
        if tool.input_schema is None:
            raise bad("Each tool needs an input_schema.", f"tools.{i}.input_schema")
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description:
            function["description"] = tool.description
        tools.append({"type": "function", "function": function})
    return norm.tool_use(tools, ToolChoice(_MODES[kind], choice.name if choice else None, parallel))


def chat_prompt(req: MessagesRequestBase, tools: ToolUse | None = None) -> ChatPrompt:
    tools = tools or _tools(req)
    messages = _messages(req)
    thinking = req.thinking is not None and req.thinking.type != "disabled"
    if tools.force is not None and thinking:
        raise bad("Thinking may not be enabled when tool_choice forces tool use.", "thinking")
    kwargs: dict[str, Any] = {}
    if req.thinking is not None or tools.force is not None:
        # Without `thinking` the model's own default holds; reasoning it writes still comes back as thinking blocks.
        # A forced tool_use is the reply's first block (Anthropic prefills the turn): no thinking before it.
        kwargs["enable_thinking"] = thinking
    effort = req.output_config.effort if req.output_config is not None else None
    last = req.messages[-1]
    return ChatPrompt(
        messages=messages,
        template_kwargs=norm.template_kwargs(effort, kwargs),
        tools=tools.tools or None,
        parse_tool_calls=bool(tools.tools),
        parallel_tool_calls=tools.parallel,
        force_tool=tools.force,
        allow_reasoning=tools.force is None,
        continue_final=last.role == "assistant",  # a prefilled reply: continue it
    )


def engine_request(req: MessagesRequest, limits: Limits) -> EngineRequest:
    tools = _tools(req)
    prompt = chat_prompt(req, tools)
    fmt = req.output_config.format if req.output_config is not None else None
    structured = norm.response_format(
        fmt.type if fmt else None, fmt.schema_ if fmt else None, "", "output_config.format"
    )
    norm.one_constraint(tools, structured, "output_config.format")
    return EngineRequest(req.model, prompt, sampling_params(req, limits, structured), norm.explicit_fields(req))


def sampling_params(req: MessagesRequest, limits: Limits, structured: dict[str, Any] | None = None) -> SamplingParams:
    budget = None
    if req.thinking is not None and req.thinking.type == "enabled" and req.thinking.budget_tokens is not None:
        if req.thinking.budget_tokens >= req.max_tokens:
            raise bad("thinking.budget_tokens must be less than max_tokens.", "thinking.budget_tokens")
        budget = req.thinking.budget_tokens
    return norm.sampling_params(
        req,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,  # Anthropic's own field; min_p and the other shared extensions come from `req`
        stop=norm.stop_strings(req.stop_sequences, limits, "stop_sequences"),
        max_reasoning_tokens=budget,
        strict_reasoning_budget=False,  # clients send thinking to every model; ones that cannot reason ignore it
        response_format=structured,
    )


def shows_thinking(req: MessagesRequest) -> bool:
    """`display: "omitted"` keeps the thinking blocks but not their text."""
    return req.thinking is None or req.thinking.display != "omitted"


def stop_reason(reply_reason: str | None, stop_sequence: str | None) -> StopReason:
    if stop_sequence:
        return "stop_sequence"
    return _STOP_REASONS.get(reply_reason, "end_turn")


def usage(engine_usage: EngineUsage) -> Usage:
    return Usage(
        input_tokens=engine_usage.prompt_tokens - engine_usage.cached_tokens,
        output_tokens=engine_usage.completion_tokens,
        cache_read_input_tokens=engine_usage.cached_tokens,
    )


def tool_input(arguments: str) -> dict[str, Any] | None:
    """A call's arguments as the object Anthropic's tool_use.input must be, or None if they are not one."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def content_blocks(reply: Reply, show_thinking: bool = True) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    if reply.reasoning:
        blocks.append(ThinkingBlock(thinking=reply.reasoning if show_thinking else ""))
    text = reply.content.lstrip()
    uses: list[ContentBlock] = []
    for call in reply.tool_calls:
        args = tool_input(call.arguments)
        if args is None:  # never drop what the model wrote: unparseable arguments go back as text
            log.warning("tool call %s has arguments that are not a JSON object; returned as text", call.name)
            text += f"\n{call.name}({call.arguments})"
            continue
        uses.append(ToolUseBlock(id=to_tool_use_id(call.id), name=call.name, input=args))
    if text.strip() or not (blocks or uses):
        blocks.append(TextBlock(text=text))
    return blocks + uses


def to_tool_use_id(call_id: str) -> str:
    """Anthropic's ids look like toolu_...; the engine's call_... ids get that prefix instead."""
    return "toolu_" + call_id.removeprefix("call_") if call_id else call_id
