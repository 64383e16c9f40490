"""The offline training corpus.

The default corpus is the docstrings of Python's own standard library, read from the ``.py``
files of the interpreter that runs the build. It is on every machine that has Python (nothing
is downloaded), it is English prose about programming with a little code mixed in, it is
large enough (about 1.5 MB on CPython 3.11) and the PSF licence lets us train on it.

Docstrings are read with ``ast`` rather than by importing modules, so reading the corpus
runs no library code and gives the same text every time: files are visited in sorted order.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# Packages that are tests, demos or vendored data rather than documentation prose.
_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "site-packages",
        "dist-packages",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "pydoc_data",
        "tkinter",
        "__pycache__",
    }
)
_MIN_DOCSTRING_CHARS = 40  # one-liners like "Return self." teach the model nothing


@dataclass(frozen=True)
class Corpus:
    """A training text and where it came from."""

    text: str
    source: str  # human-readable description, written into the manifest

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


def stdlib_docstrings(stdlib_dir: Path | None = None) -> Corpus:
    """Every module, class and function docstring of the standard library, in file order."""
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are deliberately broken test fixtures
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= _MIN_DOCSTRING_CHARS:
                    parts.append(doc)
    if not parts:
        raise RuntimeError(f"no docstrings found under {root}: is this a full Python install?")
    version = ".".join(map(str, sys.version_info[:3]))
    return Corpus("\n\n".join(parts), f"docstrings of the Python {version} standard library")


def from_file(path: str | Path) -> Corpus:
    """A user's own UTF-8 text file (``python -m models.build --corpus FILE``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"corpus file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus file {path} is not UTF-8 text: {err}") from None
    if len(text) < 1000:
        raise ValueError(f"corpus file {path} has {len(text)} characters; need at least 1000")
    return Corpus(text, f"file {path.name}")


def load(path: str | Path | None = None) -> Corpus:
    """The user's corpus file if given, else the standard library's docstrings (read once per
    process: the build reads it for every model and measurement, the tests in many places)."""
    return from_file(path) if path else _default()


@cache
def _default() -> Corpus:
    return stdlib_docstrings()


def split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Train/validation split: the last ``val_fraction`` of the text, cut at a paragraph."""
    cut = int(len(text) * (1 - val_fraction))
    para = text.rfind("\n\n", 0, cut)
    cut = para if para > len(text) // 2 else cut
    return text[:cut], text[cut:]
