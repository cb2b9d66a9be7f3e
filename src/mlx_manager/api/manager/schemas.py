"""Request and response bodies of the /api routes (Base / Create / Update / Public per resource), and the
RFC 7807 problem every error is. Times are Unix epoch seconds."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from mlx_manager.api.manager.fields import Count, Int64, PartialUpdate, PositiveInt, RowId, Strict
from mlx_manager.config import parse_bytes
from mlx_manager.db.models import ModelName, ProfileBase, ProfileName
from mlx_manager.db.models import SystemPrompt as SystemPrompt  # the chats' options share the profiles' bounds
from mlx_manager.db.models import Temperature as Temperature
from mlx_manager.db.models import TopP as TopP
from mlx_manager.manager.settings_store import ManagedSettings

# --- problems -----------------------------------------------------------------------------------


class InvalidParam(BaseModel):
    loc: list[str]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 7807 problem details (`application/problem+json`); `code` names the problem for programs."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    code: str | None = None
    errors: list[InvalidParam] | None = Field(default=None, description="Each invalid field (validation errors).")
    request_id: str | None = Field(default=None, description="The request's X-Request-ID, to find it in the log.")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its error statuses, each a Problem."""
    return {status: {"model": Problem, "description": "A problem (RFC 7807)."} for status in statuses}


def download(description: str, text_media: str, json_schema: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an export route: one download, as text (`text_media`) or as JSON (`?format=json`)."""
    content = {text_media: {"schema": {"type": "string"}}, "application/json": {"schema": json_schema}}
    return {200: {"description": description, "content": content}}


# --- users ----------------------------------------------------------------------------------------

Username = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class UserBase(Strict):
    username: Username


class UserCreate(UserBase):
    password: Password


class RegisterRequest(UserCreate):
    setup_token: str | None = Field(
        default=None,
        max_length=1024,
        description="For the first account where the server asks for it (`setup_required`): the one-time setup"
        " token from the server's log, or the server's API key.",
    )


class PasswordChange(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Password


class SessionsRevoked(BaseModel):
    user_id: int
    sessions_ended: int


class UserUpdate(PartialUpdate):
    is_admin: bool | None = None
    is_approved: bool | None = None


class UserPublic(BaseModel):
    id: int
    username: str
    is_admin: bool
    is_approved: bool
    created_at: float
    last_login_at: float | None


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionToken(BaseModel):
    access_token: str = Field(description="Send as 'Authorization: Bearer TOKEN' to /api and the model APIs.")
    token_type: Literal["bearer"] = "bearer"
    expires_at: float
    user: UserPublic


class AuthStatus(BaseModel):
    has_users: bool = Field(description="False until the first account (the admin) is registered.")
    setup_required: bool = Field(
        default=False,
        description="True while no account exists and making the first one needs the setup token (from the"
        " server's log) or the server's API key, sent as `setup_token`.",
    )
    registration_open: bool = Field(default=True, description="Whether POST /api/auth/register takes new users.")


# --- API keys -------------------------------------------------------------------------------------


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyPublic(BaseModel):
    id: int
    user_id: int
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown this once, never again.")


# --- audit ----------------------------------------------------------------------------------------


class AuditEntryPublic(BaseModel):
    id: int
    time: float
    request_id: str
    user_id: int | None
    username: str | None = Field(description="The user's name; null when anonymous or the user was deleted.")
    api_key_id: int | None
    api_key_name: str | None = Field(description="The key's name; null without a key or once it was deleted.")
    method: str
    endpoint: str
    model: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    backend: str


class AuditPage(BaseModel):
    items: list[AuditEntryPublic]
    total: int = Field(description="Entries matching the filters, all pages together.")
    limit: int
    offset: int


# --- profiles -------------------------------------------------------------------------------------
# The fields are declared once, in db/models.py's ProfileBase, which the table derives from too. (mypy cannot merge
# SQLModel's typed model_config with pydantic's, hence the ignores; pydantic merges them.)


class ProfileCreate(ProfileBase, Strict):  # type: ignore[misc]
    pass


class ProfileUpdate(ProfileBase, PartialUpdate):  # type: ignore[misc]
    """Only the fields sent change; null clears an optional one."""

    clearable = frozenset(name for name, field in ProfileBase.model_fields.items() if not field.is_required())

    name: ProfileName | None = None  # type: ignore[assignment]
    model: ModelName | None = None  # type: ignore[assignment]


class ProfileDuplicate(Strict):
    name: ProfileName | None = Field(default=None, description="The copy's name; default '<name>-copy'.")


class ProfilePublic(ProfileBase, Strict):  # type: ignore[misc]
    id: int
    created_at: float
    updated_at: float


# --- routing --------------------------------------------------------------------------------------


class CredentialCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    provider: str = Field(min_length=1, max_length=64)
    secret: str = Field(min_length=1, max_length=4096)


class CredentialPublic(BaseModel):
    """Never the secret: once saved it only leaves the server in requests to its provider."""

    id: int
    name: str
    provider: str
    created_at: float


def _http_url(value: str) -> str:
    """A URL the remote clients can send to (else a 400 naming base_url, not a 500 at the first routed request)."""
    url = value.strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or any(c.isspace() for c in url):
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


BaseUrl = Annotated[str, AfterValidator(_http_url)]


class BackendCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    kind: Literal["local", "openai", "anthropic"]
    base_url: BaseUrl | None = None
    credential_id: RowId | None = None
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    enabled: bool = True


class BackendUpdate(PartialUpdate):
    clearable = frozenset({"base_url", "credential_id"})

    base_url: BaseUrl | None = None
    credential_id: RowId | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    enabled: bool | None = None


class BackendPublic(BackendCreate):
    model_config = ConfigDict(extra="ignore")
    id: int


class RuleCreate(Strict):
    pattern: str = Field(min_length=1, max_length=512)
    match_type: Literal["exact", "glob", "regex"] = "exact"
    priority: Int64 = 0
    backend_ids: list[RowId] = Field(min_length=1)
    remote_model: str | None = None
    enabled: bool = True


class RuleUpdate(PartialUpdate):
    clearable = frozenset({"remote_model"})

    pattern: str | None = Field(default=None, min_length=1, max_length=512)
    match_type: Literal["exact", "glob", "regex"] | None = None
    priority: Int64 | None = None
    backend_ids: list[RowId] | None = Field(default=None, min_length=1)
    remote_model: str | None = None
    enabled: bool | None = None


class RulePublic(RuleCreate):
    model_config = ConfigDict(extra="ignore")
    id: int


class RouteTest(BaseModel):
    model: str
    rule_id: int | None
    backends: list[str]  # in the order they would be tried now
    upstream_model: str


class BackendStatus(BaseModel):
    name: str
    breaker: str
    failures: int
    outstanding: int
    served: int
    healthy: bool


# --- settings -------------------------------------------------------------------------------------


class SettingsPublic(ManagedSettings):
    overridden: list[str] = Field(description="Settings saved here, overriding the server's configuration.")


class SettingsUpdate(PartialUpdate):
    """Only the fields sent change; null removes the saved value (the configured one applies again)."""

    clearable = frozenset(ManagedSettings.model_fields)

    memory_budget_bytes: Count | None = Field(default=None, description="Bytes, or '48GB', '512MiB', '75%' of RAM.")
    max_models: PositiveInt | None = None
    idle_ttl_seconds: Annotated[float, Field(ge=0)] | None = None
    room_wait_seconds: Annotated[float, Field(ge=0)] | None = None
    preload: list[Annotated[str, Field(min_length=1, max_length=512)]] | None = None
    require_api_key: bool | None = None
    audit_retention_days: Count | None = None
    allow_registration: bool | None = None
    chat_timeout_seconds: Annotated[float, Field(ge=0)] | None = None
    completions_timeout_seconds: Annotated[float, Field(ge=0)] | None = None
    embeddings_timeout_seconds: Annotated[float, Field(ge=0)] | None = None
    queue_timeout_seconds: Annotated[float, Field(ge=0)] | None = None

    @field_validator("memory_budget_bytes", mode="before")
    @classmethod
    def _memory_amount(cls, value: Any) -> Any:
        return parse_bytes(value) if isinstance(value, str) else value
