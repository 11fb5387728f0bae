"""Jinja2 rendering for the portal pages, with Babel formatting of money and dates."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from jinja2 import Environment, FileSystemLoader, select_autoescape

from chassis.money import Money


def money(value: dict | None, locale: str = "en_US") -> str:
    if not value:
        return ""
    return Money(int(value["amount"]), value["currency"]).format(locale)


def local_datetime(iso: str, tz: str = "UTC", locale: str = "en_US") -> str:
    return format_datetime(datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)), "medium", locale=locale)


def local_date(iso: str, locale: str = "en_US") -> str:
    return format_date(date.fromisoformat(iso), "medium", locale=locale)


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters.update(money=money, local_datetime=local_datetime, local_date=local_date)
    return env
