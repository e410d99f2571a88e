"""ADM time values (ITU-R BS.2076-2 clause 5.1 / 8) <-> exact :class:`~fractions.Fraction` seconds.

Two textual forms are handled:

* ``hh:mm:ss.fffff`` - a decimal fraction of a second with any number of digits, read exactly
  (``"00:00:00.005208"`` is ``Fraction(5208, 1000000)`` seconds, never a float);
* ``hh:mm:ss.SSSSSsRATE`` - the sample-count form of BS.2076-2: whole seconds plus ``SSSSS``
  samples at ``RATE`` Hz (``"00:00:01.00480S48000"`` is ``1 + 480/48000`` s). The separator
  is ``S``; lower case ``s`` is accepted too.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .model import AdmError

__all__ = ["parse_time", "format_time"]

_DECIMAL_RE = re.compile(r"\s*(\d+):(\d{1,2}):(\d{1,2})(?:\.(\d*))?\s*\Z")
_SAMPLES_RE = re.compile(r"\s*(\d+):(\d{1,2}):(\d{1,2})\.(\d+)[Ss](\d+)\s*\Z")

# Rates tried, smallest first, when a time must be written in the sample form.
_COMMON_RATES = (
    8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000,
    352800, 384000,
)


def _bad(text: str, element: str, why: str) -> AdmError:
    where = f"{element}: " if element else ""
    return AdmError(f"{where}bad ADM time {text!r}: {why}")


def parse_time(text: str, element: str = "") -> Fraction:
    """Parse a BS.2076-2 time string into exact seconds.

    ``element`` names where the text came from (e.g. ``"AB_00031001_00000001 rtime"``) for
    the :class:`~adm.model.AdmError` raised on malformed text.
    """
    if not isinstance(text, str):
        raise _bad(repr(text), element, "not a string")
    # The two forms cannot both match (a sample count ends in "S<rate>"); the decimal form, by
    # far the commoner, is tried first. The result is built as one Fraction from integers.
    match = _DECIMAL_RE.match(text)
    if match is not None:
        hours, minutes, seconds, digits = match.groups()
        numerator, denominator = (int(digits), 10 ** len(digits)) if digits else (0, 1)
    else:
        match = _SAMPLES_RE.match(text)
        if match is None:
            raise _bad(text, element, "expected hh:mm:ss.fffff or hh:mm:ss.SSSSSsRATE")
        hours, minutes, seconds, samples, rate = match.groups()
        numerator, denominator = int(samples), int(rate)
        if denominator == 0:
            raise _bad(text, element, "sample rate is 0")
        if numerator >= denominator:
            raise _bad(text, element,
                       f"sample count {numerator} is not below the rate {denominator}")
    minutes_i, seconds_i = int(minutes), int(seconds)
    if minutes_i >= 60 or seconds_i >= 60:
        raise _bad(text, element, "minutes and seconds must be below 60")
    whole = (int(hours) * 60 + minutes_i) * 60 + seconds_i
    return Fraction(whole * denominator + numerator, denominator)


def _hms(whole: int) -> str:
    minutes, seconds = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def format_time(t: Fraction, sample_rate: int | None = None) -> str:
    """Write exact seconds ``t`` (>= 0) as a BS.2076-2 time string.

    Without ``sample_rate``: ``hh:mm:ss.fffff`` (5 decimals) if that is exact, else the sample
    form ``hh:mm:ss.SSSSSSRATE`` with the smallest common audio rate (8 kHz .. 384 kHz) that
    makes ``t`` a whole number of samples, falling back to the denominator of ``t``.
    With ``sample_rate``: always the sample form at that rate; ``t * sample_rate`` must be an
    integer. Raises ``ValueError`` otherwise.
    """
    t = Fraction(t)
    if t < 0:
        raise ValueError(f"ADM times cannot be negative: {t}")
    whole = t.numerator // t.denominator
    frac = t - whole
    if sample_rate is None:
        if (frac * 100000).denominator == 1:
            return f"{_hms(whole)}.{int(frac * 100000):05d}"
        rate = next((r for r in _COMMON_RATES if (frac * r).denominator == 1), frac.denominator)
    else:
        rate = int(sample_rate)
        if rate <= 0 or rate != sample_rate:
            raise ValueError(f"bad sample rate {sample_rate!r}")
        if (frac * rate).denominator != 1:
            raise ValueError(f"time {t} s is not a whole number of samples at {rate} Hz")
    samples = int(frac * rate)
    return f"{_hms(whole)}.{samples:05d}S{rate}"
