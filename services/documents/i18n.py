"""Localised templates: gettext catalogues (read from .po at start, no compile step) and Babel
formatting of money and dates for the recipient's locale."""

from __future__ import annotations

import functools
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol, cast
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from babel.support import NullTranslations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from chassis import i18n
from chassis.fields import one_line
from chassis.i18n import language_of
from chassis.money import Money
from chassis.payment_labels import payment_label

LOCALE_DIR = Path(__file__).parent / "locale"


class _WithGettext(Protocol):
    """What the jinja2.ext.i18n extension adds to the environment it is loaded in."""

    def install_gettext_translations(self, translations: NullTranslations, newstyle: bool | None = None) -> None: ...


def translations(language: str) -> NullTranslations:
    """This service's catalogue for `language` (see chassis.i18n)."""
    return i18n.translations(language, LOCALE_DIR)


@functools.cache
def template_env(directory: Path, locale: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    language = language_of(locale)
    catalogue = translations(language)
    cast(_WithGettext, env).install_gettext_translations(catalogue, newstyle=True)
    env.filters.update(
        # how a payment was made (billing's English), in the reader's language as the portal says it
        payment_label=lambda text: payment_label(text, catalogue.gettext, language),
        money=lambda amount, currency: Money(int(amount), currency).format(locale),
        date=lambda value: (
            format_date(value if isinstance(value, date) else date.fromisoformat(value), "medium", locale=locale)
            if value
            else ""
        ),
        datetime=lambda value, tz="UTC": (
            format_datetime(datetime.fromisoformat(value).astimezone(ZoneInfo(tz)), "medium", locale=locale)
            if value
            else ""
        ),
        day=lambda value, tz="UTC": (  # a date and time as its day in `tz`, for paper: no time of day
            format_date(datetime.fromisoformat(value).astimezone(ZoneInfo(tz)).date(), "medium", locale=locale)
            if value
            else ""
        ),
        one_line=one_line,
        iban=lambda value: " ".join(
            value[i : i + 4] for i in range(0, len(value), 4)
        ),  # the paper format, in groups of four
        quantity=lambda value: format_decimal(Decimal(value), locale=locale, decimal_quantization=False),
        percent=lambda value: i18n.percent(value, locale),
    )
    return env
