"""EN 16931 invoices and credit notes as UN/CEFACT CII (D16B) XML: the Factur-X / ZUGFeRD "EN 16931"
profile and the XRechnung CII profile.

Built from billing's document view without recomputing anything: every amount in the XML is one
billing stored (line amounts, the per-category tax rows, the totals), converted from minor units to
the currency's decimals. The rules that check the result (EN 16931 BR-CO-*, BR-S/Z/E/AE-*) hold as
long as billing's own arithmetic holds: line amounts add up to the subtotal, each category's tax is
its base x rate rounded once, and total = subtotal + tax.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from lxml import etree

from chassis.money import minor_digits

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
PROFILES = {
    "en16931": "urn:cen.eu:en16931:2017",
    "xrechnung": "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0",
}
# BT-23: the Peppol billing process, the one XRechnung and most receivers expect.
BUSINESS_PROCESS = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
TYPE_CODES = {"invoice": "380", "credit_note": "381"}
CATEGORIES = ("S", "Z", "E", "AE")
# UNTDID 4461: 58 SEPA credit transfer; 97 "clearing between partners" for a credit note, which is
# set off against what the buyer owes rather than paid into the seller's account.
SEPA_CREDIT_TRANSFER = "58"
CLEARING_BETWEEN_PARTNERS = "97"
# Texts the rules require when the document gives none (BR-E-10, BR-AE-10).
DEFAULT_EXEMPTION = {"E": "Exempt from VAT", "AE": "Reverse charge"}
POSTCODE_CITY = re.compile(r"^(?:(?P<country>[A-Z]{2})-)?(?P<postcode>[0-9A-Z][0-9A-Z -]{1,9}?)\s+(?P<city>\S.*)$")


class EInvoiceError(ValueError):
    """The document cannot be expressed as an EN 16931 invoice (a missing or malformed field)."""


def _q(tag: str) -> str:
    prefix, name = tag.split(":")
    return f"{{{NS[prefix]}}}{name}"


# What XML 1.0 cannot hold at all (control characters other than tab and line breaks, lone
# surrogates, U+FFFE/U+FFFF): a name typed with one still makes an e-invoice, without it.
NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _el(parent, tag: str, text=None, **attrs):
    element = etree.SubElement(parent, _q(tag), {k: NOT_IN_XML.sub("", str(v)) for k, v in attrs.items()})
    if text is not None:
        element.text = NOT_IN_XML.sub("", str(text))
    return element


def _date(parent, tag: str, iso: str, inner: str = "udt:DateTimeString") -> None:
    holder = _el(parent, tag)
    _el(holder, inner, str(iso)[:10].replace("-", ""), format="102")


def _decimal_text(value) -> str:
    """A decimal string without exponent or trailing zeros: "19.00" -> "19", "7.5" -> "7.5"."""
    number = Decimal(str(value)).normalize()
    if number == number.to_integral():
        number = number.quantize(Decimal(1))
    return format(number, "f")


class Money:
    """Minor units to the currency's decimals, as the XML's amount text."""

    def __init__(self, currency: str):
        self.currency = currency.upper()
        self.places = minor_digits(self.currency)  # the same digits billing's minor units use

    def __call__(self, minor: int) -> str:
        if isinstance(minor, bool) or not isinstance(minor, int):
            raise EInvoiceError(f"amounts are integer minor units, got {minor!r}")
        return format(Decimal(minor).scaleb(-self.places), f".{self.places}f")


def split_address(text: str, country: str = "") -> dict:
    """Multi-line postal address text into CII address fields. The last line is read as
    "[CC-]postcode city" when it looks like one; otherwise it is the city."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    result = {"lines": [], "postcode": "", "city": "", "country": (country or "").strip().upper()}
    if not lines:
        return result
    last = POSTCODE_CITY.match(lines[-1])
    if last and any(char.isdigit() for char in last.group("postcode")):
        result["postcode"] = last.group("postcode").strip()
        result["city"] = last.group("city").strip()
        if not result["country"] and last.group("country"):
            result["country"] = last.group("country")
        result["lines"] = lines[:-1]
    else:
        result["city"] = lines[-1]
        result["lines"] = lines[:-1]
    if len(result["lines"]) > 3:  # CII has three address lines; the rest joins the third
        result["lines"] = [*result["lines"][:2], ", ".join(result["lines"][2:])]
    return result


def _address(parent, address: dict) -> None:
    holder = _el(parent, "ram:PostalTradeAddress")
    if address["postcode"]:
        _el(holder, "ram:PostcodeCode", address["postcode"])
    for tag, line in zip(("ram:LineOne", "ram:LineTwo", "ram:LineThree"), address["lines"], strict=False):
        _el(holder, tag, line)
    if address["city"]:
        _el(holder, "ram:CityName", address["city"])
    _el(holder, "ram:CountryID", address["country"])


def _contact(parent, name: str = "", phone: str = "", email: str = "") -> None:
    if not (name or phone or email):
        return
    contact = _el(parent, "ram:DefinedTradeContact")
    if name:
        _el(contact, "ram:PersonName", name)
    if phone:
        _el(_el(contact, "ram:TelephoneUniversalCommunication"), "ram:CompleteNumber", phone)
    if email:
        _el(_el(contact, "ram:EmailURIUniversalCommunication"), "ram:URIID", email)


def _party(parent, tag: str, *, name, address, contact, email, vat_id, tax_id=""):
    party = _el(parent, tag)
    _el(party, "ram:Name", name)
    _contact(party, **contact)
    _address(party, address)
    if email:  # BT-34 / BT-49, electronic address; XRechnung requires both
        _el(_el(party, "ram:URIUniversalCommunication"), "ram:URIID", email, schemeID="EM")
    if vat_id:
        _el(_el(party, "ram:SpecifiedTaxRegistration"), "ram:ID", vat_id, schemeID="VA")
    if tax_id:
        _el(_el(party, "ram:SpecifiedTaxRegistration"), "ram:ID", tax_id, schemeID="FC")
    return party


def _compact_id(value) -> str:
    return re.sub(r"[\s.\-]", "", str(value or "")).upper()


def _category(value: str) -> str:
    if value not in CATEGORIES:
        raise EInvoiceError(f"unknown VAT category {value!r}")
    return value


def _line(parent, index: int, line: dict, money: Money) -> None:
    item = _el(parent, "ram:IncludedSupplyChainTradeLineItem")
    _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", index)
    _el(_el(item, "ram:SpecifiedTradeProduct"), "ram:Name", line["description"])
    agreement = _el(item, "ram:SpecifiedLineTradeAgreement")
    # The discount is a line allowance (BT-136), so the net price stays the unit price as agreed.
    _el(_el(agreement, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", money(line["unit_price"]))
    delivery = _el(item, "ram:SpecifiedLineTradeDelivery")
    _el(delivery, "ram:BilledQuantity", _decimal_text(line["quantity"]), unitCode="C62")
    settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
    tax = _el(settlement, "ram:ApplicableTradeTax")
    _el(tax, "ram:TypeCode", "VAT")
    category = _category(line.get("tax_category") or ("S" if Decimal(str(line["tax_rate"])) > 0 else "Z"))
    _el(tax, "ram:CategoryCode", category)
    _el(tax, "ram:RateApplicablePercent", _decimal_text(line["tax_rate"]))
    discount = int(line.get("discount") or 0)
    if discount:
        allowance = _el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        _el(_el(allowance, "ram:ChargeIndicator"), "udt:Indicator", "false")
        _el(allowance, "ram:ActualAmount", money(discount))
        _el(allowance, "ram:ReasonCode", "95")  # UNTDID 5189: discount
        _el(allowance, "ram:Reason", f"Discount {_decimal_text(line.get('discount_percent') or 0)}%")
    summation = _el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
    _el(summation, "ram:LineTotalAmount", money(line["subtotal"]))


def _period(parent, period: dict) -> None:
    holder = _el(parent, "ram:BillingSpecifiedPeriod")
    if period.get("start"):
        _date(holder, "ram:StartDateTime", period["start"])
    if period.get("end"):
        _date(holder, "ram:EndDateTime", period["end"])


def _tax_rows(parent, doc: dict, money: Money) -> None:
    fallback_reason = (doc.get("tax_exemption_reason") or "").strip()
    for row in doc["tax_breakdown"]:
        category = _category(row.get("category") or ("S" if Decimal(str(row["rate"])) > 0 else "Z"))
        tax = _el(parent, "ram:ApplicableTradeTax")
        _el(tax, "ram:CalculatedAmount", money(row["tax"]))
        _el(tax, "ram:TypeCode", "VAT")
        if category in DEFAULT_EXEMPTION:
            reason = (row.get("exemption_reason") or "").strip() or fallback_reason or DEFAULT_EXEMPTION[category]
            _el(tax, "ram:ExemptionReason", reason)
        _el(tax, "ram:BasisAmount", money(row["base"]))
        _el(tax, "ram:CategoryCode", category)
        _el(tax, "ram:RateApplicablePercent", _decimal_text(row["rate"]))


def _payment_terms(doc: dict, kind: str) -> str:
    if kind == "credit_note":
        return "This credit is set off against open invoices or refunded."
    days = doc.get("payment_terms_days")
    if days is not None:
        return "Due on receipt." if int(days) == 0 else f"Payment within {int(days)} days."
    return ""


def _agreement(transaction, doc: dict, business: dict) -> None:
    client = doc.get("client") or {}
    seller_address = split_address(business.get("address", ""), business.get("country", ""))
    buyer_address = split_address(client.get("address", ""), client.get("country", ""))
    if not seller_address["country"]:
        raise EInvoiceError("the business needs a country for e-invoices")
    if not buyer_address["country"]:
        # BR-11 needs the buyer's country; a client without one is taken to be in the seller's country.
        buyer_address["country"] = seller_address["country"]
    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    if doc.get("buyer_reference"):
        _el(agreement, "ram:BuyerReference", doc["buyer_reference"])
    _party(
        agreement,
        "ram:SellerTradeParty",
        name=business["name"],
        address=seller_address,
        # BT-41 is a contact point; the business has no contact person, so its name stands in.
        contact={"name": business["name"], "phone": business.get("phone", ""), "email": business.get("email", "")},
        email=business.get("email", ""),
        vat_id=_compact_id(business.get("vat_id")),
        tax_id=str(business.get("tax_id") or "").strip(),
    )
    _party(
        agreement,
        "ram:BuyerTradeParty",
        name=client["name"],
        address=buyer_address,
        contact={"name": client.get("contact_name", ""), "email": client.get("email", "")},
        email=client.get("email", ""),
        vat_id=_compact_id(client.get("vat_id")),
    )


def _payment_means(settlement, kind: str, business: dict) -> None:
    means = _el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
    iban = _compact_id(business.get("iban"))
    if kind == "credit_note":
        _el(means, "ram:TypeCode", CLEARING_BETWEEN_PARTNERS)
    elif not iban:
        _el(means, "ram:TypeCode", "1")  # instrument not defined
    else:
        _el(means, "ram:TypeCode", SEPA_CREDIT_TRANSFER)
        _el(_el(means, "ram:PayeePartyCreditorFinancialAccount"), "ram:IBANID", iban)
        if business.get("bic"):
            _el(_el(means, "ram:PayeeSpecifiedCreditorFinancialInstitution"), "ram:BICID", _compact_id(business["bic"]))


def _terms(settlement, doc: dict, kind: str) -> None:
    text = _payment_terms(doc, kind)
    due_date = doc.get("due_date") if kind == "invoice" else None
    if not (text or due_date):
        return
    terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
    if text:
        _el(terms, "ram:Description", text)
    if due_date:
        _date(terms, "ram:DueDateDateTime", due_date)


def _summation(settlement, doc: dict, kind: str, money: Money) -> None:
    total = doc["total"]
    if kind == "invoice":
        due = doc["balance"]
        # BR-CO-16: due = grand total - prepaid. Billing never lets the balance go below zero, so
        # money paid or credited beyond the total is not "prepaid" on this invoice.
        prepaid = min(int(doc.get("amount_paid") or 0) + int(doc.get("amount_credited") or 0), total - due)
    else:
        due, prepaid = total, 0
    summation = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(summation, "ram:LineTotalAmount", money(doc["subtotal"]))
    _el(summation, "ram:TaxBasisTotalAmount", money(doc["subtotal"]))  # no document-level allowances
    _el(summation, "ram:TaxTotalAmount", money(doc["tax_total"]), currencyID=money.currency)
    _el(summation, "ram:GrandTotalAmount", money(total))
    if prepaid:
        _el(summation, "ram:TotalPrepaidAmount", money(prepaid))
    _el(summation, "ram:DuePayableAmount", money(due))


def _settlement(transaction, doc: dict, kind: str, business: dict, money: Money) -> None:
    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    if kind == "invoice":
        _el(settlement, "ram:PaymentReference", doc["number"])
    _el(settlement, "ram:InvoiceCurrencyCode", money.currency)
    _payment_means(settlement, kind, business)
    _tax_rows(settlement, doc, money)
    period = doc.get("service_period") or {
        "start": doc.get("service_period_start"),
        "end": doc.get("service_period_end"),
    }
    if period.get("start") or period.get("end"):
        _period(settlement, period)
    _terms(settlement, doc, kind)
    _summation(settlement, doc, kind, money)
    if kind == "credit_note" and doc.get("invoice_number"):
        _el(_el(settlement, "ram:InvoiceReferencedDocument"), "ram:IssuerAssignedID", doc["invoice_number"])


def cii_xml(kind: str, doc: dict, business: dict) -> bytes:
    """The document as EN 16931 CII XML (UTF-8, with declaration). `business["einvoice_profile"]`
    chooses "en16931" (Factur-X / ZUGFeRD EN 16931) or "xrechnung" (XRechnung 3.0 CII).

    Raises EInvoiceError when the document or business lacks something the XML needs."""
    try:
        return _cii_xml(kind, doc, business)
    except KeyError as exc:
        raise EInvoiceError(f"{exc.args[0]} is required") from None
    except (TypeError, InvalidOperation) as exc:
        raise EInvoiceError(f"a malformed value: {exc}") from None


def _cii_xml(kind: str, doc: dict, business: dict) -> bytes:
    if kind not in TYPE_CODES:
        raise EInvoiceError(f"no e-invoice for {kind!r}")
    profile = business.get("einvoice_profile") or "en16931"
    if profile not in PROFILES:
        raise EInvoiceError(f"unknown e-invoice profile {profile!r}")
    money = Money(doc["currency"])

    root = etree.Element(_q("rsm:CrossIndustryInvoice"), nsmap=NS)
    context = _el(root, "rsm:ExchangedDocumentContext")
    _el(_el(context, "ram:BusinessProcessSpecifiedDocumentContextParameter"), "ram:ID", BUSINESS_PROCESS)
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", PROFILES[profile])

    header = _el(root, "rsm:ExchangedDocument")
    _el(header, "ram:ID", doc["number"])
    _el(header, "ram:TypeCode", TYPE_CODES[kind])
    _date(header, "ram:IssueDateTime", doc["issue_date"])
    for text in (doc.get("notes"), doc.get("reason") if kind == "credit_note" else None):
        if text and str(text).strip():
            _el(_el(header, "ram:IncludedNote"), "ram:Content", str(text).strip())

    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for index, line in enumerate(doc["lines"], start=1):
        _line(transaction, index, line, money)
    _agreement(transaction, doc, business)
    delivery = _el(transaction, "ram:ApplicableHeaderTradeDelivery")  # required, even when empty
    if doc.get("supply_date"):
        _date(_el(delivery, "ram:ActualDeliverySupplyChainEvent"), "ram:OccurrenceDateTime", doc["supply_date"])
    _settlement(transaction, doc, kind, business, money)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
