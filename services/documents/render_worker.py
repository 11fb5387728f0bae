"""A render worker process: reads one JSON request per line on stdin, writes one JSON reply per line.

Run by the documents service (never by hand). It is a fresh interpreter, free of eventlet, so
WeasyPrint's CPU work never competes with the service's event loop.
"""

import base64
import json
import os
import signal
import sys

from services.documents.pdf import render_pdf


def main() -> None:
    # Lower priority than the service: on a busy machine, answering RPC calls comes before rendering.
    os.nice(10)
    # A SIGTERM to the whole process group (devstack, a shell, some supervisors) must not kill a render
    # in flight: the service stops gracefully and lets it finish. The service kills idle workers when
    # it stops, and a worker whose service is gone sees stdin close and exits.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = {"pdf": base64.b64encode(render_pdf(request["kind"], request["context"])).decode("ascii")}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
