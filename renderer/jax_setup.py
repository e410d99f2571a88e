"""JAX configuration shared by every entry point: the persistent compilation cache.

Compilation is paid once per shape and machine: compiled kernels are kept in
``$DUBSTAGE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/dubstage/jax`` or ``~/.cache/dubstage/jax``);
set ``DUBSTAGE_CACHE_DIR=off`` to disable.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

_configured = False


def configure_jax() -> None:
    """Enable the persistent compilation cache (idempotent; errors only disable the cache)."""
    global _configured
    if _configured:
        return
    _configured = True
    setting = os.environ.get("DUBSTAGE_CACHE_DIR", "")
    if setting.lower() == "off":
        return
    if setting:
        cache = Path(setting)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache = Path(base) / "dubstage" / "jax"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError, ValueError):
        pass
