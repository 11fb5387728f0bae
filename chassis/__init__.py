"""Shared chassis for the portal services: settings, database, money, events, errors, logging.

No business logic lives here; every service imports it, and nothing else from another service.
"""
