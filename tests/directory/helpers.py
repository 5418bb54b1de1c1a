"""Put directory objects into the states only a sync produces (entra, entra_frozen)."""

from __future__ import annotations

from sqlalchemy import update

from app.db import create_engine, sessionmaker
from app.directory.models import Extension, ExtensionGroup, Phonebook


async def set_managed(
    database_url: str, model: type, obj_id: str, managed_by: str, entra_id: str | None
) -> None:
    engine = create_engine(database_url)
    async with sessionmaker(engine)() as session:
        await session.execute(
            update(model).where(model.id == obj_id).values(managed_by=managed_by, entra_id=entra_id)
        )
        await session.commit()
    await engine.dispose()


__all__ = ["Extension", "ExtensionGroup", "Phonebook", "set_managed"]
