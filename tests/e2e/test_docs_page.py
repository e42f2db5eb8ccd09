"""``/docs`` in a real headless Chromium, with every host but the server unresolvable: Swagger UI
renders every route of the table and offers the API key, with no CDN.

Needs Debian's ``chromium`` (``.ci/run`` installs it; set ``CI_REQUIRE_BROWSER=1`` to fail
instead of skipping where it is missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from anypod.http.routes import ROUTES

CHROMIUM = shutil.which("chromium")


def rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, with the network reduced to 127.0.0.1."""
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000",
        "--dump-dom",
    ]
    done = subprocess.run([CHROMIUM, *flags, url], capture_output=True, text=True, timeout=90)
    return done.stdout


def test_docs_render_every_route_offline(serve: Any, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    s = serve(None, endpoint="ep", workers=0)
    dom = rendered(f"{s.url}/docs", tmp_path / "profile")
    assert "swagger-ui" in dom, dom[-2000:]
    for route in ROUTES:
        if route.in_schema:
            assert f'data-path="{route.path}"' in dom, route.path
    assert "btn authorize" in dom  # the API key / worker token dialog
    assert "Unable to render" not in dom and "Failed to load API definition" not in dom
