"""/api/routing: credentials (write-only secrets), backends, rules, a rule tester and breaker states. Admins only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from mlx_manager.api.manager.deps import AdminUser, ManagerDep, write_then
from mlx_manager.api.manager.fields import Int64, PartialUpdate, RowId, Strict
from mlx_manager.api.manager.schemas import problems
from mlx_manager.db.models import Backend, Credential, RoutingRule
from mlx_manager.manager.services import Manager
from mlx_manager.routing.router import Router

router = APIRouter(prefix="/routing", tags=["routing"], responses=problems(401, 403))
T = TypeVar("T")


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


async def _write(manager: Manager, change: Callable[[Session], T]) -> T:
    return await write_then(manager, change, manager.routing.reload)


def _router(request: Request) -> Router:
    routing: Router = request.app.state.router
    return routing


@router.get("/credentials")
def list_credentials(_: AdminUser, manager: ManagerDep) -> list[CredentialPublic]:
    with Session(manager.db) as session:
        return [CredentialPublic.model_validate(c, from_attributes=True) for c in session.exec(select(Credential))]


@router.post("/credentials", status_code=201, responses=problems(400, 409))
async def create_credential(body: CredentialCreate, _: AdminUser, manager: ManagerDep) -> CredentialPublic:
    row = await _write(manager, lambda s: manager.routing.add_credential(s, body.name, body.provider, body.secret))
    return CredentialPublic.model_validate(row, from_attributes=True)


@router.delete("/credentials/{credential_id}", status_code=204, responses=problems(404))
async def delete_credential(credential_id: RowId, _: AdminUser, manager: ManagerDep) -> Response:
    await _write(manager, lambda s: manager.routing.delete(s, Credential, credential_id))
    return Response(status_code=204)


@router.get("/backends")
def list_backends(_: AdminUser, manager: ManagerDep) -> list[BackendPublic]:
    with Session(manager.db) as session:
        return [BackendPublic.model_validate(b, from_attributes=True) for b in session.exec(select(Backend))]


@router.post("/backends", status_code=201, responses=problems(400, 409))
async def create_backend(body: BackendCreate, _: AdminUser, manager: ManagerDep) -> BackendPublic:
    row = await _write(manager, lambda s: manager.routing.add_backend(s, body.model_dump()))
    return BackendPublic.model_validate(row, from_attributes=True)


@router.patch("/backends/{backend_id}", responses=problems(400, 404))
async def update_backend(backend_id: RowId, body: BackendUpdate, _: AdminUser, manager: ManagerDep) -> BackendPublic:
    values = body.model_dump(exclude_unset=True)
    row = await _write(manager, lambda s: manager.routing.update(s, Backend, backend_id, values))
    return BackendPublic.model_validate(row, from_attributes=True)


@router.delete("/backends/{backend_id}", status_code=204, responses=problems(404))
async def delete_backend(backend_id: RowId, _: AdminUser, manager: ManagerDep) -> Response:
    await _write(manager, lambda s: manager.routing.delete(s, Backend, backend_id))
    return Response(status_code=204)


@router.get("/rules")
def list_rules(_: AdminUser, manager: ManagerDep) -> list[RulePublic]:
    with Session(manager.db) as session:
        rows = sorted(session.exec(select(RoutingRule)), key=lambda r: (-r.priority, r.id or 0))
        return [RulePublic.model_validate(r, from_attributes=True) for r in rows]


@router.post("/rules", status_code=201, responses=problems(400))
async def create_rule(body: RuleCreate, _: AdminUser, manager: ManagerDep) -> RulePublic:
    row = await _write(manager, lambda s: manager.routing.add_rule(s, body.model_dump()))
    return RulePublic.model_validate(row, from_attributes=True)


@router.patch("/rules/{rule_id}", responses=problems(400, 404))
async def update_rule(rule_id: RowId, body: RuleUpdate, _: AdminUser, manager: ManagerDep) -> RulePublic:
    values = body.model_dump(exclude_unset=True)
    row = await _write(manager, lambda s: manager.routing.update(s, RoutingRule, rule_id, values))
    return RulePublic.model_validate(row, from_attributes=True)


@router.delete("/rules/{rule_id}", status_code=204, responses=problems(404))
async def delete_rule(rule_id: RowId, _: AdminUser, manager: ManagerDep) -> Response:
    await _write(manager, lambda s: manager.routing.delete(s, RoutingRule, rule_id))
    return Response(status_code=204)


@router.get("/test")
def test_route(request: Request, _: AdminUser, model: Annotated[str, Query(min_length=1)]) -> RouteTest:
    """Which backends a model name would go to, in the order they would be tried now."""
    routing = _router(request)
    rule = routing.route(model)
    if rule is None:
        return RouteTest(model=model, rule_id=None, backends=["local"], upstream_model=model)
    order = routing.balancer.order(list(rule.backends))
    return RouteTest(model=model, rule_id=rule.id, backends=order, upstream_model=rule.upstream_model(model))


@router.get("/status")
def backend_status(request: Request, _: AdminUser) -> list[BackendStatus]:
    states: dict[str, Any] = _router(request).balancer.backends
    return [
        BackendStatus(
            name=s.name,
            breaker=s.breaker.state,
            failures=s.breaker.failures,
            outstanding=s.outstanding,
            served=s.served,
            healthy=s.healthy,
        )
        for s in states.values()
    ]
