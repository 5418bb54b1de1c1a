"""API shapes of PBXes."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, field_validator


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    """The zone names of the pinned tzdata package: no directories, no `localtime`, whatever the
    host's zoneinfo holds; `Factory` (no zone of any place) is left out too."""
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    return frozenset(listed) - {"Factory"}


def _check_timezone(value: str) -> str:
    if value not in iana_zones():
        raise ValueError("not an IANA timezone name (e.g. Europe/Berlin)")
    return value


class PbxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    timezone: str = Field(default="UTC", max_length=64)
    max_extensions: int = Field(default=1000, ge=1, le=100_000)
    max_extension_groups: int = Field(default=63, ge=1, le=10_000)

    _tz = field_validator("timezone")(_check_timezone)


class PbxUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(default=None, max_length=64)
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
