"""A local certificate authority and the emulator's server certificate, kept in the state folder.

The CA is made once and reused across restarts, so a running service that trusts `ca.pem` keeps
trusting the emulator after it restarts.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509

SERVER_IDENTITIES = ("127.0.0.1", "localhost", "::1")
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"


@dataclass(frozen=True)
class TlsFiles:
    ca_path: Path
    cert_path: Path  # the server certificate followed by the CA certificate
    key_path: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _cert_is_usable(cert_path: Path, identities: tuple[str, ...]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, OSError):
        return False
    covered = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    covered |= set(names.get_values_for_type(x509.DNSName))
    still_valid = cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    return still_valid and all(identity in covered for identity in identities)


def ensure_tls(state_dir: Path, identities: tuple[str, ...] = SERVER_IDENTITIES) -> TlsFiles:
    """Return the CA and server certificate files in `state_dir`, making what is missing."""
    state_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(state_dir / CA_FILE, state_dir / CERT_FILE, state_dir / KEY_FILE)
    ca_key_path = state_dir / CA_KEY_FILE
    if files.ca_path.exists() and ca_key_path.exists():
        ca = trustme.CA.from_pem(files.ca_path.read_bytes(), ca_key_path.read_bytes())
        if (
            files.cert_path.exists()
            and files.key_path.exists()
            and _cert_is_usable(files.cert_path, identities)
        ):
            return files
    else:
        ca = trustme.CA(organization_name="pbx-entra emulator")
        ca.cert_pem.write_to_path(str(files.ca_path))
        _write_private(ca_key_path, ca.private_key_pem.bytes())
    leaf = ca.issue_cert(
        *identities,
        common_name=identities[0],
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=825),
    )
    files.cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    _write_private(files.key_path, leaf.private_key_pem.bytes())
    return files
