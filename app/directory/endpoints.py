"""The PBX directory API (what the portal and Linkus read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.auth import CurrentPbx, Session
from app.directory import service
from app.directory.schemas import (
    ContactCreate,
    ContactOut,
    ExtensionCreate,
    ExtensionGroupCreate,
    ExtensionGroupOut,
    ExtensionGroupUpdate,
    ExtensionOut,
    ExtensionUpdate,
    ManagedBy,
    PhonebookCreate,
    PhonebookOut,
    PresenceOut,
    PresenceUpdate,
    TeamsPresence,
    Visibility,
)
from app.pagination import Page, PageParams, page_params

router = APIRouter(prefix="/api/v1", tags=["directory"])
Paging = Annotated[PageParams, Depends(page_params)]
NO_CONTENT = status.HTTP_204_NO_CONTENT


@router.get("/extensions", response_model=Page[ExtensionOut])
async def list_extensions(
    pbx: CurrentPbx,
    session: Session,
    params: Paging,
    managed_by: Annotated[ManagedBy | None, Query()] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ExtensionOut]:
    items, cursor = await service.list_extensions(session, pbx, params, managed_by, search)
    return Page[ExtensionOut](items=items, next_cursor=cursor)


@router.post("/extensions", status_code=status.HTTP_201_CREATED, response_model=ExtensionOut)
async def create_extension(
    pbx: CurrentPbx, session: Session, body: ExtensionCreate
) -> ExtensionOut:
    ext = await service.create_extension(session, pbx, body)
    return await service.extension_view(session, ext)


@router.get("/extensions/{ext_id}", response_model=ExtensionOut)
async def get_extension(pbx: CurrentPbx, session: Session, ext_id: str) -> ExtensionOut:
    return await service.extension_view(session, await service.get_extension(session, pbx, ext_id))


@router.patch("/extensions/{ext_id}", response_model=ExtensionOut)
async def update_extension(
    pbx: CurrentPbx, session: Session, ext_id: str, body: ExtensionUpdate
) -> ExtensionOut:
    ext = await service.update_extension(session, pbx, ext_id, body)
    return await service.extension_view(session, ext)


@router.delete("/extensions/{ext_id}", status_code=NO_CONTENT)
async def delete_extension(pbx: CurrentPbx, session: Session, ext_id: str) -> Response:
    await service.delete_extension(session, pbx, ext_id)
    return Response(status_code=NO_CONTENT)


@router.get("/extensions/{ext_id}/presence", response_model=PresenceOut)
async def get_presence(pbx: CurrentPbx, session: Session, ext_id: str) -> PresenceOut:
    view = await service.extension_view(session, await service.get_extension(session, pbx, ext_id))
    return view.presence


@router.put("/extensions/{ext_id}/presence", response_model=PresenceOut)
async def put_presence(
    pbx: CurrentPbx, session: Session, ext_id: str, body: PresenceUpdate
) -> PresenceOut:
    return await service.set_presence(session, pbx, ext_id, body)


@router.get("/extensions/{ext_id}/teams-presence", response_model=TeamsPresence)
async def get_teams_presence(pbx: CurrentPbx, session: Session, ext_id: str) -> TeamsPresence:
    return await service.get_teams_presence(session, pbx, ext_id)


@router.put("/extensions/{ext_id}/teams-presence", response_model=TeamsPresence)
async def put_teams_presence(
    pbx: CurrentPbx, session: Session, ext_id: str, body: TeamsPresence
) -> TeamsPresence:
    return await service.put_teams_presence(session, pbx, ext_id, body)


@router.get("/extensions/{ext_id}/contacts", response_model=Page[ContactOut])
async def personal_contacts(
    pbx: CurrentPbx, session: Session, ext_id: str, params: Paging
) -> Page[ContactOut]:
    ext = await service.get_extension(session, pbx, ext_id)
    rows, cursor = await service.list_contacts(session, params, extension_id=ext.id)
    return Page[ContactOut](items=[ContactOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/extensions/{ext_id}/visible-phonebooks", response_model=Page[PhonebookOut])
async def visible_phonebooks(
    pbx: CurrentPbx, session: Session, ext_id: str, params: Paging
) -> Page[PhonebookOut]:
    items, cursor = await service.visible_phonebooks(session, pbx, ext_id, params)
    return Page[PhonebookOut](items=items, next_cursor=cursor)


@router.get("/extension-groups", response_model=Page[ExtensionGroupOut])
async def list_groups(pbx: CurrentPbx, session: Session, params: Paging) -> Page[ExtensionGroupOut]:
    items, cursor = await service.list_groups(session, pbx, params)
    return Page[ExtensionGroupOut](items=items, next_cursor=cursor)


@router.post(
    "/extension-groups", status_code=status.HTTP_201_CREATED, response_model=ExtensionGroupOut
)
async def create_group(
    pbx: CurrentPbx, session: Session, body: ExtensionGroupCreate
) -> ExtensionGroupOut:
    return await service.create_group(session, pbx, body)


@router.get("/extension-groups/{group_id}", response_model=ExtensionGroupOut)
async def get_group(pbx: CurrentPbx, session: Session, group_id: str) -> ExtensionGroupOut:
    return await service.group_view(session, await service.get_group(session, pbx, group_id))


@router.patch("/extension-groups/{group_id}", response_model=ExtensionGroupOut)
async def update_group(
    pbx: CurrentPbx, session: Session, group_id: str, body: ExtensionGroupUpdate
) -> ExtensionGroupOut:
    return await service.update_group(session, pbx, group_id, body)


@router.delete("/extension-groups/{group_id}", status_code=NO_CONTENT)
async def delete_group(pbx: CurrentPbx, session: Session, group_id: str) -> Response:
    await service.delete_group(session, pbx, group_id)
    return Response(status_code=NO_CONTENT)


@router.get("/phonebooks", response_model=Page[PhonebookOut])
async def list_phonebooks(pbx: CurrentPbx, session: Session, params: Paging) -> Page[PhonebookOut]:
    items, cursor = await service.list_phonebooks(session, pbx, params)
    return Page[PhonebookOut](items=items, next_cursor=cursor)


@router.post("/phonebooks", status_code=status.HTTP_201_CREATED, response_model=PhonebookOut)
async def create_phonebook(
    pbx: CurrentPbx, session: Session, body: PhonebookCreate
) -> PhonebookOut:
    return await service.create_phonebook(session, pbx, body.name)


@router.delete("/phonebooks/{book_id}", status_code=NO_CONTENT)
async def delete_phonebook(pbx: CurrentPbx, session: Session, book_id: str) -> Response:
    await service.delete_phonebook(session, pbx, book_id)
    return Response(status_code=NO_CONTENT)


@router.put("/phonebooks/{book_id}/visibility", response_model=PhonebookOut)
async def put_visibility(
    pbx: CurrentPbx, session: Session, book_id: str, body: Visibility
) -> PhonebookOut:
    return await service.set_visibility(session, pbx, book_id, body)


@router.get("/phonebooks/{book_id}/contacts", response_model=Page[ContactOut])
async def phonebook_contacts(
    pbx: CurrentPbx, session: Session, book_id: str, params: Paging
) -> Page[ContactOut]:
    book = await service.get_phonebook(session, pbx, book_id)
    rows, cursor = await service.list_contacts(session, params, phonebook_id=book.id)
    return Page[ContactOut](items=[ContactOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post(
    "/phonebooks/{book_id}/contacts", status_code=status.HTTP_201_CREATED, response_model=ContactOut
)
async def add_contact(
    pbx: CurrentPbx, session: Session, book_id: str, body: ContactCreate
) -> ContactOut:
    return ContactOut.model_validate(await service.add_contact(session, pbx, book_id, body))


@router.delete("/phonebooks/{book_id}/contacts/{contact_id}", status_code=NO_CONTENT)
async def delete_contact(
    pbx: CurrentPbx, session: Session, book_id: str, contact_id: str
) -> Response:
    await service.delete_contact(session, pbx, book_id, contact_id)
    return Response(status_code=NO_CONTENT)
