"""The BS.2127 diffuse path in a file render: decorrelated, time-aligned, length preserved."""

from fractions import Fraction

import numpy as np

from adm.builder import AdmBuilder, write_adm_bwf
from adm.bw64 import Bw64Reader
from adm.model import ObjectsBlock, PolarPosition
from layouts import get_layout
from renderer.decorrelation import DECORRELATOR_DELAY, design_decorrelators
from renderer.render import render_file


def _render(tmp_path, diffuse):
    n = 4000
    x = (0.1 * np.random.default_rng(0).standard_normal((n, 1))).astype(np.float32)
    b = AdmBuilder("p")
    b.add_object("o", [ObjectsBlock(id="", position=PolarPosition(30.0), rtime=Fraction(0),
                                    duration=Fraction(n, 48000), diffuse=diffuse)], 1)
    doc, chna = b.build()
    write_adm_bwf(tmp_path / "in.wav", x, 48000, doc, chna, bit_depth=32,
                  sample_format="float")
    render_file(tmp_path / "in.wav", tmp_path / "out.wav", "0+5+0", float_output=True)
    with Bw64Reader(tmp_path / "out.wav") as r:
        return x[:, 0].astype(np.float64), r.read(0, r.frames).astype(np.float64)


def test_fully_diffuse_object_is_the_decorrelation_filter_advanced_by_its_delay(tmp_path):
    x, y = _render(tmp_path, 1.0)
    assert y.shape == (len(x), 6)
    h = design_decorrelators(get_layout("0+5+0"))
    # diffuse = 1 at M+030: gain 1 on the diffuse path of M+030 only; BS.2127 filters it with
    # that channel's decorrelator and the renderer removes the filter's delay D:
    # y[t] = sum_k h[k] x[t + D - k]
    expected = np.convolve(x, h[:, 0])[DECORRELATOR_DELAY:DECORRELATOR_DELAY + len(x)]
    np.testing.assert_allclose(y[:, 0], expected, atol=1e-5)
    np.testing.assert_allclose(y[:, 1:], 0.0, atol=1e-7)


def test_half_diffuse_splits_power_between_direct_and_diffuse(tmp_path):
    x, y = _render(tmp_path, 0.5)
    h = design_decorrelators(get_layout("0+5+0"))[:, 0]
    wet = np.convolve(x, h)[DECORRELATOR_DELAY:DECORRELATOR_DELAY + len(x)]
    np.testing.assert_allclose(y[:, 0], np.sqrt(0.5) * (x + wet), atol=1e-5)
