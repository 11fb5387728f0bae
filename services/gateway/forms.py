"""Reading the portal's form posts: each field is the text that was typed, or the form is refused. A field
sent twice (a list) or text that is too long is a 400 page, never joined or cut into something else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import falcon

from services.gateway import usecases
from services.gateway.usecases import BadInput

# A field a page's form never sends twice nor too long (a hidden key, a choice): the form was tampered
# with or is out of date, and no key of it is shown to the client.
FORM_CHANGED = "This form was changed or is out of date. Reload the page and try again."


def field(
    form: dict,
    name: str,
    limit: int,
    default: str = "",
    title: str = "Check the form",
    label: str | None = None,
    again: bool = False,
) -> str:
    """The text of one field (`default` when the form left it out), at most `limit` characters. A message
    names the field by its `label` (by default the form's label in usecases.LABELS). `again`: the page
    shows its form again on a refusal, so text too long is a BadInput it catches (see `typed`)."""
    label = label or usecases.LABELS.get(name)
    value = form.get(name, default)
    if not isinstance(value, str):  # falcon gives a list for a name sent more than once
        raise falcon.HTTPBadRequest(title=title, description=FORM_CHANGED)
    value = _with_lf(value)
    if len(value) > limit:
        if again and label:
            raise BadInput(usecases.too_long(label, limit), {name: f"longer than {limit} characters"})
        raise falcon.HTTPBadRequest(title=title, description=usecases.too_long(label, limit) if label else FORM_CHANGED)
    return value


def typed(form: dict, *names: str) -> dict[str, str]:
    """What was typed in the named fields, for a form shown again before they were read with `field`."""
    return {name: _with_lf(form[name]) for name in names if isinstance(form.get(name), str)}


def _with_lf(text: str) -> str:
    """A browser sends each line break typed in a textarea as CRLF: kept as the LF the API's callers send."""
    return text.replace("\r\n", "\n")


@contextmanager
def refused_as(title: str, **titles_by_field: str) -> Iterator[None]:
    """Input a use case refused, as the form's 400 page under the page's own title (or the one given for
    the field it names)."""
    try:
        yield
    except BadInput as exc:
        shown = next((titles_by_field[name] for name in exc.fields if name in titles_by_field), title)
        raise falcon.HTTPBadRequest(title=shown, description=exc.detail) from None


def refusal(form: str, exc: BadInput, **typed: Any) -> dict:
    """A form a use case refused, for its page to show again (as a 400): which of the page's forms, what to
    fix beside it, and what was typed in it (templates/_refused.html)."""
    return {"form": form, "error": exc.detail, "typed": typed}
