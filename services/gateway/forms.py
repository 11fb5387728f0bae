"""Reading the portal's form posts: each field is the text that was typed, or the form is refused. A field
sent twice (a list) or text that is too long is a 400 page, never joined or cut into something else."""

from __future__ import annotations

import falcon


def field(form: dict, name: str, limit: int, default: str = "", title: str = "Check the form") -> str:
    """The text of one field (`default` when the form left it out), at most `limit` characters."""
    value = form.get(name, default)
    if not isinstance(value, str):  # falcon gives a list for a name sent more than once
        raise falcon.HTTPBadRequest(title=title, description=f"Send {name} once.")
    if len(value) > limit:
        raise falcon.HTTPBadRequest(title=title, description=f"{name} is at most {limit} characters.")
    return value
