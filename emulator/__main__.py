"""`python -m emulator`: serve the emulated identity platform and Graph over HTTPS."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import uvicorn

from emulator.app import EmulatorOptions, create_app, uvicorn_config
from emulator.control import seed_demo, seed_generated
from emulator.state import EmulatorState
from emulator.tls import ensure_tls


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="A stand-in for login.microsoftonline.com and graph.microsoft.com (HTTPS).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--state", type=Path, default=Path("var/emulator"), help="folder for ca.pem and demo.json"
    )
    parser.add_argument("--users", type=int, default=None, help="generate a tenant: users")
    parser.add_argument("--groups", type=int, default=None, help="generate a tenant: groups")
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument(
        "--demo", action="store_true", help="seed the demo tenant and write demo.json"
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="another redirect URI for the demo app (repeatable)",
    )
    parser.add_argument(
        "--allow-http-notifications",
        action="store_true",
        help="accept http:// notification URLs (Graph requires https)",
    )
    parser.add_argument(
        "--notification-ca",
        default=None,
        help="a PEM file trusted when delivering change notifications (a receiver's private CA)",
    )
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tls = ensure_tls(args.state)
    display_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host  # noqa: S104
    if ":" in display_host:
        display_host = f"[{display_host}]"
    base_url = f"https://{display_host}:{args.port}"
    state = EmulatorState()
    options = EmulatorOptions(
        base_url=base_url,
        allow_http_notifications=args.allow_http_notifications,
        notification_ca=args.notification_ca,
    )
    app = create_app(state, options)

    started = time.perf_counter()
    lines = [f"pbx-entra emulator on {base_url} (HTTPS only)"]
    if args.demo:
        demo = seed_demo(
            state,
            users=args.users,
            groups=args.groups,
            seed=args.seed,
            redirect_uris=args.redirect_uri,
        )
        demo["ca_path"] = str(tls.ca_path.resolve())
        demo_path = args.state / "demo.json"
        tmp = demo_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(demo, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(demo_path)
        lines.append(
            f"  demo tenant {demo['tenant_id']} ({demo['admin_upn']}), client id "
            f"{demo['client_id']}: {demo_path}"
        )
    elif args.users is not None or args.groups is not None:
        tenant = seed_generated(state, args.users or 0, args.groups or 0, args.seed)
        lines.append(f"  tenant {tenant.id} ({tenant.domain})")
    for tenant in state.tenants.values():
        lines.append(
            f"    {len(tenant.users)} users, {len(tenant.groups)} groups "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )
    lines += [
        f"  identity platform  {base_url}/<tenant>/v2.0/.well-known/openid-configuration",
        f"  Graph v1.0         {base_url}/v1.0",
        f"  control API        {base_url}/_emulator",
        f"  CA certificate     {tls.ca_path.resolve()} (trust it, e.g. CA_BUNDLE=...)",
    ]
    if args.allow_http_notifications:
        lines.append(
            "WARNING: --allow-http-notifications: http:// notification URLs are accepted; "
            "Microsoft Graph only accepts HTTPS ones."
        )
    print("\n".join(lines), flush=True)

    config = uvicorn_config(app, tls, args.host, args.port, log_level=args.log_level)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
