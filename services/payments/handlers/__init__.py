"""Payments use cases: pay invoices by card through Stripe, save cards, autopay, refunds, and the
Stripe events that settle all of it. One module per concern; import the one you need.

Each function takes a unit of work, the time, and its collaborators (`stripe`: a StripeApi or a fake;
`billing`: the billing service's RPC proxy or a fake), so the rules test without a broker or Stripe.

How a card payment flows:
1. `payment_attempts.start_payment` asks billing for a plan (which invoices, how much, credit applied
   first) and keeps it as an attempt. The form's key makes a double submit find the same attempt.
2. The browser sets the card up with Stripe.js (a SetupIntent from `cards.card_setup`), then
   `charging.confirm_attempt` charges it with a PaymentIntent whose idempotency key is the attempt id
   and its try number. A claim on the attempt row lets one confirmation in at a time.
3. Money is recorded only when Stripe's signed `payment_intent.succeeded` event is processed
   (`webhook_events.process_as_received`; `process_together` for a burst of one workspace's;
   `process_event` for a stored one being retried; then `event_handling.handle_event`), once per
   attempt, whatever the order or number of deliveries.

The other modules: `stripe_customers` (each client's Stripe Customer), `autopay` (off-session charges
of recurring invoices), `payment_refunds`, `card_disputes`, and `common` (the paying roles and small
helpers). Bank accounts and their mandates are in services/payments/bank_debit.py.
"""
