"""/api/routing: credentials (write-only secrets), backends, rules, a rule tester and breaker states. Admins only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from sqlmodel import Session, select

from mlx_manager.api.manager.deps import ManagerDep, write_then
from mlx_manager.api.manager.fields import PartialUpdate, RowId
from mlx_manager.api.manager.schemas import (
    BackendCreate,
    BackendPublic,
    BackendStatus,
    BackendUpdate,
    CredentialCreate,
    CredentialPublic,
    RouteTest,
    RuleCreate,
    RulePublic,
    RuleUpdate,
    problems,
)
from mlx_manager.api.security import Admin
from mlx_manager.db.models import Backend, Credential, RoutingRule
from mlx_manager.manager.services import Manager
from mlx_manager.routing.router import Router

router = APIRouter(prefix="/routing", tags=["routing"], responses=problems(401, 403))
T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)
Row = Credential | Backend | RoutingRule


async def _write(manager: Manager, change: Callable[[Session], T]) -> T:
    return await write_then(manager, change, manager.routing.reload)


async def _update(manager: Manager, table: type[Row], row_id: int, body: PartialUpdate, public: type[P]) -> P:
    """PATCH: only the fields sent change."""
    values = body.model_dump(exclude_unset=True)
    row = await _write(manager, lambda s: manager.routing.update(s, table, row_id, values))
    return public.model_validate(row, from_attributes=True)


async def _delete(manager: Manager, table: type[Row], row_id: int) -> Response:
    await _write(manager, lambda s: manager.routing.delete(s, table, row_id))
    return Response(status_code=204)


def _router(request: Request) -> Router:
    routing: Router = request.app.state.router
    return routing


@router.get("/credentials")
def list_credentials(_: Admin, manager: ManagerDep) -> list[CredentialPublic]:
    with Session(manager.db) as session:
        return [CredentialPublic.model_validate(c, from_attributes=True) for c in session.exec(select(Credential))]


@router.post("/credentials", status_code=201, responses=problems(400, 409))
async def create_credential(body: CredentialCreate, _: Admin, manager: ManagerDep) -> CredentialPublic:
    row = await _write(manager, lambda s: manager.routing.add_credential(s, body.name, body.provider, body.secret))
    return CredentialPublic.model_validate(row, from_attributes=True)


@router.delete("/credentials/{credential_id}", status_code=204, responses=problems(404))
async def delete_credential(credential_id: RowId, _: Admin, manager: ManagerDep) -> Response:
    return await _delete(manager, Credential, credential_id)


@router.get("/backends")
def list_backends(_: Admin, manager: ManagerDep) -> list[BackendPublic]:
    with Session(manager.db) as session:
        return [BackendPublic.model_validate(b, from_attributes=True) for b in session.exec(select(Backend))]


@router.post("/backends", status_code=201, responses=problems(400, 409))
async def create_backend(body: BackendCreate, _: Admin, manager: ManagerDep) -> BackendPublic:
    row = await _write(manager, lambda s: manager.routing.add_backend(s, body.model_dump()))
    return BackendPublic.model_validate(row, from_attributes=True)


@router.patch("/backends/{backend_id}", responses=problems(400, 404))
async def update_backend(backend_id: RowId, body: BackendUpdate, _: Admin, manager: ManagerDep) -> BackendPublic:
    return await _update(manager, Backend, backend_id, body, BackendPublic)


@router.delete("/backends/{backend_id}", status_code=204, responses=problems(404))
async def delete_backend(backend_id: RowId, _: Admin, manager: ManagerDep) -> Response:
    return await _delete(manager, Backend, backend_id)


@router.get("/rules")
def list_rules(_: Admin, manager: ManagerDep) -> list[RulePublic]:
    with Session(manager.db) as session:
        rows = sorted(session.exec(select(RoutingRule)), key=lambda r: (-r.priority, r.id or 0))
        return [RulePublic.model_validate(r, from_attributes=True) for r in rows]


@router.post("/rules", status_code=201, responses=problems(400))
async def create_rule(body: RuleCreate, _: Admin, manager: ManagerDep) -> RulePublic:
    row = await _write(manager, lambda s: manager.routing.add_rule(s, body.model_dump()))
    return RulePublic.model_validate(row, from_attributes=True)


@router.patch("/rules/{rule_id}", responses=problems(400, 404))
async def update_rule(rule_id: RowId, body: RuleUpdate, _: Admin, manager: ManagerDep) -> RulePublic:
    return await _update(manager, RoutingRule, rule_id, body, RulePublic)


@router.delete("/rules/{rule_id}", status_code=204, responses=problems(404))
async def delete_rule(rule_id: RowId, _: Admin, manager: ManagerDep) -> Response:
    return await _delete(manager, RoutingRule, rule_id)


@router.get("/test")
def test_route(request: Request, _: Admin, model: Annotated[str, Query(min_length=1)]) -> RouteTest:
    """Which backends a model name would go to, in the order they would be tried now."""
    routing = _router(request)
    rule = routing.route(model)
    if rule is None:
        return RouteTest(model=model, rule_id=None, backends=["local"], upstream_model=model)
    order = routing.balancer.order(list(rule.backends))
    return RouteTest(model=model, rule_id=rule.id, backends=order, upstream_model=rule.upstream_model(model))


@router.get("/status")
def backend_status(request: Request, _: Admin) -> list[BackendStatus]:
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
