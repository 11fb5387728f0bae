"""Reading the portal's form posts: each field is the text that was typed, or the form is refused. A field
sent twice (a list) or text that is too long is a 400 page, never joined or cut into something else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import falcon

from services.gateway.usecases import BadInput


def field(form: dict, name: str, limit: int, default: str = "", title: str = "Check the form") -> str:
    """The text of one field (`default` when the form left it out), at most `limit` characters."""
    value = form.get(name, default)
    if not isinstance(value, str):  # falcon gives a list for a name sent more than once
        raise falcon.HTTPBadRequest(title=title, description=f"Send {name} once.")
    if len(value) > limit:
        raise falcon.HTTPBadRequest(title=title, description=f"{name} is at most {limit} characters.")
    return value


@contextmanager
def refused_as(title: str, **titles_by_field: str) -> Iterator[None]:
    """Input a use case refused, as the form's 400 page under the page's own title (or the one given for
    the field it names)."""
    try:
        yield
    except BadInput as exc:
        shown = next((titles_by_field[name] for name in exc.fields if name in titles_by_field), title)
        raise falcon.HTTPBadRequest(title=shown, description=exc.detail) from None
