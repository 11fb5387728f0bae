"""gunicorn's logger, with one-document link tokens taken out of the access log, and the lines of
plain, fast page views sampled.

A GET or HEAD answered with a 2xx or 3xx faster than ACCESS_LOG_SLOW_MS is logged one time in
ACCESS_LOG_SAMPLE (the line costs about a twentieth of such a page's CPU); every other request (a
change, an error, a slow answer) is logged. `portal_http_request_duration_seconds` counts them all,
by route and status, whatever is logged.
"""

import itertools
import re

from gunicorn.glogging import Logger

from chassis import settings

TOKEN_PATH = re.compile(r"^/i/[^/]+")
READS = frozenset({"GET", "HEAD"})


class RedactingLogger(Logger):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.sample = max(settings.env_int("ACCESS_LOG_SAMPLE", 10), 1)
        self.slow_seconds = settings.env_int("ACCESS_LOG_SLOW_MS", 250) / 1000
        self._plain = itertools.count()

    def access(self, resp, req, environ, request_time):
        if (
            req.method in READS
            and 200 <= (resp.status_code or 0) < 400
            and request_time.total_seconds() < self.slow_seconds
            and next(self._plain) % self.sample
        ):
            return  # counted by the metrics; one in `sample` is logged
        super().access(resp, req, environ, request_time)

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
