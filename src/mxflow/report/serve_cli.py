"""Live dashboard of an output directory, served on this computer only.

Starts a small web server (loopback, 127.0.0.1, unless --host is given)
showing the collection as it is processed: counts, one row per dataset
with its status, resolution and the reason for any failure, refreshed
every few seconds from the catalog (mxflow.sqlite, opened read-only) or
summary.json, with links to the HTML reports that mxflow run and mxflow
report write.  The server only reads: it writes nothing into OUT, and it
serves no file whose real path (links followed) lies outside OUT.  Open the
printed address in a browser; stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from mxflow.errors import MxflowError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="mxflow output directory")
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)"
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default 127.0.0.1, this computer only). A non-loopback "
        "address such as 0.0.0.0 lets anyone on the network read the output directory.",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mxflow.report.dashboard import is_loopback, make_server

    out = Path(args.out)
    if not out.is_dir():
        raise MxflowError(f"{out}: not a directory (expected an mxflow output directory)")
    host = args.host if args.host is not None else "127.0.0.1"
    if not is_loopback(host):
        print(
            f"mxflow serve: warning: listening on {host}, not only on this computer; "
            "anyone who can reach it can read the output directory",
            file=sys.stderr,
        )
    try:
        server = make_server(out, host=host, port=args.port, verbose=args.verbose)
    except OSError as exc:
        raise MxflowError(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}") from exc
    h, port = server.server_address[:2]
    shown = f"[{h}]" if ":" in str(h) else h
    print(
        f"mxflow dashboard of {out.resolve()} at http://{shown}:{port}/  (Ctrl-C to stop)",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
