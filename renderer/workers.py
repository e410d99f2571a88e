"""Work done by a forked copy of the process, on another core, while this one goes on.

Reading a master's metadata is mostly Python, so one process uses one core. The render splits
the reading and planning of the Objects channels between itself and one forked child (see
:func:`renderer.render.render_outputs`). The child is forked before JAX starts its runtime
(its threads would not survive a fork); each process then starts its own. The child's return
value, its warnings and any exception travel back pickled through a pipe.

The command line also reads a large master's ADM structure ahead (:func:`read_ahead`): a
child forked before JAX is even imported parses it, and two in three of its Objects channels,
while this process imports the renderer.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether this machine can run a child process on another core: a POSIX fork and at
    least two CPUs available to this process."""
    if not hasattr(os, "fork") or sys.platform == "darwin":  # fork is unsafe on macOS
        return False
    return available_cpus() >= 2


class WorkerLost(RuntimeError):
    """A forked child ended without an answer (killed, out of memory)."""


class ForkedCall(Generic[_T]):
    """A function running in a forked child; :meth:`result` waits for it."""

    def __init__(self, pid: int, fd: int) -> None:
        self._pid, self._fd = pid, fd

    def result(self) -> _T:
        """The function's return value; its exception re-raised here; its warnings issued
        here. Raises :class:`WorkerLost` if the child died without an answer."""
        with os.fdopen(self._fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = 0
        if not data:
            raise WorkerLost(f"a worker process ended without an answer (status {status})")
        kind, value, caught = pickle.loads(data)
        for message, category in caught:
            warnings.warn(message, category, stacklevel=2)
        if kind == "error":
            raise value
        return value

    def cancel(self) -> None:
        """Stop the child if it is still running (when the parent gives up)."""
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            except OSError:
                pass
            self._pid = 0
            try:
                os.close(self._fd)
            except OSError:
                pass


def fork_call(function: Callable[[], _T]) -> ForkedCall[_T]:
    """Start ``function()`` in a forked child process (see :func:`can_fork`).

    The child shares nothing with the parent after the fork except open files; it must not
    touch the parent's output files. Its result must be picklable.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return ForkedCall(pid, read_fd)
    # the child: never returns
    os.close(read_fd)
    status = 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = function()
        payload = ("ok", value, [(str(w.message), w.category) for w in caught])
    except BaseException as exc:  # sent to the parent, which raises it
        payload = ("error", exc, [])
        status = 1
    try:
        data = pickle.dumps(payload)
    except Exception as exc:  # an unpicklable result or exception: its message goes back
        kind, value, caught = payload
        message = f"{type(value).__name__}: {value}" if kind == "error" else \
            f"worker process: its result cannot be sent back ({exc})"
        data = pickle.dumps(("error", RuntimeError(message), caught if kind == "ok" else []))
        status = 1
    try:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    finally:
        os._exit(status)


SPLIT_MIN_AXML_BYTES = 4 << 20
"""axml size from which a master's metadata is worth reading in a forked process."""

_READ_AHEAD: dict[tuple, ForkedCall[Any]] = {}


def _file_key(path: str | os.PathLike, strict: bool) -> tuple | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, bool(strict))


def forking_allowed() -> bool:
    """:func:`can_fork`, unless turned off with the environment variable
    ``DUBSTAGE_WORKERS=1``."""
    return os.environ.get("DUBSTAGE_WORKERS", "").strip() != "1" and can_fork()


def read_ahead(path: str | os.PathLike, strict: bool = False) -> None:
    """Start reading the ADM structure of the BW64 file ``path`` (its Objects blocks
    deferred: :func:`adm.xml.read_adm`), then some of its Objects channels (see
    :func:`_read_structure_and_channels`), in a forked child, for :func:`take_read_ahead`, when
    its axml is large and another core is free. Call it before importing JAX (the command
    line does so as it starts): the child needs only numpy and lxml. A file that cannot be
    opened is left alone (the render reports it)."""
    key = _file_key(path, strict)
    if key is None or key in _READ_AHEAD or not forking_allowed():
        return
    from adm.bw64 import Bw64Error, Bw64Reader

    try:
        with Bw64Reader(path) as reader:
            region = reader.axml_region()
            if region is None or region.size < SPLIT_MIN_AXML_BYTES:
                return
    except (Bw64Error, OSError, ValueError):
        return

    def read():
        with Bw64Reader(path) as reader:
            return _read_structure_and_channels(reader, strict)

    _READ_AHEAD[key] = fork_call(read)


READ_AHEAD_CHANNELS_MAX_BYTES = 64 << 20
"""axml size up to which Objects channels are read ahead too (at most some 100,000 blocks,
about 25 MB of arrays)."""


def read_ahead_channel(position: int) -> bool:
    """Whether the Objects channel at ``position`` (in document order among the Objects
    channels) is read ahead: two in three, those that the render's forked planning half
    plans (it then reads no XML; this process configures the outputs and reads the third)."""
    return position % 3 != 0


def _read_structure_and_channels(reader, strict: bool):
    """The document (Objects blocks deferred) and, for an axml of at most
    :data:`READ_AHEAD_CHANNELS_MAX_BYTES`, the Objects channels chosen by
    :func:`read_ahead_channel` read with their blocks as columns ({ID: channel}), as far as
    they read so without a warning or an error (the render then reads them itself, and
    reports those)."""
    from adm.columns import ObjectsBlockColumns
    from adm.model import AdmError, TypeDefinition
    from adm.xml import iter_channel_formats, read_adm

    doc = read_adm(reader, strict=strict, defer_objects=True)
    channels: dict[str, Any] = {}
    region = reader.axml_region()
    if strict or region is None or region.size > READ_AHEAD_CHANNELS_MAX_BYTES:
        return doc, channels
    objects = [c.id for c in doc.channel_formats
               if c.type is TypeDefinition.Objects and not c.is_common_definition]
    wanted = {cid for k, cid in enumerate(dict.fromkeys(objects)) if read_ahead_channel(k)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for channel in iter_channel_formats(region, wanted, source=str(reader.path)):
                if caught or not isinstance(channel.blocks, ObjectsBlockColumns):
                    break
                channels.setdefault(channel.id, channel)
        except AdmError:
            pass
    return doc, channels


def take_read_ahead(path: str | os.PathLike, strict: bool = False) -> ForkedCall[Any] | None:
    """The reading started by :func:`read_ahead` for ``path`` as it is now (same size and
    modification time) and ``strict``, if any; its :meth:`ForkedCall.result` is (document,
    channels read ahead) or the reading's error."""
    key = _file_key(path, strict)
    return _READ_AHEAD.pop(key, None) if key is not None else None
