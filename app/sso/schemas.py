"""API shapes of single sign-on and Linkus self-service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.directory.schemas import ExtensionOut

ClientKind = Literal["web", "desktop", "mobile"]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200, description="The `sso_code` of the redirect")
    pbx_id: str | None = Field(
        default=None,
        max_length=36,
        description="The PBX the client signs in to; a code of another PBX is refused",
    )


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    pbx_id: str
    extension: ExtensionOut
