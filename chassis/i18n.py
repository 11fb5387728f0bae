"""Gettext catalogues for a service's templates, read from .po files when first needed.

Each service keeps `locale/<language>/LC_MESSAGES/messages.po` next to its templates. The .po text is
parsed and compiled in memory (Babel's read_po/write_mo), so there is no .mo build step to forget and
a corrected translation ships with the code. A language without a catalogue falls back to the msgids
(English)."""

from __future__ import annotations

import functools
import io
from decimal import Decimal
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_percent
from babel.support import NullTranslations, Translations


@functools.cache
def translations(language: str, locale_dir: Path) -> NullTranslations:
    """The compiled catalogue for `language` under `locale_dir` (cached per process; read-only)."""
    po = Path(locale_dir) / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def language_of(locale: str | None) -> str:
    """ "de" for "de_DE" (or "de-DE"); "en" for anything Babel cannot parse."""
    if not isinstance(locale, str):
        return "en"
    return _language_of(locale)


def percent(rate: object, locale: str) -> str:
    """A rate given in percent ("19", "7.5") as the reader writes one: 19% in English, 19 % in German
    (CLDR's pattern, its space a no-break one), every decimal it has kept."""
    return format_percent((Decimal(str(rate)) / 100).normalize(), locale=locale, decimal_quantization=False)


@functools.lru_cache(maxsize=1024)  # a page asks for its reader's on every render; Babel parses each time
def _language_of(locale: str) -> str:
    try:
        return Locale.parse(locale.replace("-", "_")).language
    except (ValueError, TypeError, AttributeError, UnknownLocaleError):
        return "en"


class Message(str):
    """English text made of a msgid and its values, which keeps both: a page shows it in its reader's
    language (the gateway's `translate` filter translates the msgid and each text value, and writes each
    number the language's way); anywhere else (logs, problem+json) it is just the English text."""

    msgid: str
    values: dict[str, str | int]

    def __new__(cls, msgid: str, **values: str | int) -> Message:
        english = msgid % {name: f"{v:,}" if isinstance(v, int) else v for name, v in values.items()}
        message = super().__new__(cls, english)
        message.msgid, message.values = msgid, values
        return message
