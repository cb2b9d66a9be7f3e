"""Engine replies as Responses output: items (reasoning, message, function call), usage and the response object."""

from __future__ import annotations

import uuid

from mlx_manager.api.replies import Reply
from mlx_manager.api.responses.output import (
    IncompleteDetails,
    InputTokensDetails,
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputReasoning,
    OutputText,
    OutputTokensDetails,
    ReasoningText,
    ResponseObject,
    ResponseUsage,
    Status,
)
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.engine.types import GenerationChunk
from mlx_manager.engine.types import Usage as EngineUsage


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def output_items(reply: Reply) -> list[OutputItem]:
    items: list[OutputItem] = []
    if reply.reasoning:
        items.append(reasoning_item(new_id("rs"), reply.reasoning, "completed"))
    if reply.content or not reply.tool_calls:
        items.append(message_item(new_id("msg"), reply.content, "completed"))
    for call in reply.tool_calls:
        items.append(function_call_item(new_id("fc"), call.id, call.name, call.arguments or "{}", "completed"))
    return items


def reasoning_item(item_id: str, text: str | None, status: Status) -> OutputReasoning:
    return OutputReasoning(id=item_id, content=[] if text is None else [ReasoningText(text=text)], status=status)


def message_item(item_id: str, text: str | None, status: Status) -> OutputMessage:
    return OutputMessage(id=item_id, status=status, content=[] if text is None else [OutputText(text=text)])


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: Status) -> OutputFunctionCall:
    return OutputFunctionCall(id=item_id, call_id=call_id, name=name, arguments=arguments, status=status)


def reasoning_tokens(chunks: list[GenerationChunk]) -> int:
    """Tokens whose output was reasoning only (a chunk mixing the two counts as answer)."""
    return sum(len(c.token_ids) for c in chunks if c.reasoning and not (c.text or c.tool_calls))


def usage(engine_usage: EngineUsage, reasoning: int) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=engine_usage.prompt_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=engine_usage.cached_tokens),
        output_tokens=engine_usage.completion_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
        total_tokens=engine_usage.total_tokens,
    )


def response_object(
    req: ResponsesRequest,
    response_id: str,
    created: int,
    status: Status,
    output: list[OutputItem],
    usage_out: ResponseUsage | None,
) -> ResponseObject:
    fmt = req.text.format if req.text else None
    return ResponseObject(
        id=response_id,
        created_at=created,
        status=status,
        incomplete_details=IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None,
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        model=req.model,
        output=output,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        previous_response_id=req.previous_response_id,
        reasoning=req.reasoning.model_dump() if req.reasoning else {"effort": None, "summary": None},
        store=req.store,
        temperature=1.0 if req.temperature is None else req.temperature,
        text={"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
        tool_choice=req.tool_choice or "auto",
        tools=[tool.model_dump(exclude_unset=True) for tool in req.tools or []],
        top_p=1.0 if req.top_p is None else req.top_p,
        truncation=req.truncation or "disabled",
        usage=usage_out,
        metadata=req.metadata or {},
        user=req.user,
    )
