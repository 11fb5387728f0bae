"""Payments service: Stripe configuration now; charging arrives with the payments issue."""
from __future__ import annotations

from pathlib import Path

from nameko.rpc import rpc

from chassis import settings
from chassis.nameko_ext import Database, ServiceBase


class PaymentsService(ServiceBase):
    name = "payments"
    db = Database("payments", Path(__file__).parent / "migrations")

    @rpc
    def stripe_config(self) -> dict:
        """What the browser may know: the publishable key and where Stripe.js comes from."""
        return {
            "publishable_key": settings.env("STRIPE_PUBLISHABLE_KEY", "pk_test_localstripe"),
            "api_base": settings.env("STRIPE_API_BASE"),  # localstripe in development; None means Stripe
        }
