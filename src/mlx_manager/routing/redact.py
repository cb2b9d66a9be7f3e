"""What a caller may see of a backend's failure: its status, the URL tried (no user info, no query) and the
backend's own error message, unless that message echoes the request's credential or headers (then it is withheld)
and with key-shaped and header-shaped fragments taken out; never the raw body, which goes to the server log only,
with the credential taken out there too."""

from __future__ import annotations

import json
import re

import httpx

REDACTED = "[redacted]"
WITHHELD = "(the backend's message echoed the request's headers or credential; it is in the server log)"
_WINDOW = 8  # a piece of a credential this long counts as the credential (a backend that shows "sk-abc…xyz")
_MESSAGE_CHARS = 300
_SENSITIVE = re.compile(r"(?i)auth|key|token|secret|cookie|session|password|^x-")
# A header line or bearer token (the name is kept) and the usual shapes of provider keys.
_NAMED = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|api[-_]?key|cookie|set-cookie|bearer|basic)\b\W{0,5}"
    r"(?:(?:bearer|basic|token)\s+)?[^\s,;\"'}]+"
)
_KEY_SHAPED = re.compile(r"\b(?:sk|pk|rk|mlxm|mlxs)-[A-Za-z0-9_-]{8,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def sensitive_values(request: httpx.Request) -> list[str]:
    """What a request carries that callers must never see back: auth header values (with and without their
    scheme), and the values of other headers that look like keys or tokens."""
    found = []
    for name, value in request.headers.items():
        if _SENSITIVE.search(name) and value.strip():
            found += [value.strip(), value.split(" ", 1)[-1].strip()]
    return [v for v in dict.fromkeys(found) if len(v) >= 4]


def redact(text: str, secrets: list[str]) -> str:
    """Every secret, and any piece of one `_WINDOW` characters long, replaced; then header- and key-shaped parts."""
    hidden = _hidden(text, secrets)
    out, i = [], 0
    while i < len(text):
        if hidden[i]:
            out.append(REDACTED)
            while i < len(text) and hidden[i]:
                i += 1
        else:
            out.append(text[i])
            i += 1
    return _KEY_SHAPED.sub(REDACTED, _NAMED.sub(lambda m: f"{m.group(1)} {REDACTED}", "".join(out)))


def _hidden(text: str, secrets: list[str]) -> list[bool]:
    """Which characters of `text` belong to a secret or to a piece of one `_WINDOW` characters long."""
    hidden = [False] * len(text)
    for secret in secrets:
        width = min(_WINDOW, len(secret))
        pieces = {secret[i : i + width] for i in range(len(secret) - width + 1)}
        for i in range(len(text) - width + 1):
            if text[i : i + width] in pieces:
                hidden[i : i + width] = [True] * width
    return hidden


def _mentions(text: str, secrets: list[str]) -> bool:
    return any(_hidden(text, secrets))


def public_url(url: httpx.URL) -> str:
    """The URL without user info or query string (either may hold a key)."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


def upstream_message(body: bytes, request: httpx.Request) -> str | None:
    """The backend's own error message (OpenAI's or Anthropic's `error.message`, or a top-level `message` /
    `detail`) for the caller, shortened; `WITHHELD` when it echoes the request; None when the body has none."""
    message = _error_message(body)
    if message is None:
        return None
    message = _CONTROL.sub(" ", message)
    secrets = sensitive_values(request)
    if _mentions(message, secrets) or _echoes_headers(message, request):
        return WITHHELD
    text = redact(message, secrets)
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def _error_message(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    for holder in [data.get("error"), data] if isinstance(data, dict) else []:
        if isinstance(holder, str):
            return holder
        if isinstance(holder, dict):
            for key in ("message", "detail"):
                if isinstance(holder.get(key), str):
                    return str(holder[key])
    return None


def _echoes_headers(message: str, request: httpx.Request) -> bool:
    """Two or more of the request's header names, each followed by a value: a dump of the request."""
    names = {name.lower() for name in request.headers}
    lowered = message.lower()
    found = sum(1 for name in names if re.search(rf"\b{re.escape(name)}\b\W{{0,4}}\S", lowered))
    return found >= 2
