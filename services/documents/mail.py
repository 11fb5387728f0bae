"""Mail delivery backends: SMTP (TLS, auth) and a file outbox of .eml files for development."""

from __future__ import annotations

import smtplib
import ssl
from email import message_from_string, policy
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class TransientMailError(Exception):
    """Worth retrying later (connection refused, 4xx)."""


class PermanentMailError(Exception):
    """Will not succeed by retrying (5xx, bad address)."""


class FileOutbox:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def send(self, email_id: str, message: str) -> None:
        # Named by email id, so a repeated delivery overwrites rather than duplicates.
        tmp = self.directory / f".{email_id}.tmp"
        tmp.write_text(message, encoding="utf-8")
        tmp.replace(self.directory / f"{email_id}.eml")


class SmtpSender:
    """`SMTP_URL`: smtp://user:pass@host:587 (STARTTLS when offered, or ?starttls=required),
    smtps://user:pass@host:465 (implicit TLS)."""

    def __init__(self, url: str, timeout: float = 20):
        self.url = urlparse(url)
        self.options = {k: v[-1] for k, v in parse_qs(self.url.query).items()}
        self.timeout = timeout

    def send(self, email_id: str, message: str) -> None:
        msg = message_from_string(message, policy=policy.SMTP)
        host, implicit_tls = self.url.hostname or "localhost", self.url.scheme == "smtps"
        port = self.url.port or (465 if implicit_tls else 25)
        context = ssl.create_default_context()
        if self.options.get("verify") == "false":  # self-signed servers in development
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            connection = (
                smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=context)
                if implicit_tls
                else smtplib.SMTP(host, port, timeout=self.timeout)
            )
            with connection as smtp:
                smtp.ehlo()
                if not implicit_tls and (smtp.has_extn("starttls") or self.options.get("starttls") == "required"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self.url.username:
                    smtp.login(unquote(self.url.username), unquote(self.url.password or ""))
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientMailError(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise PermanentMailError(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentMailError(str(exc.recipients)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientMailError(repr(exc)) from exc


def backend_from_env(smtp_url: str | None, outbox_dir: Path):
    return SmtpSender(smtp_url) if smtp_url else FileOutbox(outbox_dir)
