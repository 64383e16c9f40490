"""Shared fixtures: one quick build per test session, reused by every model-level test, and
Debian's Chromium for the browser tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory) -> Path:
    """A tiny model trained and exported by the real build (``--quick``) into a temp folder."""
    from models.build import main

    out = tmp_path_factory.mktemp("quick-static")
    assert main(["--quick", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def quick_manifest(quick_build) -> dict:
    return json.loads((quick_build / "manifest.json").read_text())


@pytest.fixture(scope="session")
def static_manifest() -> dict:
    return json.loads((STATIC / "manifest.json").read_text())


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (the system's), one per test module."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import launch

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()
