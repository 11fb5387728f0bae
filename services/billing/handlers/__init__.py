"""Billing use cases. Each takes a unit of work and the current time first, is scoped by workspace,
and returns plain JSON-ready data. Errors are chassis.errors, raised before anything is committed.

One module per concern; this package lists what each offers, so a name leads to its module."""

from services.billing.handlers.activity import (  # noqa: F401
    list_activity,
)
from services.billing.handlers.balances import (  # noqa: F401
    apply_credit,
    apply_retainer,
    client_balances,
    refund_retainer,
)
from services.billing.handlers.bookings import (  # noqa: F401
    add_review,
    book_slot,
    booking_options,
    cancel_booking,
    list_bookings,
    list_reviews,
)
from services.billing.handlers.card_disputes import (  # noqa: F401
    record_dispute,
)
from services.billing.handlers.clients import (  # noqa: F401
    add_contact,
    change_contact_role,
    client_view,
    create_client,
    get_client,
    invite_contact,
    list_clients,
    list_team,
    remove_contact,
    republish_contacts,
    set_portal_access,
    update_client,
    update_contact,
    update_profile,
)
from services.billing.handlers.credit_notes import (  # noqa: F401
    get_credit_note,
    list_client_credit_notes,
)
from services.billing.handlers.dashboard import (  # noqa: F401
    client_dashboard,
)
from services.billing.handlers.disputes import (  # noqa: F401
    get_invoice_dispute,
    list_invoice_disputes,
    raise_invoice_dispute,
    resolve_invoice_dispute,
)
from services.billing.handlers.documents import (  # noqa: F401
    accept_quote,
    add_comment,
    archive_invoice,
    convert_quote,
    create_invoice,
    create_quote,
    document_numbers,
    get_invoice,
    get_quote,
    invoice_view,
    issue_credit_note,
    list_comments,
    list_credit_notes,
    list_quote_versions,
    list_quotes,
    mark_invoice_viewed,
    reject_quote,
    request_quote_changes,
    revise_quote,
    send_invoice,
    send_quote,
    update_invoice,
    update_quote,
    view_invoice,
    view_quote,
    void_invoice,
)
from services.billing.handlers.engagement import (  # noqa: F401
    client_engagement,
    list_engagement,
    record_signal,
)
from services.billing.handlers.invoice_listing import (  # noqa: F401
    list_invoices,
)
from services.billing.handlers.payment_plans import (  # noqa: F401
    plan_payment,
)
from services.billing.handlers.payments import (  # noqa: F401
    get_payment,
    list_payments,
    record_payment,
    record_stripe_payment,
)
from services.billing.handlers.refunds import (  # noqa: F401
    list_refunds,
    record_refund,
)
from services.billing.handlers.schedules import (  # noqa: F401
    create_recurring,
    get_recurring,
    list_recurring,
    run_due_recurring,
    run_reminders,
    update_recurring,
    workspaces_due_recurring,
    workspaces_with_open_invoices,
)
from services.billing.handlers.statements import (  # noqa: F401
    statement,
)
from services.billing.handlers.summaries import (  # noqa: F401
    repair_client_summaries,
)
from services.billing.handlers.verification import (  # noqa: F401
    code_of,
    codes_of,
    issue_code,
    verify_document,
)
from services.billing.handlers.workspaces import (  # noqa: F401
    authenticate_api_key,
    create_api_key,
    create_workspace,
    get_workspace,
    list_api_keys,
    revoke_api_key,
    update_workspace,
)
