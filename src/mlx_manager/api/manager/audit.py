"""/api/audit (admins): the request log of the model APIs, filtered and paged, or exported as CSV or JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from mlx_manager.api.manager.deps import SessionDep
from mlx_manager.api.manager.fields import Count, RowId
from mlx_manager.api.manager.schemas import AuditEntryPublic, AuditPage, download, problems
from mlx_manager.api.security import Admin
from mlx_manager.manager import audit

router = APIRouter(prefix="/audit", tags=["audit"], responses=problems(400, 401, 403))


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def audit_filter(
    user_id: RowId | None = None,
    model: str | None = None,
    endpoint: Annotated[str | None, Query(description="A route, e.g. /v1/chat/completions")] = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds; UTC when no zone.")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive; ISO 8601 or Unix seconds.")] = None,
    hide_listings: Annotated[
        bool, Query(description="Leave out model listings (GET /v1/models...), which the web UI asks on every page.")
    ] = False,
) -> audit.AuditFilter:
    return audit.AuditFilter(user_id, model, endpoint, status, _epoch(since), _epoch(until), hide_listings)


Filter = Annotated[audit.AuditFilter, Depends(audit_filter)]


@router.get("")
def list_audit(
    _: Admin,
    session: SessionDep,
    where: Filter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[Count, Query()] = 0,
) -> AuditPage:
    """Entries newest first, with the total that match, naming their user and key."""
    rows, total = audit.search(session, where, limit, offset)
    items = [AuditEntryPublic.model_validate(r) for r in audit.as_dicts(session, rows)]
    return AuditPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/export",
    response_model=None,
    responses=download(
        "Matching entries, oldest first.", "text/csv", {"type": "array", "items": AuditEntryPublic.model_json_schema()}
    ),
)
def export_audit(_: Admin, session: SessionDep, where: Filter, format: Literal["csv", "json"] = "csv") -> Response:
    """Every matching entry as a CSV (times in ISO 8601, UTC) or JSON (Unix seconds) download."""
    rows = audit.export_rows(session, where)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="audit-{stamp}.{format}"'}
    if format == "json":
        return JSONResponse(audit.as_dicts(session, rows), headers=headers)
    return Response(audit.as_csv(session, rows), media_type="text/csv; charset=utf-8", headers=headers)
