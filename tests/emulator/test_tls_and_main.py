"""TLS material kept across restarts, HTTPS only, and `python -m emulator --demo`."""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msal
import pytest
import requests
from cryptography import x509

from emulator.control import seed_generated
from emulator.state import EmulatorState
from emulator.testing import run_emulator
from emulator.tls import ensure_tls

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


def test_ca_and_certificate_are_made_once_and_reused(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    ca, cert = first.ca_path.read_bytes(), first.cert_path.read_bytes()

    second = ensure_tls(tmp_path)

    assert second.ca_path.read_bytes() == ca and second.cert_path.read_bytes() == cert
    leaf = x509.load_pem_x509_certificate(cert)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert oct(first.key_path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "ca-key.pem").stat().st_mode & 0o777) == "0o600"


def test_a_lost_server_certificate_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    ca = first.ca_path.read_bytes()
    first.cert_path.unlink()

    again = ensure_tls(tmp_path)

    assert again.ca_path.read_bytes() == ca
    context = ssl.create_default_context(cafile=str(again.ca_path))
    with run_emulator(tmp_path) as emu, httpx.Client(verify=context) as client:
        assert client.get(f"{emu.base_url}/_emulator/health").status_code == 200


def test_a_restarted_emulator_is_still_trusted(tmp_path: Path) -> None:
    with run_emulator(tmp_path) as first:
        context = first.ssl_context  # what a running service loaded from ca.pem
        assert httpx.get(f"{first.base_url}/_emulator/health", verify=context).is_success
    with run_emulator(tmp_path) as second:
        assert httpx.get(f"{second.base_url}/_emulator/health", verify=context).is_success


def test_https_only(tmp_path: Path) -> None:
    with run_emulator(tmp_path) as emu:
        plain = emu.base_url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/_emulator/health", timeout=5)
        with pytest.raises(httpx.ConnectError):  # and its certificate is not publicly trusted
            httpx.get(f"{emu.base_url}/_emulator/health", timeout=5)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_caller_gone_before_its_body_arrived_is_not_an_error(tmp_path: Path) -> None:
    """A client that gives up (or stops) midway through sending a body: nobody to answer, nothing
    logged as the emulator's failure, and the next caller is served."""
    errors = _Errors()
    uvicorn_errors = logging.getLogger("uvicorn.error")
    try:
        with run_emulator(tmp_path) as emu:
            # After the start: uvicorn's logging set-up replaces the handlers it configures.
            uvicorn_errors.addHandler(errors)
            host, port = emu.base_url.removeprefix("https://").split(":")
            head = (
                f"POST /v1.0/$batch HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            with (
                socket.create_connection((host, int(port))) as raw,
                emu.ssl_context.wrap_socket(raw, server_hostname=host) as tls,
            ):
                tls.sendall(head.encode() + b'{"requests": [')
            with emu.client() as client:
                assert client.get("/_emulator/health").status_code == 200
        # The emulator has stopped: the abandoned request was handled by then.
    finally:
        uvicorn_errors.removeHandler(errors)
    assert errors.messages == []


def test_serves_ipv6_loopback(tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with run_emulator(tmp_path, host="::1") as emu:
        assert emu.base_url.startswith("https://[::1]:")
        with emu.client() as client:
            assert client.get("/_emulator/health").status_code == 200


def test_generated_tenant_id_follows_the_seed() -> None:
    first = seed_generated(EmulatorState(), users=10, groups=2, seed=4)
    second = seed_generated(EmulatorState(), users=10, groups=2, seed=4)
    assert first.id == second.id
    assert seed_generated(EmulatorState(), users=10, groups=2, seed=5).id != first.id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_main_demo_writes_demo_json_that_msal_can_use(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            str(port),
            "--state",
            str(tmp_path),
            "--demo",
            "--users",
            "40",
            "--groups",
            "4",
            "--redirect-uri",
            "https://pbx.example.com/integration/callback",
            "--allow-http-notifications",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        demo_path = tmp_path / "demo.json"
        deadline = time.monotonic() + 20
        demo: dict[str, str] = {}
        while time.monotonic() < deadline:
            if demo_path.exists():
                demo = json.loads(demo_path.read_text())
                context = ssl.create_default_context(cafile=demo["ca_path"])
                try:
                    httpx.get(f"{demo['base_url']}/_emulator/health", verify=context)
                    break
                except httpx.ConnectError:
                    pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.1)
        else:
            pytest.fail("the emulator did not start")

        assert demo["base_url"] == f"https://127.0.0.1:{port}"
        assert Path(demo["ca_path"]) == (tmp_path / "ca.pem").resolve()
        assert set(demo) >= {
            "base_url",
            "ca_path",
            "tenant_id",
            "client_id",
            "client_secret",
            "admin_upn",
            "admin_password",
        }
        session = requests.Session()
        session.trust_env = False
        session.verify = demo["ca_path"]
        app = msal.ConfidentialClientApplication(
            demo["client_id"],
            client_credential=demo["client_secret"],
            authority=f"{demo['base_url']}/{demo['tenant_id']}",
            instance_discovery=False,
            http_client=session,
        )
        assert "access_token" in app.acquire_token_for_client(
            ["https://graph.microsoft.com/.default"]
        )
        flow = app.initiate_auth_code_flow(
            ["https://graph.microsoft.com/User.Read.All"],
            redirect_uri="https://pbx.example.com/integration/callback",
        )
        redirect = httpx.get(flow["auth_uri"], verify=context)  # auto-consent: the admin
        assert redirect.status_code == 302
        assert redirect.headers["location"].startswith(
            "https://pbx.example.com/integration/callback?code="
        )
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)

    assert f"pbx-entra emulator on https://127.0.0.1:{port} (HTTPS only)" in output
    assert "WARNING: --allow-http-notifications" in output
    assert "/v1.0" in output and "/_emulator" in output
