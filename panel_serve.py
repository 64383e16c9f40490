"""Serve the Transformer Anatomy dashboard.

Either::

    python panel_serve.py [--port N] [--address A] [--model NAME] [--provider auto|cpu|cuda]
                          [--classroom] [--static DIR] [--num-procs N] [--session-lifetime S]

or ``panel serve panel_serve.py`` (options after ``--args``, or through the environment:
``ANATOMY_STATIC``, ``ANATOMY_MODEL``, ``ANATOMY_PROVIDER``, ``ANATOMY_CLASSROOM=1``).

The server binds to 127.0.0.1 unless ``--address`` says otherwise; on another address it
prints the URL to open and accepts websocket connections only from that origin (add more
with ``--allow-websocket-origin``). The page never needs the internet.

Serving a class: ``python panel_serve.py --classroom --address 0.0.0.0 --num-procs 2`` prints
the address to give students. Each worker process holds one ONNX Runtime session per model,
created after the fork (a session must not cross a fork). A session whose tab closed is freed
``--session-lifetime`` seconds later (dashboard/sessions.py).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys


def use_system_malloc() -> None:
    """Run this server under the C allocator (``PYTHONMALLOC=malloc``), by re-executing once.

    Python's own small-object allocator keeps a 256 KiB arena as long as one object in it
    lives, so after a class of 40 sessions closed the heap stays scattered with survivors and
    the server keeps most of its peak (measured: +65% after vs before). glibc's malloc, which
    ``sessions.release_memory`` trims, gives it back (+5%). Only the command line does this,
    before anything heavy is imported; ``panel serve`` leaves the interpreter as it was.
    """
    if os.environ.get("PYTHONMALLOC"):
        return
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


if __name__ == "__main__":
    use_system_malloc()

from dashboard import sessions  # noqa: E402 - after the re-exec: panel takes a second to import
from dashboard.state import ENV_CLASSROOM, ENV_MODEL, ENV_PROVIDER  # noqa: E402
from models.manifest import ENV_STATIC  # noqa: E402

LOCAL = ("127.0.0.1", "localhost")
# Browsers send at most a 20,000-character text (the box's max_length): a few hundred KiB
# covers every message the page sends, and refuses what only a script could.
MAX_MESSAGE_BYTES = 256 * 1024


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
    p.add_argument(
        "--num-procs",
        type=int,
        default=1,
        metavar="N",
        help="worker processes (default 1; 0 = one per CPU)",
    )
    p.add_argument(
        "--session-lifetime",
        type=float,
        default=sessions.UNUSED_LIFETIME_S,
        metavar="S",
        help="free a session S seconds after its tab closed "
        f"(default {sessions.UNUSED_LIFETIME_S:g})",
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


def lan_ip() -> str | None:
    """This machine's address on its network (what students type), or None offline.

    Connecting a UDP socket sends nothing; it only makes the kernel pick the outgoing
    interface, whose address ``gethostbyname(hostname)`` often hides behind 127.0.1.1.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def origins(address: str, port: int, extra: list[str]) -> tuple[list[str], list[str]]:
    """(websocket origins to accept, URLs to print) for a server on ``address``:``port``."""
    if address in LOCAL:
        hosts = list(LOCAL)
    elif address in ("0.0.0.0", "::", ""):
        # every interface: accept this machine's name and addresses, and say which to open
        name = socket.gethostname()
        try:
            ip = socket.gethostbyname(name)
        except OSError:
            ip = None
        hosts = list(dict.fromkeys(h for h in (lan_ip(), name, ip, *LOCAL) if h))
    else:
        hosts = [address]
    allowed = [f"{h}:{port}" for h in hosts] + list(extra)
    remote = [h for h in hosts if h not in LOCAL and not h.startswith("127.")]
    urls = [f"http://{h}:{port}/" for h in (remote if address not in LOCAL else hosts)][:2]
    return allowed, urls or [f"http://127.0.0.1:{port}/"]


def warm_up() -> None:
    """Load the model now, so the first page is fast and errors show here, not in a tab."""
    from dashboard.state import get_engine
    from models.runtime import EngineError

    try:
        engine = get_engine()
        model = os.environ.get(ENV_MODEL) or engine.default_model
        engine.run(model, engine.tokenizer(model).encode("Warm up.")[:1] or [0])
    except EngineError as err:  # still serve: the page explains it too
        print(f"warning: {err}", file=sys.stderr)


def check_models() -> None:
    """Read the manifest and tokenizers without opening an ONNX Runtime session (which must
    not be created before the worker processes fork)."""
    from dashboard.state import get_engine
    from models.runtime import EngineError

    try:
        engine = get_engine()
        for model in engine.model_names:
            engine.tokenizer(model)
            if not (engine.static_dir / engine.entry(model)["file"]).is_file():
                raise EngineError(f"model file for {model!r} is missing; run `make build`")
    except EngineError as err:
        print(f"warning: {err}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args)
    import panel as pn  # after configure: sessions read the environment

    from dashboard.app import TITLE, create_app

    procs = args.num_procs if args.num_procs > 0 else (os.cpu_count() or 1)
    # ONNX Runtime's thread pools do not survive a fork: with workers, each opens its own
    # session on its first page, after the fork.
    if procs == 1:
        warm_up()
    else:
        check_models()
    allowed, urls = origins(args.address, args.port, args.allow_websocket_origin)
    who = "students open" if args.classroom or args.address not in LOCAL else "open"
    workers = f" ({procs} worker processes)" if procs > 1 else ""
    print(f"{TITLE}: {who} {' or '.join(urls)}{workers}", flush=True)
    lifetime = max(args.session_lifetime, 0.1)
    pn.serve(
        {"/": create_app},
        port=args.port,
        address=args.address,
        websocket_origin=allowed,
        show=args.show,
        title=TITLE,
        verbose=False,
        num_procs=procs,
        websocket_max_message_size=MAX_MESSAGE_BYTES,
        **sessions.server_options(lifetime, min(sessions.CHECK_UNUSED_S, lifetime / 2)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__.startswith("bokeh_app"):
    # `panel serve panel_serve.py [--args ...]`: this file runs once per browser session
    from dashboard.app import create_app

    configure(parse_args(sys.argv[1:], strict=False))
    sessions.no_delay_websockets()  # before this page's websocket opens
    create_app().servable()
