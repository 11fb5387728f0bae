"""Jinja2 rendering for the portal pages, in the reader's language (gettext catalogues under
locale/, see chassis.i18n), with Babel formatting of money and dates."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time, get_timezone_name
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, Template, pass_eval_context, select_autoescape
from jinja2.compiler import CodeGenerator, Frame
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.nodes import EvalContext, Node
from markupsafe import Markup, escape

from chassis import settings
from chassis.dates import date_and_short_time
from chassis.fields import one_line
from chassis.i18n import Message, language_of, percent, translations
from chassis.money import Money
from chassis.payment_labels import METHOD_LABELS, names_how_paid
from chassis.payment_labels import payment_label as localized_payment_label
from services.gateway import csrf

TEMPLATES = Path(__file__).parent / "templates"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "de")  # the portal's languages; any other locale reads English
# The locale a reader is given who names only its language (Accept-Language), per portal language.
LANGUAGE_LOCALES = {"en": "en_US", "de": "de_DE"}


def N_(message: str) -> str:
    """Marks a msgid for `pybabel extract` (the text is translated where it is shown)."""
    return message


# Badges show a status key as words (English unchanged: the key with spaces; CSS capitalises).
STATUS_LABELS = {
    "draft": N_("draft"),
    "sent": N_("sent"),
    "viewed": N_("viewed"),
    "partially_paid": N_("partially paid"),
    "paid": N_("paid"),
    "void": N_("void"),
    "overdue": N_("overdue"),
    "processing": N_("processing"),
    "pending": N_("pending"),
    "accepted": N_("accepted"),
    "rejected": N_("declined"),  # the word of the quotes' filter and page
    "expired": N_("expired"),
}
# The query parameters pages read as numbers or yes/no (req.get_param_as_int, ...), as a reader knows
# them: the error page of a bad one names it so (app.ErrorRenderer), in the reader's language.
QUERY_PARAMETERS = {
    "page": N_("The page number"),
    "print": N_("The printable view"),
}

# What billing calls an issued invoice that is not settled (billing's domain.OPEN_STATUSES).
OPEN_STATUSES = frozenset({"sent", "viewed", "partially_paid"})


def payable(invoice: dict) -> bool:
    """Whether the invoice can be paid now: open, something owed, and no payment still with the bank.
    A template's `inv is payable`, so the signed-in and the one-document page offer payment alike."""
    return invoice.get("status") in OPEN_STATUSES and invoice.get("balance", 0) > 0 and not invoice.get("processing")


# Text the gateway's Python code hands to templates (filter labels, notices, error pages), which the
# templates translate with the `translate` filter. Listed so `pybabel extract` keeps them in the .pot;
# tests/unit/test_gateway_i18n.py checks the code's own lists against the German catalogue.
CODE_MESSAGES = (
    # the payments service's answers to the bank account form (services/payments/bank_debit.py)
    N_("That IBAN is not valid; check it against your bank statement."),
    N_("Only bank accounts in the SEPA area can be debited."),
    N_("Accept the direct debit mandate to pay by bank."),
    N_("Enter the account holder's name."),
    N_("Enter an email for the mandate."),
    N_("That email address is not valid."),
    N_("Enter the IBAN."),
    N_("A bank account can pay invoices in EUR only."),
    N_("The bank account was not accepted; check its details."),
    # chassis.payment_labels: METHOD_LABELS, PAID_WITH_MEANS and PAID_WITH_ENDING, the payment_label filter's
    N_("card"),
    N_("direct debit"),
    N_("bank transfer"),
    N_("cash"),
    N_("cheque"),
    N_("other"),
    N_("Card"),
    N_("SEPA Direct Debit"),
    N_("%(brand)s ending in %(last4)s"),
    # usecases.py: INVOICE_FILTERS, INVOICE_SORTS, QUOTE_FILTERS, PAYMENT_KINDS, PAYMENT_SORTS
    N_("All"),
    N_("Unpaid"),
    N_("Partially paid"),
    N_("Overdue"),
    N_("Paid"),
    N_("Newest first"),
    N_("Oldest first"),
    N_("Due date"),
    N_("Largest amount"),
    N_("Smallest amount"),
    N_("Pending"),
    N_("Accepted"),
    N_("Declined"),
    N_("Expired"),
    N_("All payments"),
    N_("Invoice payments"),
    N_("Retainer payments"),
    # pages/sign_in.py: sign-in notices and problems
    N_("Your session has ended. Sign in again to continue."),
    N_("You are signed out."),
    N_("Enter a valid email address, like name@example.com."),
    N_("Too many sign-in requests"),
    N_("Too many sign-in links were requested. Wait a few minutes and try again."),
    N_("Too many sign-in attempts"),
    N_(
        "Too many sign-in links that do not work came from your network. "
        "Wait a few minutes, then use the link from your latest email."
    ),
    N_("This link has already been used"),
    N_("Each sign-in link works once. Ask for a new one below."),
    N_("This link has expired"),
    N_("Sign-in links work for a limited time. Ask for a new one below."),
    N_("This link is not valid"),
    N_("The link may be incomplete. Ask for a new one below."),
    N_("Portal access is turned off"),
    N_("Contact the business to have portal access enabled."),
    N_("The company name cannot be empty."),
    N_("Enter your name."),
    # pages/ (invoices, quotes, bookings, ...), usecases.py, csrf.py, app.py: error pages
    N_("Unknown filter"),
    N_("Choose a filter and a sort from the page."),
    N_("Choose a filter from the page."),
    N_("Write a comment"),
    N_("A comment is 1 to 5000 characters."),
    N_("Check the address"),
    N_("Enter the email address to forward the invoice to."),
    N_("Sign with your name"),
    N_("Type your full name to accept."),
    N_("This page is out of date"),
    N_("Open the quote again and decide on what it shows."),
    N_("Say what you would like changed"),
    N_("A message is 1 to 5000 characters."),
    N_("Write a subject and a message"),
    N_("Both are needed; the message is at most 5000 characters."),
    N_("Choose a rating"),
    N_("Pick from 1 to 5 stars."),
    N_("This link no longer works"),
    N_("Links in emails expire or are withdrawn. Sign in to see the document."),
    N_("This form has expired"),
    N_("The page was open too long or came from elsewhere. Go back, reload it and try again."),
    N_("Cross-site request refused"),
    N_("This form must be sent from the portal itself."),
    # app.py: the other refusals at the door, before any page is found
    N_("Request too large"),
    N_("Requests may be at most %(limit)s bytes."),
    N_("Characters that are not allowed"),
    N_("The address or the form contains a NUL character."),
    N_("The form could not be read"),
    N_("It did not arrive as a browser sends a form. Go back, reload the page and try again."),
    N_("Page not found"),
    N_("There is nothing here, or it is not yours to see. Check the address or go back to the portal."),
    N_("Not allowed"),
    N_("This address does not accept that kind of request."),
    N_("Error"),
    N_("Temporarily unavailable"),
    N_("Part of the portal is not answering right now. Please try again in a minute."),
    N_("Taking too long"),
    N_("The portal did not get an answer in time. Please try again in a minute."),
    N_("Something went wrong"),
    N_("We could not complete this request. It has been logged; please try again."),
    N_("%(field)s is not valid."),
    N_("A value in the address is not valid."),
    # chassis/errors.py titles, and the services' commonest details
    N_("Internal error"),
    N_("Not found"),
    N_("Invalid input"),
    N_("Conflict"),
    N_("Too many requests"),
    N_("Not signed in"),
    N_("No such invoice."),
    N_("No such quote."),
    N_("No such payment."),
    N_("No such booking link."),
    N_("No such booking."),
    # pages/devices.py: a "this wasn't me" link that is not (or no longer) valid
    N_("The link may be incomplete, or older than 30 days. Sign in and end your sessions from your profile instead."),
    # pages/passwords.py, usecases.py and auth's password rules
    N_(
        "That email and password do not match an account that signs in with a password. "
        "Check them, use “Forgot your password?”, or sign in with an emailed link."
    ),
    N_("Password sign-in is not turned on for this portal. Sign in with an emailed link."),
    N_("Each password link works once. Ask for a new one."),
    N_("Password links work for one hour. Ask for a new one."),
    N_("The link may be incomplete. Ask for a new one."),
    N_("Passwords are not available"),
    N_("Your portal no longer signs in with passwords. Sign in with an emailed link."),
    N_("The two passwords are not the same. Type the new password twice."),
    N_("Enter your password."),
    N_("Enter a password."),
    N_("Use at least 12 characters."),
    N_("Use at most 128 characters."),
    N_("This password is one of the most common ones. Choose another, for example a few unrelated words."),
    N_("Choose a password that is not your email address."),
    N_("This password repeats too few characters. Choose another."),
    N_("Your current password is not right."),
    N_("Passwords are turned off for this portal. Sign in with an emailed link."),
    N_("Your password was changed at the same time somewhere else. Reload the page and try again."),
    N_("Too many wrong passwords. Wait 15 minutes and try again."),
    N_("Too many failed password sign-ins. Wait 15 minutes, or sign in with an emailed link instead."),
    N_("Too many password reset links were requested. Wait a few minutes and try again."),
    # pages/team.py and the role checks of billing and payments (roles: chassis/scope.py)
    N_("Owner"),
    N_("Payer"),
    N_("Approver"),
    N_("Viewer"),
    N_("Everything, and manages these contacts"),
    N_("Pays invoices and manages cards; sees everything"),
    N_("Accepts, declines and comments on quotes; sees everything"),
    N_("Reads and downloads only"),
    N_("The invitation is on its way: they get an email with a sign-in link."),
    N_("The role is changed. That person signs in again to use it."),
    N_("That person can no longer sign in."),
    N_("Not allowed for your role"),
    N_("Only an owner of your organisation can manage its contacts."),
    N_("Only an owner or an approver of your organisation can accept, decline or ask to change quotes."),
    N_("Only an owner or a payer of your organisation can pay or change its cards."),
    N_("Your role in your organisation lets you read and download only."),
    N_("Only an owner of your organisation can change the company's details."),
    N_("This is the organisation's last owner. Make another contact an owner first."),
    N_("This address cannot be invited. Ask the business to add it."),
    N_("This person can already sign in."),
    N_("Choose a role."),
    N_("Enter a valid email address."),
    N_("No such contact."),
    # forms.py and usecases.py: a field too long (too_long, with usecases.LABELS and the pages' own labels)
    N_("%(field)s is at most %(limit)s characters."),
    N_("This form was changed or is out of date. Reload the page and try again."),
    N_("Your phone number"),
    N_("The company name"),
    N_("The address"),
    N_("The company phone number"),
    N_("The subject"),
    N_("The message"),
    N_("The comment"),
    N_("The note"),
    N_("The reason"),
    N_("Your full name"),
    N_("The account holder's name"),
    N_("The email address"),
    N_("The IBAN"),
    N_("The password"),
    N_("The current password"),
    N_("The repeated password"),
    N_("The name"),
    N_("The passkey's name"),
    # billing's statement (services/billing/handlers/statements.py), shown by the statement page
    N_("The start date must be a date like 2026-11-23."),
    N_("The end date must be a date like 2026-11-23."),
    N_("The period's start is after its end."),
    # pages/payments.py: AMOUNT_FORMATS, the pay page's amount by the currency's decimals
    N_("Enter the amount as a whole number, like 150."),
    N_("Enter the amount as a number with at most two decimals, like 150.00."),
    N_("Enter the amount as a number with at most three decimals, like 150.000."),
    N_("Enter the amount as a number with at most four decimals, like 150.0000."),
    N_("Enter the amount written like %(amount)s, with “%(separator)s” before the decimals."),
    N_("Enter an amount above zero, or leave the field empty to pay the whole balance."),
)


# The formatting filters are pure functions of their arguments, and Babel's formatting is the costliest
# part of rendering a page (a dashboard formats dozens of amounts and dates): each keeps its recent
# answers. The arguments are plain strings and ints, so a cache entry is small and never goes stale.
_formatted = lru_cache(maxsize=8192)


@_formatted
def _number(value: str, locale: str) -> str:
    return format_decimal(Decimal(value).normalize(), locale=locale)


def number(value, locale: str = "en_US") -> str:
    """A quantity or a percentage as the reader writes numbers: 1.5 in English, 1,5 in German."""
    return _number(str(value), locale)


@_formatted
def _money(amount: int, currency: str, locale: str) -> str:
    return Money(amount, currency).format(locale)


def money(value: dict | None, locale: str = "en_US") -> str:
    if not value:
        return ""
    return _money(int(value["amount"]), value["currency"], locale)


def iban(value: str) -> str:
    """An IBAN as it is printed, in groups of four ("DE89 3704 0044 ..."), as on the invoice's PDF."""
    compact = "".join(str(value).split())
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def line_breaks(text: object) -> Markup:
    """Text a person wrote (a comment) with its own line breaks, each line escaped."""
    return Markup("<br>").join(str(text or "").splitlines())


@_formatted
def local_datetime(iso: str, tz: str = "UTC", locale: str = "en_US") -> str:
    return format_datetime(datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)), "medium", locale=locale)


@_formatted
def local_appointment(iso: str, tz: str = "UTC", locale: str = "en_US") -> str:
    """A booked time to the minute ("08.12.2026, 15:00"), as its email writes it: a meeting has no seconds."""
    return date_and_short_time(datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)), "medium", locale)


@_formatted
def local_date(iso: str, locale: str = "en_US", style: str = "medium") -> str:
    return format_date(date.fromisoformat(iso), style, locale=locale)


@_formatted
def local_time(iso: str, tz: str = "UTC", locale: str = "en_US") -> str:
    return format_time(datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)), "short", locale=locale)


@_formatted
def zone_name(tz: str, locale: str = "en_US") -> str:
    """'Eastern Time' rather than 'America/New_York', in the reader's language."""
    return get_timezone_name(ZoneInfo(tz), locale=locale)


def csrf_field() -> Markup:
    """The hidden input every POST form carries (see csrf.py)."""
    return Markup('<input type="hidden" name="%s" value="%s">') % (csrf.FIELD, escape(csrf.current_token.get()))


def language_for(locale: str | None) -> str:
    """The portal language for a locale ("de_DE" -> "de"); English for none or one we do not speak."""
    language = language_of(locale) if locale else "en"
    return language if language in LANGUAGES else "en"


@lru_cache(maxsize=256)  # a browser sends the same header with every request
def browser_locale(accept_language: str | None) -> str:
    """The portal locale a browser's Accept-Language header prefers (RFC 9110: the highest `q`, the
    first of equal ones; `q=0` refuses), for a page that has no contact or document to take one from:
    de_DE for German, en_US for English, and en_US when it names neither (or nothing readable)."""
    best, best_q = "en_US", 0.0
    for part in (accept_language or "").split(",")[:20]:
        tag, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        language = tag.replace("_", "-").split("-")[0].lower()
        if language in LANGUAGE_LOCALES and 0 < q <= 1 and q > best_q:
            best, best_q = LANGUAGE_LOCALES[language], q
    return best


@lru_cache(maxsize=1024)
def _parsed(locale: str) -> str | None:
    try:
        return str(Locale.parse(locale.replace("-", "_")))
    except (ValueError, TypeError, UnknownLocaleError):
        return None


@lru_cache(maxsize=1024)  # asked on every render, of a few pairs
def reading_locale(contact_locale: str | None, page_locale: str | None) -> str:
    """The locale a page is read in, for its words (env_for) and its numbers, money and dates alike, so
    the two never disagree. The contact's own locale chooses the language, else the page's (the client's
    or a document's); the formats are those of the first of the two in that language, else en_US: a
    German contact of an en_US client reads "1.635,00 $", an English one of a de_DE client "$1,635.00"."""
    language = language_for(contact_locale or page_locale)
    for candidate in (contact_locale, page_locale):
        parsed = _parsed(candidate) if candidate else None
        if parsed and language_of(parsed) == language:
            return parsed
    return "en_US"


class TranslatedLiterals(Extension):
    """`_("literal")` translated once, as the template compiles, instead of called on every page: each
    language has its own env (env_for), so a literal's translation is fixed for its templates. The call
    becomes `"translation" | safe`, which Jinja folds into the template's text: what _() answers
    (views' gettext: marked safe, `%%` read as `%`), without a call. Calls with values stay calls."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        translate = getattr(self.environment, "translate_literal")
        before: Token | None = None
        for token in stream:
            if token.test("name:_") and not (before and before.test("dot")) and stream.current.test("lparen"):
                opening = next(stream)
                if stream.current.test("string") and stream.look().test("rparen"):
                    literal = next(stream)
                    next(stream)  # the closing parenthesis
                    yield Token(token.lineno, "string", translate(literal.value) % {})
                    yield Token(token.lineno, "pipe", "|")
                    before = Token(token.lineno, "name", "safe")
                    yield before
                    continue
                yield token
                token = opening
            yield token
            before = token


def escaped_output(value: Any) -> str:
    """What a template prints, escaped as markupsafe escapes it (the same entities), without making a
    Markup object of each value: markupsafe's `escape` builds one per call (~0.5 us), and a page of
    twenty invoices prints two hundred values. Only where a value is printed is this used
    (PortalTemplate): there the text goes straight into the page, so it need not be marked safe."""
    if type(value) is str:
        return (
            value.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace("'", "&#39;")
            .replace('"', "&#34;")
        )
    if type(value) is Markup:  # already safe: printed as it is
        return value
    return escape(value)


class PortalTemplate(Template):
    """A compiled template that prints values through `escaped_output`. Jinja's compiled code calls
    the `escape` of its module namespace at each `{{ ... }}` of an autoescaped template (and only
    there: filters and `Markup` formatting keep markupsafe's own). `_from_namespace` is Jinja's own
    hook, not a public one: Jinja is pinned, and test_gateway_i18n checks the page still prints this way."""

    @classmethod
    def _from_namespace(
        cls, environment: Environment, namespace: MutableMapping[str, Any], globals: MutableMapping[str, Any]
    ) -> Template:
        namespace["escape"] = escaped_output
        return super()._from_namespace(environment, namespace, globals)


class BufferedBlocks(CodeGenerator):
    """Jinja's code generator, with each `{% block %}` gathering what it prints in a list and handing
    it on in one piece. Jinja's own block is a generator that yields every piece of text and every
    value separately, and each piece then passes through the generator of every template the page
    extends: about five hundred pieces for the invoices page, a fifth of its rendering. Inside the
    block, Jinja's own buffered output is used, as in a macro or a `{% set %}` block. Streaming a
    template (`Template.generate`) then hands on a block at a time; the portal renders whole pages."""

    def blockvisit(self, nodes: Iterable[Node], frame: Frame) -> None:
        if not frame.block_frame or frame.buffer is not None or self.environment.is_async:
            super().blockvisit(nodes, frame)
            return
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = []")
        super().blockvisit(nodes, frame)
        self.writeline(f"yield concat({frame.buffer})")


class PortalEnvironment(Environment):
    """Jinja's environment, reading `x.name` of a plain dict (what every service answers) as the key
    first: Jinja tries the attribute first, and the AttributeError a dict raises for every key cost a
    page of twenty invoices a tenth of its rendering. A key named like a dict method (`items`) is read
    as the key, which is what a template means by it; anything else falls back to Jinja's own order."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    template_class = PortalTemplate
    code_generator_class = BufferedBlocks


def _build_env(language: str) -> Environment:
    env = PortalEnvironment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n", TranslatedLiterals],
        # production templates never change under a running gateway: no file check per page
        auto_reload=settings.env_bool("GATEWAY_TEMPLATE_RELOAD", settings.is_dev()),
    )
    catalogue = translations(language, LOCALE_DIR)
    env.extend(translate_literal=catalogue.gettext)  # read by TranslatedLiterals as templates compile
    install = getattr(env, "install_gettext_translations")  # added by the i18n extension, unknown to its types
    install(catalogue, newstyle=True)
    gettext = _newstyle_gettext(catalogue.gettext)
    env.globals.update(gettext=gettext, _=gettext)

    def translate(text):
        """Text from Python (a label, an error title) in this language; unknown text as it is. Unlike
        _() it never marks the text safe nor %-formats it, so it suits values that are not literals."""
        if isinstance(text, Message):  # its msgid and its text values translated, its numbers as written here
            return catalogue.gettext(text.msgid) % {
                name: format_decimal(v, locale=language) if isinstance(v, int) else catalogue.gettext(v)
                for name, v in text.values.items()
            }
        return catalogue.gettext(text) if isinstance(text, str) and text else text

    env.filters.update(
        payment_label=lambda text: localized_payment_label(text, catalogue.gettext, language),
        money=money,
        local_datetime=local_datetime,
        local_appointment=local_appointment,
        local_date=local_date,
        local_time=local_time,
        zone_name=zone_name,
        translate=translate,
        number=number,
        percent=percent,
        iban=iban,
        one_line=one_line,
        line_breaks=line_breaks,
        status_label=lambda key: translate(STATUS_LABELS.get(key) or str(key).replace("_", " ")),
        method_label=lambda key: translate(METHOD_LABELS.get(key) or str(key).replace("_", " ")),
    )
    env.tests.update(payable=payable, names_how_paid=names_how_paid)
    env.globals.update(
        csrf_field=csrf_field,
        csrf_token=csrf.current_token.get,
        language=language,
        method_keys=frozenset(METHOD_LABELS),
    )
    return env


def _message_value(value: Any) -> Any:
    """A value put into a translated message: escaped as it is printed, a number as it is (its text
    needs no escaping, and `%(n)d` needs a number)."""
    if value is None or isinstance(value, (int, float, Decimal)):
        return value
    return escaped_output(value)


def _newstyle_gettext(translate: Callable[[str], str]) -> Callable[..., str]:
    """Jinja's newstyle gettext, answered from memory for a message without variables. A page calls
    _() dozens of times, and Jinja's own wrapper passes each through three context calls and a
    Markup %-format; here a message's translation is escaped and formatted once per language."""

    @lru_cache(maxsize=4096)
    def plain(message: str) -> Markup:
        return Markup(translate(message)) % {}

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, message: str, **variables: Any) -> str:
        if not eval_ctx.autoescape:
            return translate(message) % variables
        if variables:
            return Markup(translate(message) % {name: _message_value(v) for name, v in variables.items()})
        return plain(message)

    return gettext


_envs: dict[str, Environment] = {}
_envs_lock = threading.Lock()


def env_for(locale: str | None) -> Environment:
    """The portal's Jinja env in the locale's language. One per language, built once with its
    translations installed and then shared by every request thread (never re-installed per request)."""
    language = language_for(locale)
    env = _envs.get(language)
    if env is None:
        with _envs_lock:
            env = _envs.get(language) or _envs.setdefault(language, _build_env(language))
    return env


def make_env() -> Environment:
    """The English env (error pages without a session, and any caller that needs just one)."""
    return env_for("en")
