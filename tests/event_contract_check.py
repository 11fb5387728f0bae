"""The contract check over every event a test run produced: each service's `outbox` table holds every
event it published (the relay marks rows, it never deletes them), so at the end of the integration
and e2e tiers `check_outboxes` validates all of them against docs/events.asyncapi.yaml and fails the
run, with a report grouped by event type, if any is undocumented or does not match its schema.
"""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import closing

import psycopg2

from chassis import event_contract


def outbox_problems(database_urls: dict[str, str], contract=None) -> tuple[int, dict]:
    """(events checked, {(service, type, version): {"count", "example", "errors"}}) over the outboxes."""
    contract = contract or event_contract.default()
    checked, problems = 0, defaultdict(lambda: {"count": 0, "example": None, "errors": set()})
    for service, url in sorted(database_urls.items()):
        for body in _outbox_bodies(url):
            checked += 1
            try:
                event = json.loads(body)
            except ValueError as exc:
                event, errors = {}, [f"body is not JSON: {exc}"]
            else:
                errors = contract.validate(event)
                documented = contract.messages.get((event.get("type"), event.get("version")))
                if documented is not None and documented.service != service:
                    errors.append(f"published by {service}, but documented on {documented.service}.events")
            if errors:
                entry = problems[(service, event.get("type"), event.get("version"))]
                entry["count"] += 1
                entry["example"] = entry["example"] or event.get("id")
                entry["errors"].update(errors)
    return checked, dict(problems)


def report(checked: int, problems: dict) -> str:
    bad = sum(p["count"] for p in problems.values())
    lines = [f"{bad} of {checked} published events break the event contract ({event_contract.DOCUMENT}):"]
    for (service, event_type, version), entry in sorted(problems.items(), key=lambda kv: tuple(map(str, kv[0]))):
        count = f"{entry['count']} event" + ("s" if entry["count"] != 1 else "")
        lines.append(f"  {service}: {event_type} v{version} ({count}, e.g. id {entry['example']})")
        lines.extend(f"      {error}" for error in sorted(entry["errors"]))
    return "\n".join(lines)


def check_outboxes(database_urls: dict[str, str]) -> int:
    """Raise AssertionError with a readable report if any published event breaks the contract;
    returns how many events were checked."""
    checked, problems = outbox_problems(database_urls)
    if problems:
        raise AssertionError(report(checked, problems))
    return checked


def _outbox_bodies(url: str) -> list[str]:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.outbox') IS NOT NULL")
        if not cur.fetchone()[0]:  # the service never started (never migrated): it published nothing
            return []
        cur.execute("SELECT body FROM outbox ORDER BY seq")
        return [row[0] for row in cur.fetchall()]
