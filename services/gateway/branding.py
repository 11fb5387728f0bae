"""Per-workspace branding of the portal: colours as a small stylesheet, and the logo as an image.

The workspace's branding changes rarely, so each gateway process keeps it for a minute (one RPC per
workspace per minute, not one per page). Colours are adjusted so text on them stays readable (WCAG AA).
The same answer carries what an invoice states about its seller (address, contact, tax and VAT ids, bank
account), which the invoice page shows as the invoice's PDF prints it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading

import falcon
from cachetools import TTLCache

from chassis.errors import NotFound
from chassis.scope import Scope

LOGO_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}  # not SVG: it can carry script
DATA_URI = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>[A-Za-z0-9+/=\s]+)$")
_cache: TTLCache = TTLCache(maxsize=256, ttl=60)
_lock = threading.Lock()


SELLER_FIELDS = ("address", "email", "phone", "tax_id")  # the workspace's own columns
SELLER_LEGAL = ("vat_id", "iban", "bic")  # its settings' legal details


def cached_brand(workspace_id: str) -> dict | None:
    """The workspace's branding if this process holds it, without asking billing."""
    with _lock:
        return _cache.get(workspace_id)


def brand_of(call, workspace_id: str) -> dict:
    """{id, name, logo, logo_url, brand, accent, version, seller}: what pages need, cached for a minute.
    `version` (the stylesheet's and the logo's URLs) follows the colours and the logo only; `seller` is
    the business as its invoices state it: name, address, email, phone, tax_id, vat_id, iban, bic."""
    cached = cached_brand(workspace_id)
    if cached is not None:
        return cached
    ws = call("billing", "get_workspace", workspace_id, scope=Scope(workspace_id))
    brand = {
        "id": ws["id"],
        "name": ws["name"],
        "logo": bool(_logo(ws.get("logo_url") or "")),
        "brand": readable_on_white(ws.get("brand_color") or "#1d4ed8"),
        "accent": readable_on_white(ws.get("accent_color") or "#0f766e"),
        "logo_url": ws.get("logo_url") or "",
    }
    brand["version"] = hashlib.sha256(repr(sorted(brand.items())).encode()).hexdigest()[:12]
    legal = (ws.get("settings") or {}).get("legal") or {}
    brand["seller"] = {
        "name": ws["name"],
        **{key: ws.get(key) or "" for key in SELLER_FIELDS},
        **{key: legal.get(key) or "" for key in SELLER_LEGAL},
    }
    with _lock:
        _cache[workspace_id] = brand
    return brand


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _luminance(rgb) -> float:
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(_rgb(a)), _luminance(_rgb(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def readable_on_white(color: str) -> str:
    """The colour, darkened just enough for 4.5:1 against white (links) and white text on it (buttons)."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        color = "#1d4ed8"
    rgb = _rgb(color)
    for _ in range(40):
        hex_color = "#%02x%02x%02x" % rgb
        if contrast(hex_color, "#ffffff") >= 4.5:
            return hex_color
        r, g, b = rgb
        rgb = (int(r * 0.9), int(g * 0.9), int(b * 0.9))
    return "#000000"


def _logo(uri: str) -> tuple[str, bytes] | None:
    match = DATA_URI.match(uri.strip()) if uri else None
    if not match or match["type"] not in LOGO_TYPES:
        return None
    try:
        return match["type"], base64.b64decode(match["data"], validate=False)
    except (binascii.Error, ValueError):
        return None


def stylesheet(brand: dict) -> str:
    return (
        ":root { --brand: %s; --accent: %s; }\n" % (brand["brand"], brand["accent"])
        + ".top { border-top: 4px solid var(--brand); }\n"
    )


class _BrandResource:
    public = True  # the login page and emails wear the brand before anyone signs in

    def __init__(self, rpc):
        self.rpc = rpc

    def brand(self, req, workspace_id: str) -> dict:
        try:
            return brand_of(lambda *a, **k: self.rpc.call(*a, request_id=req.context.request_id, **k), workspace_id)
        except NotFound:
            raise falcon.HTTPNotFound() from None


class BrandCss(_BrandResource):
    def on_get(self, req, resp, workspace_id: str):
        brand = self.brand(req, workspace_id)
        resp.content_type = "text/css"
        resp.text = stylesheet(brand)
        resp.set_header("Cache-Control", "public, max-age=86400")  # the URL carries the version


class BrandLogo(_BrandResource):
    def on_get(self, req, resp, workspace_id: str):
        logo = _logo(self.brand(req, workspace_id)["logo_url"])
        if logo is None:
            raise falcon.HTTPNotFound()
        resp.content_type, resp.data = logo
        resp.set_header("Cache-Control", "public, max-age=86400")
