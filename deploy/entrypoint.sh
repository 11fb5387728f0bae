#!/bin/sh
# Entrypoint of the billing-portal image (deploy/Dockerfile): the first argument picks what runs.
#
#   auth | billing | payments | documents   that nameko service (its services/<name>/config.yml)
#   gateway [gunicorn options]              the Falcon gateway under gunicorn (binds GATEWAY_BIND)
#   seed                                    demo data into BILLING_DATABASE_URL
#   migrate <service>                       only `alembic upgrade head` on <SERVICE>_DATABASE_URL
#   help                                    this text
#   anything else                           run as given (portalctl ..., python ..., sh)
#
# Each process is exec'd, so it is PID 1 and gets SIGTERM itself: nameko and gunicorn stop gracefully.
set -eu

service_class() {
    case "$1" in
        auth) echo services.auth.service:AuthService ;;
        billing) echo services.billing.service:BillingService ;;
        payments) echo services.payments.service:PaymentsService ;;
        documents) echo services.documents.service:DocumentsService ;;
        *) return 1 ;;
    esac
}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

cmd="${1:-help}"
case "$cmd" in
    auth | billing | payments | documents)
        shift
        exec nameko run --config "services/$cmd/config.yml" "$(service_class "$cmd")" "$@"
        ;;
    gateway)
        shift
        exec gunicorn -c services/gateway/gunicorn.conf.py "$@"
        ;;
    seed)
        shift
        exec python -m services.billing.seed "$@"
        ;;
    migrate)
        name="${2:-}"
        if ! service_class "$name" >/dev/null 2>&1; then
            echo "usage: migrate auth|billing|payments|documents" >&2
            exit 2
        fi
        # The services migrate themselves on start; this is for running it ahead of a rollout.
        exec python -c 'import importlib, sys
from pathlib import Path
from chassis import db, settings
name = sys.argv[1]
package = Path(importlib.import_module("services." + name).__file__).parent
db.upgrade(settings.database_url(name), package / "migrations")' "$name"
        ;;
    help | --help | -h)
        usage
        ;;
    *)
        exec "$@"
        ;;
esac
