"""Serve the Transformer Anatomy dashboard.

Either::

    python panel_serve.py [--port N] [--address A] [--model NAME] [--provider auto|cpu|cuda]
                          [--classroom] [--static DIR]

or ``panel serve panel_serve.py`` (options after ``--args``, or through the environment:
``ANATOMY_STATIC``, ``ANATOMY_MODEL``, ``ANATOMY_PROVIDER``, ``ANATOMY_CLASSROOM=1``).

The server binds to 127.0.0.1 unless ``--address`` says otherwise; on another address it
prints the URL to open and accepts websocket connections only from that origin (add more
with ``--allow-websocket-origin``). The page never needs the internet.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from dashboard.state import ENV_CLASSROOM, ENV_MODEL, ENV_PROVIDER, ENV_STATIC

LOCAL = ("127.0.0.1", "localhost")


def parse_args(argv: list[str] | None = None, strict: bool = True) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--model", help="model to show first (default: the manifest's default)")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), help="ONNX Runtime provider")
    p.add_argument("--classroom", action="store_true", help="start in classroom mode")
    p.add_argument("--static", metavar="DIR", help="folder with manifest.json and the models")
    p.add_argument(
        "--allow-websocket-origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="another origin allowed to connect (repeatable)",
    )
    p.add_argument("--show", action="store_true", help="open a browser tab")
    return p.parse_args(argv) if strict else p.parse_known_args(argv)[0]


def configure(args: argparse.Namespace) -> None:
    """Hand the options to the app through the environment, which every session reads."""
    if args.static:
        os.environ[ENV_STATIC] = os.path.abspath(args.static)
    if args.model:
        os.environ[ENV_MODEL] = args.model
    if args.provider:
        os.environ[ENV_PROVIDER] = args.provider
    if args.classroom:
        os.environ[ENV_CLASSROOM] = "1"


def origins(address: str, port: int, extra: list[str]) -> tuple[list[str], list[str]]:
    """(websocket origins to accept, URLs to print) for a server on ``address``:``port``."""
    if address in LOCAL:
        hosts = list(LOCAL)
    elif address in ("0.0.0.0", "::", ""):
        # every interface: accept this machine's name and address, and say which to open
        name = socket.gethostname()
        try:
            ip = socket.gethostbyname(name)
        except OSError:
            ip = None
        hosts = [h for h in (name, ip, *LOCAL) if h]
    else:
        hosts = [address]
    allowed = [f"{h}:{port}" for h in hosts] + list(extra)
    urls = [f"http://{h}:{port}/" for h in hosts if h not in LOCAL or address in LOCAL][:2]
    return allowed, urls


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args)
    import panel as pn  # after configure: sessions read the environment

    from dashboard.app import TITLE, create_app
    from dashboard.state import get_engine
    from models.runtime import EngineError

    try:
        engine = get_engine()  # load once now, so the first page is fast and errors show here
        model = os.environ.get(ENV_MODEL) or engine.default_model
        engine.run(model, engine.tokenizer(model).encode("Warm up.")[:1] or [0])
    except EngineError as err:  # still serve: the page explains it too
        print(f"warning: {err}", file=sys.stderr)
    allowed, urls = origins(args.address, args.port, args.allow_websocket_origin)
    print(f"{TITLE}: open {' or '.join(urls)}", flush=True)
    pn.serve(
        {"/": create_app},
        port=args.port,
        address=args.address,
        websocket_origin=allowed,
        show=args.show,
        title=TITLE,
        verbose=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__.startswith("bokeh_app"):
    # `panel serve panel_serve.py [--args ...]`: this file runs once per browser session
    from dashboard.app import create_app

    configure(parse_args(sys.argv[1:], strict=False))
    create_app().servable()
