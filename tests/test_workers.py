"""Functions run in a forked child (renderer.workers)."""

import os
import warnings

import pytest

from adm.model import AdmError
from renderer import workers

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork"),
              # the children here never use JAX, which the test process may have started
              pytest.mark.filterwarnings("ignore:os.fork")]


def test_result_comes_from_another_process():
    def work():
        return os.getpid(), sum(range(1000))

    pid, total = workers.fork_call(work).result()
    assert pid != os.getpid() and total == 499500


def test_exceptions_and_warnings_travel_back():
    def fail():
        warnings.warn("first problem", UserWarning, stacklevel=1)
        raise AdmError("master.wav: audioBlockFormat AB_00031001_00000002: bad rtime")

    call = workers.fork_call(fail)
    with pytest.raises(AdmError, match="AB_00031001_00000002: bad rtime"):
        call.result()

    def warn():
        warnings.warn("a note", UserWarning, stacklevel=1)
        return 7

    with pytest.warns(UserWarning, match="a note"):
        assert workers.fork_call(warn).result() == 7


def test_a_child_that_dies_is_reported():
    call = workers.fork_call(lambda: os._exit(3))
    with pytest.raises(RuntimeError, match="without an answer"):
        call.result()


def test_cancel_stops_a_running_child():
    call = workers.fork_call(lambda: __import__("time").sleep(60))
    call.cancel()
    call.cancel()  # twice is harmless


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def test_an_exception_that_cannot_be_sent_keeps_its_message():
    def fail():
        raise _Unpicklable("channel AC_00031002: something odd")

    with pytest.raises(RuntimeError, match="_Unpicklable: channel AC_00031002: something odd"):
        workers.fork_call(fail).result()
