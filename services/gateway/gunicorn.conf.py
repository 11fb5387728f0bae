"""gunicorn settings for the gateway; every value can be overridden from the environment."""

import glob
import os
import shutil
import tempfile

# prometheus_client's multiprocess mode: each worker writes its metrics to files in this directory and
# /metrics adds up every worker's. Set before any worker imports prometheus_client (it reads it then).
METRICS_PREFIX = "portal-gateway-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=METRICS_PREFIX)

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GATEWAY_WORKERS") or "2")
# Threads let one worker wait on several RPC replies at once; the RPC pool is thread-safe.
worker_class = "gthread"
threads = int(os.environ.get("GATEWAY_THREADS") or "4")
timeout = 30
# An idle keep-alive connection stays open longer than a reverse proxy keeps its own (nginx and most load
# balancers: 60 s), so the proxy, not the gateway, closes it: when the server closes first, a request
# sent at that instant meets a closed socket and the proxy answers 502.
keepalive = int(os.environ.get("GATEWAY_KEEPALIVE") or "75")
graceful_timeout = 10
accesslog = "-"
access_log_format = (
    '{"ts":"%(t)s","level":"INFO","service":"gateway","request_id":"%({x-request-id}o)s",'
    '"method":"%(m)s","path":"%(U)s","status":%(s)s,"ms":%(M)s}'
)
wsgi_app = "services.gateway.app:get_app()"
# /i/<token> paths are credentials for one document: they are redacted in the access log.
logger_class = "services.gateway.access_log.RedactingLogger"


def on_starting(server):
    """A (re)started gateway counts from zero: a previous run's files would be added in otherwise."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def child_exit(server, worker):
    """A dead worker's counters stay (totals never go down); its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(directory).startswith(METRICS_PREFIX):  # only the directory made above
        shutil.rmtree(directory, ignore_errors=True)
