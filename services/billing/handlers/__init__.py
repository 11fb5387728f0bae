"""Billing use cases. Each takes a unit of work and the current time first, is scoped by workspace,
and returns plain JSON-ready data. Errors are chassis.errors, raised before anything is committed."""

from services.billing.handlers.bookings import *  # noqa: F401,F403
from services.billing.handlers.clients import *  # noqa: F401,F403
from services.billing.handlers.documents import *  # noqa: F401,F403
from services.billing.handlers.engagement import *  # noqa: F401,F403
from services.billing.handlers.ledger import *  # noqa: F401,F403
from services.billing.handlers.payment_plans import *  # noqa: F401,F403
from services.billing.handlers.schedules import *  # noqa: F401,F403
from services.billing.handlers.summaries import *  # noqa: F401,F403
from services.billing.handlers.workspaces import *  # noqa: F401,F403
