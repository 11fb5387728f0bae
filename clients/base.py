"""What every service's stub has: the call it is made with, and the operations every service answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Call = Callable[..., Any]  # call(service, method, *args, **kwargs) -> the answer


class ServiceClient:
    service = ""

    def __init__(self, call: Call):
        self._call = call

    def ping(self) -> dict:
        return self._call(self.service, "ping")

    def list_dead_letters(self, limit: int = 100) -> list[dict]:
        return self._call(self.service, "list_dead_letters", limit=limit)

    def get_dead_letter(self, letter_id: int) -> dict:
        return self._call(self.service, "get_dead_letter", letter_id)

    def replay_dead_letter(self, letter_id: int) -> dict:
        return self._call(self.service, "replay_dead_letter", letter_id)
