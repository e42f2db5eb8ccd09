"""The HTTP adapter: RunPod's client API and worker protocol over FastAPI."""

from __future__ import annotations

from anypod.http.app import create_app

__all__ = ["create_app"]
