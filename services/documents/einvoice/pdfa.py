"""Factur-X / ZUGFeRD PDFs: WeasyPrint writes PDF/A-3b (sRGB output intent, embedded fonts, XMP
identification) with the CII XML as an associated file; a finisher adds the Factur-X XMP extension
schema to WeasyPrint's own XMP packet, so the PDF carries a single rdf:RDF that every reader sees.

Nothing here depends on the time of rendering: the same XML gives the same PDF bytes.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from lxml import etree

from services.documents.einvoice.cii import NS, PROFILES

FX_NAMESPACE = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PDFAID = "http://www.aiim.org/pdfa/ns/id/"
FACTURX_FILENAME = "factur-x.xml"
XRECHNUNG_FILENAME = "xrechnung.xml"  # ZUGFeRD 2.x names the embedded file so for the XRECHNUNG profile
# The German reading of ZUGFeRD: for the EN 16931 profiles the XML is an equivalent rendition of the
# invoice, hence /Alternative (Factur-X also allows /Data).
RELATIONSHIP = "Alternative"
FX_PROPERTIES = (
    ("DocumentFileName", "The name of the embedded XML document"),
    ("DocumentType", "The type of the hybrid document in capital letters, e.g. INVOICE or ORDER"),
    ("Version", "The actual version of the standard applying to the embedded XML document"),
    ("ConformanceLevel", "The conformance level of the embedded XML document"),
)


def profile_of(xml: bytes) -> str:
    """ "en16931" or "xrechnung", from the XML's specification identifier (BT-24)."""
    guideline = etree.fromstring(xml).findtext(
        "rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID", namespaces=NS
    )
    for profile, identifier in PROFILES.items():
        if guideline == identifier:
            return profile
    raise ValueError(f"not an EN 16931 CII document: {guideline!r}")


def embedding(xml: bytes) -> tuple[str, str]:
    """(file name, fx:ConformanceLevel) for the XML's profile."""
    if profile_of(xml) == "xrechnung":
        return XRECHNUNG_FILENAME, "XRECHNUNG"
    return FACTURX_FILENAME, "EN 16931"


def _issue_datetime(xml: bytes) -> datetime:
    text = (
        etree.fromstring(xml).findtext("rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString", namespaces=NS)
        or "20000101"
    )
    return datetime.strptime(text.strip()[:8], "%Y%m%d").replace(tzinfo=timezone.utc)


def xmp_extension(filename: str, level: str) -> bytes:
    """The rdf:Description elements Factur-X adds: its properties and the PDF/A extension schema that
    declares them (PDF/A allows only declared XMP properties)."""
    properties = "".join(
        f"<rdf:li rdf:parseType='Resource'><pdfaProperty:name>{name}</pdfaProperty:name>"
        "<pdfaProperty:valueType>Text</pdfaProperty:valueType>"
        "<pdfaProperty:category>external</pdfaProperty:category>"
        f"<pdfaProperty:description>{escape(description)}</pdfaProperty:description></rdf:li>"
        for name, description in FX_PROPERTIES
    )
    return (
        "<rdf:Description rdf:about='' xmlns:pdfaExtension='http://www.aiim.org/pdfa/ns/extension/'"
        " xmlns:pdfaSchema='http://www.aiim.org/pdfa/ns/schema#'"
        " xmlns:pdfaProperty='http://www.aiim.org/pdfa/ns/property#'>"
        "<pdfaExtension:schemas><rdf:Bag><rdf:li rdf:parseType='Resource'>"
        "<pdfaSchema:schema>Factur-X PDFA Extension Schema</pdfaSchema:schema>"
        f"<pdfaSchema:namespaceURI>{FX_NAMESPACE}</pdfaSchema:namespaceURI>"
        "<pdfaSchema:prefix>fx</pdfaSchema:prefix>"
        f"<pdfaSchema:property><rdf:Seq>{properties}</rdf:Seq></pdfaSchema:property>"
        "</rdf:li></rdf:Bag></pdfaExtension:schemas></rdf:Description>"
        f"<rdf:Description rdf:about='' xmlns:fx='{FX_NAMESPACE}'>"
        "<fx:DocumentType>INVOICE</fx:DocumentType>"
        f"<fx:DocumentFileName>{escape(filename)}</fx:DocumentFileName>"
        "<fx:Version>1.0</fx:Version>"
        f"<fx:ConformanceLevel>{escape(level)}</fx:ConformanceLevel>"
        "</rdf:Description>"
    ).encode()


def _xmp_finisher(extension: bytes):
    def finish(_document, pdf) -> None:
        reference = pdf.catalog["Metadata"]
        reference = reference.decode() if isinstance(reference, bytes) else str(reference)
        metadata = pdf.objects[int(reference.split()[0])]
        packet = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in metadata.stream)
        if packet.count(b"</rdf:RDF>") != 1:
            raise RuntimeError("unexpected XMP packet from WeasyPrint")
        metadata.stream = [packet.replace(b"</rdf:RDF>", extension + b"</rdf:RDF>")]
        metadata.compress = False  # XMP stays readable to tools that scan for it
        # WeasyPrint lists an attachment in /AF once from /EmbeddedFiles and once as a /Filespec.
        associated = pdf.catalog.get("AF")
        if associated:
            unique = list(dict.fromkeys(associated))
            associated.clear()
            associated.extend(unique)

    return finish


def write_pdf_options(xml: bytes, url_fetcher=None) -> dict:
    """Keyword arguments for WeasyPrint's `write_pdf` that make a Factur-X PDF/A-3b carrying `xml`."""
    from weasyprint import Attachment

    filename, level = embedding(xml)
    stamp = _issue_datetime(xml)
    attachment = Attachment(
        url="data:text/xml;base64," + base64.b64encode(xml).decode("ascii"),
        url_fetcher=url_fetcher,
        name=filename,
        description="Factur-X / ZUGFeRD invoice (EN 16931 CII)",
        created=stamp,
        modified=stamp,
        relationship=RELATIONSHIP,
    )
    return {
        "pdf_variant": "pdf/a-3b",
        "attachments": [attachment],
        "finisher": _xmp_finisher(xmp_extension(filename, level)),
    }


def embedded_files(pdf: bytes) -> dict[str, bytes]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf))
    return {name: contents[0] for name, contents in reader.attachments.items()}


def _xmp_values(pdf_catalog) -> dict[str, str]:
    """ "{namespace}name" -> value for the simple properties in the XMP packet, attribute or element form."""
    packet = pdf_catalog["/Metadata"].get_object().get_data()
    body = packet[packet.find(b"<x:xmpmeta") :].split(b"<?xpacket end")[0]
    values = {}
    for description in etree.fromstring(body).iter(f"{{{RDF}}}Description"):
        values.update({name: value for name, value in description.attrib.items() if name != f"{{{RDF}}}about"})
        values.update({child.tag: child.text for child in description if child.text and child.text.strip()})
    return values


def check_pdfa3(pdf: bytes, xml: bytes | None = None) -> list[str]:
    """Structural Factur-X / PDF/A-3 checks (not a full PDF/A validator such as veraPDF): the XMP
    identifies PDF/A-3 and Factur-X, there is an output intent, the XML is an associated file with an
    allowed relationship, and (given `xml`) it reads back byte for byte."""
    from pypdf import PdfReader
    from pypdf.generic import DictionaryObject

    catalog = PdfReader(io.BytesIO(pdf)).trailer["/Root"]
    assert isinstance(catalog, DictionaryObject)  # a PDF's document catalog is a dictionary
    if "/Metadata" not in catalog:
        return ["no /Metadata XMP stream"]
    try:
        xmp = _xmp_values(catalog)
    except etree.XMLSyntaxError as exc:
        return [f"XMP is not XML: {exc}"]
    filename = xmp.get(f"{{{FX_NAMESPACE}}}DocumentFileName")
    expected = {
        f"{{{PDFAID}}}part": {"3"},
        f"{{{PDFAID}}}conformance": {"A", "B", "U"},
        f"{{{FX_NAMESPACE}}}DocumentType": {"INVOICE"},
        f"{{{FX_NAMESPACE}}}DocumentFileName": {FACTURX_FILENAME, XRECHNUNG_FILENAME},
        f"{{{FX_NAMESPACE}}}ConformanceLevel": {"EN 16931", "XRECHNUNG", "EXTENDED", "BASIC"},
    }
    problems = [
        f"XMP {name} is {xmp.get(name)!r}" for name, allowed in expected.items() if xmp.get(name) not in allowed
    ]
    if not catalog.get("/OutputIntents"):
        problems.append("no /OutputIntents")
    specs = [spec.get_object() for spec in catalog.get("/AF") or []]
    spec = next((spec for spec in specs if filename in (spec.get("/F"), spec.get("/UF"))), None)
    if spec is None:
        problems.append(f"{filename} is not an associated file (/AF)")
    elif spec.get("/AFRelationship") not in ("/Data", "/Alternative"):
        problems.append(f"/AFRelationship is {spec.get('/AFRelationship')}")
    files = embedded_files(pdf)
    if filename not in files:
        problems.append(f"{filename} is not in /Names/EmbeddedFiles")
    elif xml is not None and files[filename] != xml:
        problems.append(f"the embedded {filename} differs from the XML")
    return problems
