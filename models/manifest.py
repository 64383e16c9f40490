"""``static/manifest.json``: read and written here only.

The engine reads it strictly (a missing or unreadable manifest is an error a person can fix);
the build and ``models.lowp`` read it leniently (nothing yet: an empty manifest) and add or
replace one model's entry atomically. No torch here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MANIFEST_NAME = "manifest.json"
DEFAULT_MODEL = "anatomy-gpt"
REBUILD_HINT = "Rebuild the models with `make build`."
ENV_STATIC = "ANATOMY_STATIC"


def static_dir() -> Path:
    """The folder the models are loaded from: ``$ANATOMY_STATIC`` or the repository's static/."""
    return Path(os.environ.get(ENV_STATIC) or STATIC_DIR)


class ManifestError(RuntimeError):
    """The manifest is missing, unreadable or lists no models (safe to show)."""


def load_manifest(static_dir: Path = STATIC_DIR) -> dict:
    """The manifest, with a clear error when it is missing or unreadable."""
    path = Path(static_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} not found. {REBUILD_HINT}") from None
    except (OSError, ValueError) as err:
        raise ManifestError(f"{path} is not valid JSON ({err}). {REBUILD_HINT}") from None
    if not isinstance(manifest, dict) or not manifest.get("models"):
        raise ManifestError(f"{path} lists no models. {REBUILD_HINT}")
    return manifest


def read_manifest(out: Path) -> dict:
    """``out``'s manifest, or an empty one when there is none yet (the build starts here)."""
    try:
        manifest = json.loads((Path(out) / MANIFEST_NAME).read_text(encoding="utf-8"))
        if isinstance(manifest.get("models"), list):
            return manifest
    except (OSError, ValueError):
        pass
    return {"format": 1, "models": []}


def find_entry(manifest: dict, name: str) -> dict | None:
    """The entry of model ``name``, or None."""
    return next((m for m in manifest["models"] if m.get("name") == name), None)


def write_manifest(out: Path, entry: dict) -> dict:
    """Add or replace ``entry`` (by name) in ``out``'s manifest, atomically."""
    out = Path(out)
    manifest = read_manifest(out)
    models = [m for m in manifest["models"] if m.get("name") != entry["name"]] + [entry]
    names = [m["name"] for m in models]
    manifest["models"] = models
    if manifest.get("default_model") not in names:
        manifest["default_model"] = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
    return _rewrite(out, manifest)


def write_experiment(out: Path, name: str, summary: dict) -> dict:
    """Add or replace the build's measurement ``name`` under the manifest's ``experiments``
    (its summary; the record itself is a file of its own beside the models)."""
    manifest = read_manifest(out)
    manifest.setdefault("experiments", {})[name] = summary
    return _rewrite(out, manifest)


def write_section(out: Path, key: str, value: dict) -> dict:
    """Add or replace the manifest's top-level ``key`` (the translator's entry, which the
    GPT lessons' ``models`` list does not hold)."""
    manifest = read_manifest(out)
    manifest[key] = value
    return _rewrite(out, manifest)


def _rewrite(out: Path, manifest: dict) -> dict:
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(out) / MANIFEST_NAME, text)
    return manifest


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` next to ``path``, then rename: a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600
    os.replace(tmp, path)
