"""Localised templates: gettext catalogues (read from .po at start, no compile step) and Babel
formatting of money and dates for the recipient's locale."""
from __future__ import annotations

import functools
import io
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from chassis.money import Money

LOCALE_DIR = Path(__file__).parent / "locale"


@functools.cache
def translations(language: str) -> NullTranslations:
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def language_of(locale: str) -> str:
    try:
        return Locale.parse(locale).language
    except (ValueError, TypeError):
        return "en"


@functools.cache
def template_env(directory: Path, locale: str) -> Environment:
    env = Environment(loader=FileSystemLoader(directory), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations(language_of(locale)), newstyle=True)
    env.filters.update(
        money=lambda amount, currency: Money(int(amount), currency).format(locale),
        date=lambda value: format_date(value if isinstance(value, date) else date.fromisoformat(value), "medium",
                                       locale=locale) if value else "",
        datetime=lambda value, tz="UTC": format_datetime(datetime.fromisoformat(value).astimezone(ZoneInfo(tz)),
                                                         "medium", locale=locale) if value else "",
        quantity=lambda value: f"{float(value):g}",
        percent=lambda value: f"{float(value):g}%",
    )
    return env
