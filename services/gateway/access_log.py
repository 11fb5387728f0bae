"""gunicorn's logger, with one-document link tokens taken out of the access log."""

import re

from gunicorn.glogging import Logger

TOKEN_PATH = re.compile(r"^/i/[^/]+")


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("U", "r"):
            if key in atoms and isinstance(atoms[key], str):
                atoms[key] = (
                    TOKEN_PATH.sub("/i/<token>", atoms[key])
                    if key == "U"
                    else re.sub(r" /i/[^/ ]+", " /i/<token>", atoms[key])
                )
        return atoms
