"""Where dubstage keeps what it computes once per machine: compiled JAX kernels (``jax/``)
and HRTF sets prepared for a sample rate (``hrtf/``).

The root is ``$DUBSTAGE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/dubstage`` or
``~/.cache/dubstage``); ``DUBSTAGE_CACHE_DIR=off`` disables both caches. Everything in it can be
deleted at any time: it is made again when needed.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(part: str) -> Path | None:
    """The folder ``part`` of the cache, created if needed; None when caching is off or the
    folder cannot be made."""
    setting = os.environ.get("DUBSTAGE_CACHE_DIR", "")
    if setting.strip().lower() == "off":
        return None
    if setting:
        root = Path(setting)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "dubstage"
    folder = root / part
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder
