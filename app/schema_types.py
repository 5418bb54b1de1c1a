"""Field types shared by the API's request shapes: object ids and bounded lists of them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

# Every id list in the API holds at most this many ids (422 above).
MAX_IDS = 1000

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
IdList = Annotated[list[Id], Field(max_length=MAX_IDS, description=f"At most {MAX_IDS} ids")]
