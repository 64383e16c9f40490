"""The command line: ``python -m export --text "..." [--model NAME] [--lessons a,b]
[--classroom] --out snapshot.html``. Bad input exits with status 2 and one line on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboard.views import registry
from export.snapshot import SnapshotError, export_snapshot


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block: the message says what to fix
        raise SnapshotError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m export",
        description="Write a self-contained, interactive HTML snapshot of the lessons.",
    )
    p.add_argument("--text", required=True, help="the text the model reads")
    p.add_argument(
        "--model", default=None, help="model name from the manifest (default: its default)"
    )
    p.add_argument(
        "--lessons",
        default=",".join(registry.course()),
        help=f"comma-separated lessons (default: {','.join(registry.course())})",
    )
    p.add_argument("--classroom", action="store_true", help="dark, large-text theme")
    p.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0, or 2 on bad input)."""
    try:
        args = parser().parse_args(argv)
        out = export_snapshot(
            args.out,
            args.text,
            model=args.model,
            lessons=args.lessons,
            classroom=args.classroom,
        )
    except SnapshotError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    return 0
