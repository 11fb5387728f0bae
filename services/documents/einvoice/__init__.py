"""EN 16931 e-invoices: CII XML (Factur-X / ZUGFeRD EN 16931 and XRechnung), PDF/A-3 checks, and
validation by the official rules."""

from services.documents.einvoice.cii import PROFILES, EInvoiceError, cii_xml

__all__ = ["PROFILES", "EInvoiceError", "cii_xml"]
