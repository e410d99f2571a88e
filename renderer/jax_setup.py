"""JAX configuration shared by every entry point: the persistent compilation cache, and
configuration arrays put on the device.

Compilation is paid once per shape and machine: compiled kernels are kept in the ``jax``
folder of dubstage's cache (:mod:`renderer.cache`: ``~/.cache/dubstage/jax`` by default;
``DUBSTAGE_CACHE_DIR=off`` disables it).
"""

from __future__ import annotations

import jax
import numpy as np

from renderer.cache import cache_dir

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
    cache = cache_dir("jax")
    if cache is None:
        return
    try:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError, ValueError):
        pass
