"""Content-addressed, on-disk cache of model responses.

The key is a hash of everything that determines a response: model identity (name and
file sha256), the full request (messages — which carry the prompt version's text and
the article —, the tool schema, decoding parameters) and the schema version. A rerun of
unchanged work therefore makes no model calls, and any change to a prompt, the model or
the decoding misses the cache and is recomputed (and re-recorded). A corrupt entry is
ignored and rewritten, never fatal.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from .schema import SCHEMA_VERSION

log = logging.getLogger(__name__)


class ResponseCache:
    """Model responses stored as JSON files named by the hash of their request."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.used: set[str] = set()  # keys read or written by this process

    def key(self, model: dict, request: dict) -> str:
        """Hash of the model identity, the request and the schema version."""
        blob = json.dumps({"model": model, "request": request, "schema_version": SCHEMA_VERSION},
                          sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored response, or None when absent or unreadable."""
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "choices" not in data:
                raise ValueError("not a chat completion")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            try:
                path.unlink()  # the entry is rewritten after the next real call
            except OSError:
                log.warning("cannot remove corrupt cache entry %s", path)
            return None
        self.used.add(key)
        return data

    def put(self, key: str, response: dict[str, Any]) -> None:
        """Store a response atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(response, f, ensure_ascii=False, sort_keys=True)
            os.replace(tmp, path)
            self.used.add(key)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def prune(self) -> int:
        """Delete every entry this process did not read or write; returns how many were deleted.

        Run after a complete eval to drop recordings that no current request can hit any more.
        """
        removed = 0
        for path in self.directory.glob("*/*.json"):
            if path.stem not in self.used:
                path.unlink()
                removed += 1
        return removed


def default_cache_dir() -> Path:
    """$SUMMARIZER_RESPONSE_CACHE, else responses/ under the cache folder (~/.cache/summarizer)."""
    from .models import cache_dir

    env = os.environ.get("SUMMARIZER_RESPONSE_CACHE")
    return Path(env) if env else cache_dir() / "responses"
