"""gunicorn settings for the gateway; every value can be overridden from the environment."""
import os

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GATEWAY_WORKERS", "2"))
# Threads let one worker wait on several RPC replies at once; the RPC pool is thread-safe.
worker_class = "gthread"
threads = int(os.environ.get("GATEWAY_THREADS", "4"))
timeout = 30
graceful_timeout = 10
accesslog = "-"
access_log_format = '{"ts":"%(t)s","level":"INFO","service":"gateway","request_id":"%({x-request-id}o)s","method":"%(m)s","path":"%(U)s","status":%(s)s,"ms":%(M)s}'
wsgi_app = "services.gateway.app:get_app()"
# /i/<token> paths are credentials for one document: they are redacted in the access log.
logger_class = "services.gateway.access_log.RedactingLogger"
