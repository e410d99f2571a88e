"""JAX configuration shared by every entry point: the persistent compilation cache, and
configuration arrays put on the device.

Compilation is paid once per shape and machine: compiled kernels are kept in
``$DUBSTAGE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/dubstage/jax`` or ``~/.cache/dubstage/jax``);
set ``DUBSTAGE_CACHE_DIR=off`` to disable.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

_configured = False


def on_device(values, dtype=None) -> jax.Array:
    """``values`` (an array-like) as a JAX array on the default device, in JAX's canonical
    dtype (float32 unless 64-bit mode is on), without the small compiled program that
    ``jnp.asarray`` builds for every new shape (each costs several milliseconds at start-up)."""
    array = np.asarray(values, dtype)
    return jax.device_put(array.astype(jax.dtypes.canonicalize_dtype(array.dtype), copy=False))


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
