"""A chat as Markdown: one section per message, images inline as data: URLs, and each reply's numbers."""

from __future__ import annotations

from datetime import UTC, datetime

from mlx_manager.db.models import Chat, ChatMessage

STATUS_NOTES = {
    "streaming": "interrupted",
    "interrupted": "interrupted",
    "stopped": "stopped",
    "error": "failed",
}


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def reply_numbers(message: ChatMessage) -> str:
    """Tokens, time to the first token, decode speed (from the first token on) and how the reply ended."""
    parts: list[str] = []
    if message.completion_tokens:
        parts.append(f"{message.completion_tokens} tokens")
    if message.ttft_ms is not None:
        parts.append(f"first token after {message.ttft_ms / 1000:.2f} s")
    if message.completion_tokens and message.completion_tokens > 1 and message.decode_ms:
        parts.append(f"{(message.completion_tokens - 1) / (message.decode_ms / 1000):.1f} tokens/s")
    if message.finish_reason == "length":
        parts.append("cut at max tokens")
    if message.status in STATUS_NOTES:
        parts.append(STATUS_NOTES[message.status])
    return " · ".join(parts)


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return ticks


def _section(message: ChatMessage) -> list[str]:
    if message.role == "user":
        lines = ["## You", ""]
    else:
        lines = [f"## Assistant{f' ({message.model})' if message.model else ''}", ""]
    if message.reasoning:
        lines += [*(f"> {line}" for line in ["**Thinking**", "", *message.reasoning.splitlines()]), ""]
    if message.content:
        lines += [message.content, ""]
    lines += [f"![Image {i}]({url})" for i, url in enumerate(message.images, 1)]
    if message.images:
        lines.append("")
    for call in message.tool_calls or []:
        arguments = str(call.get("arguments", ""))
        fence = _fence(arguments)
        lines += [f"Tool call `{call.get('name', '')}`:", "", f"{fence}json", arguments, fence, ""]
    if message.error:
        lines += [f"> Error: {message.error}", ""]
    numbers = reply_numbers(message) if message.role == "assistant" else ""
    if numbers:
        lines += [f"_{numbers}_", ""]
    return lines


def markdown(chat: Chat, messages: list[ChatMessage]) -> str:
    lines = [f"# {chat.title}", ""]
    if chat.model:
        lines.append(f"- Model: {chat.model}")
    lines += [f"- Started: {_when(chat.created_at)}", f"- Last change: {_when(chat.updated_at)}", ""]
    if chat.options.get("system_prompt"):
        lines += ["## System", "", str(chat.options["system_prompt"]), ""]
    for message in messages:
        lines += _section(message)
    return "\n".join(lines).rstrip() + "\n"
