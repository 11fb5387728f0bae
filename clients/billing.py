"""Billing's contract types that other parts of the portal validate against (the admin API)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BookingLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=50, pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1, max_length=100)
    duration_minutes: int = Field(ge=5, le=480, multiple_of=5)
