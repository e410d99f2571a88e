"""JAX configuration shared by every entry point: the persistent compilation cache, the
executables of the render's kernels kept between runs, and configuration arrays put on the
device.

Compilation is paid once per shape and machine: compiled kernels are kept in
``$DUBSTAGE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/dubstage/jax`` or ``~/.cache/dubstage/jax``);
set ``DUBSTAGE_CACHE_DIR=off`` to disable. JAX's own cache still traces and lowers each
kernel in every new process (0.1-0.2 s a kernel); :func:`stored_jit` kernels skip that too:
their executables are stored whole, keyed by the kernel, the shapes and types of its
arguments, the versions of JAX and of this package's code, and the device.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

_configured = False
_cache_dir: Path | None = None


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
    global _cache_dir
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _cache_dir = cache
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError, ValueError):
        pass


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """A digest of this package's renderer code and of the JAX versions: stored executables
    of an older code or JAX are never used."""
    digest = hashlib.sha256(f"{jax.__version__} {jax.lib.__version__}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _signature(value: Any) -> tuple:
    """Shapes, types and tree structure of a call's arguments (what a compiled kernel is
    specialised on)."""
    leaves, tree = jax.tree.flatten(value)
    return (str(tree),) + tuple(
        (np.shape(leaf), str(getattr(leaf, "dtype", type(leaf).__name__)),
         bool(getattr(leaf, "weak_type", False)))
        for leaf in leaves)


def stored_jit(function: Callable | None = None, *, static_argnames: Sequence[str] = ()):
    """``jax.jit(function, static_argnames=...)`` whose executables are also stored on disk
    (see the module doc), so that a new process loads them instead of tracing, lowering and
    compiling again. Use only for kernels whose arguments are arrays (and pytrees of arrays)
    plus keyword ``static_argnames``. Without a cache folder it is plain ``jax.jit``."""
    if function is None:
        return functools.partial(stored_jit, static_argnames=static_argnames)
    jitted = jax.jit(function, static_argnames=tuple(static_argnames))
    executables: dict[tuple, Any] = {}
    name = f"{function.__module__}.{function.__qualname__}"

    @functools.wraps(function)
    def call(*args, **kwargs):
        if _cache_dir is None:
            return jitted(*args, **kwargs)
        static = tuple(sorted((k, kwargs.pop(k)) for k in static_argnames if k in kwargs))
        key = (static, bool(jax.config.jax_enable_x64), _signature((args, kwargs)))
        executable = executables.get(key)
        if executable is None:
            executable = executables[key] = _load_or_compile(jitted, name, key, args,
                                                             kwargs, dict(static))
        return executable(*args, **kwargs)

    return call


def _load_or_compile(jitted, name: str, key: tuple, args, kwargs, static: dict):
    """The stored executable of ``jitted`` for this call, or a new one (then stored)."""
    from jax.experimental import serialize_executable

    device = jax.devices()[0]
    text = repr((name, key, _code_version(), device.platform, device.device_kind))
    path = _cache_dir / f"exe-{hashlib.sha256(text.encode()).hexdigest()[:40]}.pickle"
    try:
        with open(path, "rb") as f:
            payload, in_tree, out_tree = pickle.load(f)
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # missing, unreadable or from another build: compile it again
        pass
    executable = jitted.lower(*args, **kwargs, **static).compile()
    temporary = None
    try:
        data = pickle.dumps(serialize_executable.serialize(executable))
        with tempfile.NamedTemporaryFile(dir=_cache_dir, prefix=".exe-", delete=False) as f:
            temporary = f.name
            f.write(data)
        os.replace(temporary, path)
    except Exception:  # storing is only an optimisation
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    return executable
