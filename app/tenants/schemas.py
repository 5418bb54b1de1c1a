"""API shapes of PBXes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA timezone (e.g. Europe/Berlin)") from None
    return value


class PbxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    timezone: str = "UTC"
    max_extensions: int = Field(default=1000, ge=1, le=100_000)
    max_extension_groups: int = Field(default=63, ge=1, le=10_000)

    _tz = field_validator("timezone")(_check_timezone)


class PbxUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str | None = None
    max_extensions: int | None = Field(default=None, ge=1, le=100_000)
    max_extension_groups: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)


class PbxOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    timezone: str
    max_extensions: int
    max_extension_groups: int
    created_at: datetime


class PbxWithKey(PbxOut):
    api_key: str = Field(description="Shown this once; store it safely.")


class ApiKeyOut(BaseModel):
    pbx_id: str
    api_key: str = Field(description="Shown this once; the previous key stopped working.")
