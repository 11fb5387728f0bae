"""Settings read from the environment, with embedded-default fallbacks for development."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# With a str default the answer is a str: callers need no None check.
@overload
def env(name: str) -> str | None: ...
@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: str | None) -> str | None: ...


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    value = env(name)
    return int(value) if value is not None else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def var_dir() -> Path:
    """Where embedded state lives (SQLite files, mail outbox, documents)."""
    path = Path(env("PORTAL_VAR_DIR", str(PROJECT_ROOT / "var")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url(service: str) -> str:
    """`<SERVICE>_DATABASE_URL`, else a SQLite file under var/."""
    return env(f"{service.upper()}_DATABASE_URL") or f"sqlite:///{var_dir() / (service + '.sqlite3')}"


def amqp_uri() -> str:
    return env("AMQP_URI", "amqp://guest:guest@localhost:5672/")


def is_dev() -> bool:
    """Development conveniences (/dev/mail, cookies without Secure) only when asked for: `make dev`
    and the tests set PORTAL_ENV=dev; anything else is production."""
    return env("PORTAL_ENV", "production") == "dev"


def nameko_config() -> dict[str, Any]:
    """Config for standalone nameko clients (gateway proxies, CLI)."""
    return {"AMQP_URI": amqp_uri()}
