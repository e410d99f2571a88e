"""Kernels whose executables are stored between processes (renderer.jax_setup.stored_jit)."""

import numpy as np
import pytest
from jax.experimental import serialize_executable

from renderer import jax_setup

traced = []
loaded = []


def _scaled_sum(x, y, *, power):
    traced.append(power)  # runs only when the kernel is traced (compiled anew)
    return (x * y).sum(axis=-1) ** power


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(jax_setup, "_cache_dir", tmp_path)
    load = serialize_executable.deserialize_and_load

    def counted(*args, **kwargs):
        executable = load(*args, **kwargs)
        loaded.append(executable)
        return executable

    monkeypatch.setattr(serialize_executable, "deserialize_and_load", counted)
    traced.clear()
    loaded.clear()
    return tmp_path


def test_stored_kernel_computes_the_hand_computed_values_and_is_reused(cache_dir):
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    y = np.array([[5.0, 6.0], [7.0, 8.0]], np.float32)
    first = jax_setup.stored_jit(_scaled_sum, static_argnames=("power",))
    # rows: 1*5 + 2*6 = 17 and 3*7 + 4*8 = 53, squared
    np.testing.assert_array_equal(first(x, y, power=2), [289.0, 2809.0])
    assert traced == [2] and not loaded and len(list(cache_dir.glob("exe-*"))) == 1
    # a new wrapper (as in a new process) loads the stored executable
    second = jax_setup.stored_jit(_scaled_sum, static_argnames=("power",))
    np.testing.assert_array_equal(second(x, y, power=2), [289.0, 2809.0])
    assert len(loaded) == 1
    np.testing.assert_array_equal(second(2 * x, y, power=2), [34.0**2, 106.0**2])
    assert len(loaded) == 1  # kept in memory after the first call
    # another static value or shape is another executable
    np.testing.assert_array_equal(second(x, y, power=1), [17.0, 53.0])
    np.testing.assert_array_equal(second(x[:1], y[:1], power=1), [17.0])
    assert traced == [2, 1, 1] and len(list(cache_dir.glob("exe-*"))) == 3


def test_a_damaged_stored_executable_is_compiled_again(cache_dir):
    x = np.ones((3, 2), np.float32)
    jax_setup.stored_jit(_scaled_sum, static_argnames=("power",))(x, x, power=3)
    (path,) = cache_dir.glob("exe-*")
    path.write_bytes(b"not an executable")
    again = jax_setup.stored_jit(_scaled_sum, static_argnames=("power",))
    np.testing.assert_array_equal(again(x, 2 * x, power=3), [64.0, 64.0, 64.0])
    assert not loaded and path.stat().st_size > 100  # compiled and stored again
    assert not list(cache_dir.glob(".exe-*"))  # no temporary file left behind


def test_without_a_cache_folder_it_is_plain_jit(monkeypatch):
    monkeypatch.setattr(jax_setup, "_cache_dir", None)
    x = np.full((1, 4), 0.5, np.float32)
    kernel = jax_setup.stored_jit(_scaled_sum, static_argnames=("power",))
    np.testing.assert_allclose(kernel(x, x, power=1), [1.0])
