"""A throwaway certificate authority (trustme) for fakes that speak TLS."""

from __future__ import annotations

import ssl
import tempfile
from functools import cache
from pathlib import Path

import trustme


@cache
def authority() -> trustme.CA:
    return trustme.CA()


@cache
def ca_file() -> str:
    """A PEM file with the CA, for ``CONSULTBOOK_PROVIDER_CA_BUNDLE`` / ``verify=``."""
    path = Path(tempfile.mkdtemp(prefix="consultbook-ca-")) / "ca.pem"
    authority().cert_pem.write_to_path(str(path))
    return str(path)


def server_context() -> ssl.SSLContext:
    """A server-side context with a certificate for 127.0.0.1 and localhost."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx
