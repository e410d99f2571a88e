"""ADM time strings (BS.2076-2) <-> exact Fractions."""

from fractions import Fraction

import pytest

from adm.model import AdmError
from adm.timecode import format_time, parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:00.00000", Fraction(0)),
        ("00:00:01.50000", Fraction(3, 2)),
        ("01:02:03.25000", Fraction(3723) + Fraction(1, 4)),
        # any number of fractional digits, read exactly (no float rounding)
        ("00:00:00.005208", Fraction(5208, 1_000_000)),
        ("00:00:00.1", Fraction(1, 10)),
        ("00:00:00.123456789", Fraction(123456789, 10**9)),
        ("00:00:02", Fraction(2)),
        ("  00:00:02.5  ", Fraction(5, 2)),
        # sample-count form: whole seconds + samples / rate
        ("00:00:01.00480S48000", 1 + Fraction(480, 48000)),
        ("00:00:01.00480s48000", 1 + Fraction(480, 48000)),
        ("00:01:00.00001S44100", 60 + Fraction(1, 44100)),
        ("00:00:00.250S1000", Fraction(1, 4)),
    ],
)
def test_parse_time(text: str, expected: Fraction) -> None:
    value = parse_time(text)
    assert isinstance(value, Fraction)
    assert value == expected


def test_parse_time_is_exact_where_floats_are_not() -> None:
    # 0.1 + 0.2 == 0.3 only holds exactly for Fractions
    assert parse_time("00:00:00.1") + parse_time("00:00:00.2") == parse_time("00:00:00.3")


@pytest.mark.parametrize(
    "text",
    ["", "0:0", "00:00:xx.00000", "00:00:00,5", "-00:00:01.0", "00:61:00.0", "00:00:60.0",
     "00:00:01.00480S0", "00:00:01.48000S48000", "00:00:01.5S", "1.5"],
)
def test_parse_time_rejects_bad_text_naming_element(text: str) -> None:
    with pytest.raises(AdmError) as info:
        parse_time(text, "AB_00031001_00000001 rtime")
    assert "AB_00031001_00000001 rtime" in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (Fraction(0), "00:00:00.00000"),
        (Fraction(3, 2), "00:00:01.50000"),
        (Fraction(3723) + Fraction(1, 4), "01:02:03.25000"),
        (Fraction(1, 100000), "00:00:00.00001"),
        # not exact in 5 decimals -> the sample form with the smallest common rate
        (Fraction(1, 48000), "00:00:00.00001S48000"),
        (1 + Fraction(480, 48000), "00:00:01.01000"),  # 0.01 s is exact in 5 decimals
        (1 + Fraction(481, 48000), "00:00:01.00481S48000"),
        (Fraction(1, 44100), "00:00:00.00001S44100"),
        (Fraction(1, 3), "00:00:00.03675S11025"),  # 11025 / 3 = 3675 samples; 8000 / 3 isn't
        (Fraction(1, 7), "00:00:00.01575S11025"),  # 11025 = 7 * 1575
        (Fraction(1, 11), "00:00:00.00001S11"),  # no common rate fits: the denominator
    ],
)
def test_format_time(t: Fraction, text: str) -> None:
    assert format_time(t) == text
    assert parse_time(text) == t


def test_format_time_forced_sample_rate() -> None:
    assert format_time(Fraction(3, 2), sample_rate=48000) == "00:00:01.24000S48000"
    assert parse_time(format_time(Fraction(3, 2), sample_rate=48000)) == Fraction(3, 2)
    with pytest.raises(ValueError, match="whole number of samples"):
        format_time(Fraction(1, 7), sample_rate=48000)
    with pytest.raises(ValueError, match="negative"):
        format_time(Fraction(-1))
