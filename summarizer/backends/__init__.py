"""Backends by name: `local` (embedded llama.cpp, default) and `openai` (any compatible endpoint)."""
from __future__ import annotations

from typing import Any

from .base import Backend, CallStats, ExtractionError, TransportError

BACKENDS = ("local", "openai")


def get_backend(name: str = "local", **options: Any) -> Backend:
    """Create a backend by name; options go to its constructor."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**options)
    if name == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(**options)
    raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


__all__ = ["Backend", "CallStats", "ExtractionError", "TransportError", "get_backend", "BACKENDS"]
