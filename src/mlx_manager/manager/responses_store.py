"""Stored responses: save, fetch and delete, off the event loop (SQLite calls block)."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine
from sqlmodel import Session

from mlx_manager.db.models import StoredResponse


class ResponseStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def save(self, item: StoredResponse) -> None:
        await asyncio.to_thread(self._save, item)

    async def get(self, response_id: str) -> StoredResponse | None:
        return await asyncio.to_thread(self._get, response_id)

    async def delete(self, response_id: str) -> bool:
        return await asyncio.to_thread(self._delete, response_id)

    def _save(self, item: StoredResponse) -> None:
        with Session(self.engine) as session:
            session.merge(item)
            session.commit()

    def _get(self, response_id: str) -> StoredResponse | None:
        with Session(self.engine) as session:
            return session.get(StoredResponse, response_id)

    def _delete(self, response_id: str) -> bool:
        with Session(self.engine) as session:
            item = session.get(StoredResponse, response_id)
            if item is None:
                return False
            session.delete(item)
            session.commit()
            return True
