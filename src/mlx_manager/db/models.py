"""The tables. Each change to them comes with a migration in migrations/versions."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal

from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Integer
from sqlmodel import AutoString, Field, SQLModel

from mlx_manager.int64 import PositiveInt


class StoredResponse(SQLModel, table=True):
    """A Responses API result kept for `previous_response_id`: the conversation so far and what was answered."""

    __tablename__ = "responses"

    id: str = Field(primary_key=True)
    created_at: int = Field(index=True)
    model: str
    # Input items of the whole conversation up to this response (earlier turns included), in Responses format.
    input_items: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    instructions: str | None = None
    # The full response object as returned to the client.
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Who made it: a user's uid, "server" for the server key, None for an anonymous caller (open mode).
    owner: str | None = Field(default=None, index=True)


def _now() -> float:
    return time.time()


def new_uid() -> str:
    return secrets.token_urlsafe(16)


# AUTOINCREMENT: a deleted row's id is never handed out again (audit rows and old credentials name it).
NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}


class User(SQLModel, table=True):
    """A UI/API user. The first one registered is the admin; later ones wait for an admin's approval.
    Usernames are unique regardless of case: migration 0003's unique index on lower(username), which a later
    batch migration of this table must create again (batch copies cannot reflect an expression index)."""

    __tablename__ = "users"
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    # Random and never reused: what session tokens and stored responses name.
    uid: str = Field(default_factory=new_uid, index=True, unique=True)
    username: str = Field(index=True, unique=True)
    password_hash: str  # argon2
    is_admin: bool = False
    is_approved: bool = False
    created_at: float = Field(default_factory=_now)
    last_login_at: float | None = None


class ApiKey(SQLModel, table=True):
    """A per-user key for /v1 and the Anthropic routes: shown once, stored as a SHA-256 hash, revocable."""

    __tablename__ = "api_keys"
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str
    prefix: str  # the first characters, so a user can tell keys apart
    key_hash: str = Field(index=True, unique=True)
    created_at: float = Field(default_factory=_now)
    last_used_at: float | None = None
    revoked_at: float | None = None


class UserSession(SQLModel, table=True):
    """A signed-in session (the `sid` of its token): logout, a password change or an admin removes it."""

    __tablename__ = "sessions"

    id: str = Field(primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: float = Field(default_factory=_now)
    expires_at: float = Field(index=True)


class AuditEntry(SQLModel, table=True):
    """Request metadata only: never prompt or response text."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    time: float = Field(default_factory=_now, index=True)
    request_id: str = ""
    user_id: int | None = Field(default=None, index=True)
    api_key_id: int | None = None
    method: str = ""
    endpoint: str = ""
    model: str = Field(default="", index=True)
    status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    backend: str = "local"


class Download(SQLModel, table=True):
    """A Hugging Face repository download; partial files in the HF cache carry the bytes between restarts."""

    __tablename__ = "downloads"

    id: str = Field(primary_key=True)
    repo_id: str = Field(index=True)
    revision: str = "main"
    status: str = "queued"  # queued, downloading, paused, completed, failed, cancelled
    total_bytes: int = 0
    downloaded_bytes: int = 0
    error: str | None = None
    files: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=_now)
    updated_at: float = Field(default_factory=_now)


ProfileName = Annotated[str, PydanticField(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
ModelName = Annotated[str, PydanticField(min_length=1, max_length=512)]
Temperature = Annotated[float, PydanticField(ge=0, le=2)]
TopP = Annotated[float, PydanticField(gt=0, le=1)]
SystemPrompt = Annotated[str, PydanticField(max_length=200_000)]
KVBits = Literal[0, 4, 8]
KVGroupSize = Literal[32, 64, 128]


class ProfileBase(SQLModel):
    """A profile's settings, declared once: the table below, the /api bodies and the in-memory index derive from
    it. Lengths only validate input: the columns stay plain strings (sa_type), as migration 0002 made them."""

    name: ProfileName = Field(
        index=True, unique=True, sa_type=AutoString, description="Usable as the `model` of API requests."
    )
    model: ModelName = Field(sa_type=AutoString, description="The model the profile runs.")
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: PositiveInt | None = None
    system_prompt: SystemPrompt | None = Field(
        default=None, sa_type=AutoString, description="Used when a request has no system prompt."
    )
    thinking: bool | None = Field(default=None, description="enable_thinking for templates that have it.")
    context_length: PositiveInt | None = Field(default=None, description="A cap on prompt + completion tokens.")
    kv_bits: KVBits | None = Field(
        default=None,
        sa_type=Integer,
        description="4 or 8: quantize the model's KV cache when this profile's request loads it (0: float KV);"
        " none: the server's kv_bits. A model already loaded keeps its own setting.",
    )
    kv_group_size: KVGroupSize | None = Field(
        default=None,
        sa_type=Integer,
        description="32, 64 or 128: values per KV quantization group (with kv_bits 4 or 8); none: 64.",
    )


class Profile(ProfileBase, table=True):
    """A model plus generation defaults, usable as the `model` name in API requests."""

    __tablename__ = "profiles"

    id: int | None = Field(default=None, primary_key=True)
    created_at: float = Field(default_factory=_now)
    updated_at: float = Field(default_factory=_now)


class Setting(SQLModel, table=True):
    """Key/value settings edited at run time (pool limits, the server secret), as JSON values."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True)
    value: Any = Field(sa_column=Column(JSON, nullable=True))


class Credential(SQLModel, table=True):
    """A provider secret, encrypted at rest with a key derived from the server secret; never returned once saved."""

    __tablename__ = "credentials"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    provider: str
    secret_encrypted: str
    created_at: float = Field(default_factory=_now)


class Backend(SQLModel, table=True):
    """Where requests can go: this server, an OpenAI-compatible or an Anthropic-compatible base URL."""

    __tablename__ = "backends"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    kind: str  # local, openai, anthropic
    base_url: str | None = None
    credential_id: int | None = Field(default=None, foreign_key="credentials.id")
    timeout_seconds: float = 60.0
    enabled: bool = True


class RoutingRule(SQLModel, table=True):
    """Maps requested model names (exact, glob or regex) to backends, highest priority first."""

    __tablename__ = "routing_rules"

    id: int | None = Field(default=None, primary_key=True)
    priority: int = Field(default=0, index=True)
    pattern: str
    match_type: str = "exact"  # exact, glob, regex
    backend_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    remote_model: str | None = None
    enabled: bool = True


class Chat(SQLModel, table=True):
    """A web UI conversation, kept per owner; its messages are rows of chat_messages, in id order."""

    __tablename__ = "chats"
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    # A user's uid; None is the anonymous owner (open mode, before any account exists).
    owner: str | None = Field(default=None, index=True)
    title: str
    model: str = ""
    # The chat's own options (system_prompt, temperature, top_p, max_tokens), as the UI last set them.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=_now)
    updated_at: float = Field(default_factory=_now, index=True)


class ChatMessage(SQLModel, table=True):
    """One message of a chat. An assistant reply also records what made it: model, parameters, timings, tokens,
    and its status (a reply still `streaming` when read back was cut off by a reload or a crash)."""

    __tablename__ = "chat_messages"
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(foreign_key="chats.id", index=True)
    role: str  # user, assistant
    content: str = ""
    images: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # data: URLs
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: str = "complete"  # complete, streaming, interrupted, stopped, error
    error: str | None = None
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None  # from sending the request to the first token
    decode_ms: float | None = None  # from the first token to the last
    created_at: float = Field(default_factory=_now)
    updated_at: float = Field(default_factory=_now)


class BatchFile(SQLModel, table=True):
    """A file of the Files API (api/batches): a batch's input, output or errors. The bytes live under the data
    dir's files/ folder (manager/batch_store.py); `owner` as for stored responses (a user's uid, "server")."""

    __tablename__ = "batch_files"

    id: str = Field(primary_key=True)
    owner: str | None = Field(default=None, index=True)
    filename: str
    purpose: str  # batch, batch_output
    bytes: int
    created_at: int = Field(index=True)


class Batch(SQLModel, table=True):
    """A batch job of the Batch API: its input file's lines run in the background, results in its output and
    error files. `status` moves as OpenAI documents: validating, in_progress, finalizing, completed; failed;
    cancelling, cancelled."""

    __tablename__ = "batches"

    id: str = Field(primary_key=True)
    owner: str | None = Field(default=None, index=True)
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str = Field(index=True)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    request_total: int = 0
    request_completed: int = 0
    request_failed: int = 0
    batch_metadata: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSON, nullable=True))
    created_at: int = Field(index=True)
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expires_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
