"""Operator routes (/api/v1/pbxes) and a PBX's own record (/api/v1/pbx)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.auth import CurrentPbx, Operator, Session
from app.pagination import Page, PageParams, page_params
from app.tenants import service
from app.tenants.schemas import ApiKeyOut, PbxCreate, PbxOut, PbxUpdate, PbxWithKey

operator_router = APIRouter(prefix="/api/v1/pbxes", tags=["operator"], dependencies=[Operator])
router = APIRouter(prefix="/api/v1", tags=["pbx"])


@operator_router.post("", status_code=status.HTTP_201_CREATED, response_model=PbxWithKey)
async def create_pbx(body: PbxCreate, session: Session) -> PbxWithKey:
    pbx, key = await service.create(session, body)
    return PbxWithKey(**PbxOut.model_validate(pbx).model_dump(), api_key=key)


@operator_router.get("", response_model=Page[PbxOut])
async def list_pbxes(
    session: Session, params: Annotated[PageParams, Depends(page_params)]
) -> Page[PbxOut]:
    rows, cursor = await service.list_page(session, params)
    return Page[PbxOut](items=[PbxOut.model_validate(r) for r in rows], next_cursor=cursor)


@operator_router.get("/{pbx_id}", response_model=PbxOut)
async def get_pbx(pbx_id: str, session: Session) -> PbxOut:
    return PbxOut.model_validate(await service.get(session, pbx_id))


@operator_router.patch("/{pbx_id}", response_model=PbxOut)
async def update_pbx(pbx_id: str, body: PbxUpdate, session: Session) -> PbxOut:
    return PbxOut.model_validate(await service.update(session, pbx_id, body))


@operator_router.delete("/{pbx_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_pbx(pbx_id: str, session: Session) -> Response:
    await service.delete(session, pbx_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@operator_router.post("/{pbx_id}/api-keys", status_code=status.HTTP_201_CREATED)
async def rotate_api_key(pbx_id: str, session: Session) -> ApiKeyOut:
    return ApiKeyOut(pbx_id=pbx_id, api_key=await service.rotate_key(session, pbx_id))


@router.get("/pbx", response_model=PbxOut)
async def own_pbx(pbx: CurrentPbx) -> PbxOut:
    return PbxOut.model_validate(pbx)
