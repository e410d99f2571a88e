"""Objects gain calculation end to end (BS.2127 clause 7.3), against values the standard fixes."""

import numpy as np
import pytest

from adm.model import (
    CartesianPosition,
    ChannelLock,
    ObjectDivergence,
    ObjectsBlock,
    PolarPosition,
    PolarZone,
)
from layouts import get_layout
from renderer.objects import configure_objects, object_block_gains


def _gains(layout_name, **block):
    layout = get_layout(layout_name)
    g = object_block_gains(configure_objects(layout), [ObjectsBlock(id="b", **block)])[0]
    return dict(zip(layout.channel_names, g))


def test_full_divergence_splits_equally_to_the_side_positions():
    # value 1: the centre source gets weight 0, the two sources at +-azimuthRange 1/2 of the
    # power each; at +-30 degrees on 0+5+0 they are exactly on M+030 and M-030.
    g = _gains("0+5+0", position=PolarPosition(0.0),
               object_divergence=ObjectDivergence(1.0, azimuth_range=30.0))
    assert g["M+030"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert g["M-030"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert g["M+000"] == pytest.approx(0.0, abs=1e-6)


def test_excluded_speaker_gets_nothing_and_power_is_kept():
    zone = PolarZone(min_elevation=-10, max_elevation=10, min_azimuth=25, max_azimuth=35)
    g = _gains("0+5+0", position=PolarPosition(30.0), zone_exclusion=(zone,))
    assert g["M+030"] == 0.0
    assert sum(v * v for v in g.values()) == pytest.approx(1.0, abs=1e-6)


def test_channel_lock_snaps_to_the_nearest_speaker():
    g = _gains("0+5+0", position=PolarPosition(20.0), channel_lock=ChannelLock(True))
    assert g["M+030"] == pytest.approx(1.0, abs=1e-6)


def test_full_width_extent_on_a_horizontal_layout_reaches_every_speaker_symmetrically():
    g = _gains("0+5+0", position=PolarPosition(0.0), width=360.0)
    assert g["M+030"] == pytest.approx(g["M-030"], abs=1e-6)
    assert g["M+110"] == pytest.approx(g["M-110"], abs=1e-6)
    assert min(g[n] for n in ("M+030", "M-030", "M+000", "M+110", "M-110")) > 0.1
    assert sum(v * v for v in g.values()) == pytest.approx(1.0, abs=1e-5)


def test_cartesian_size_spreads_an_object_symmetrically():
    g = _gains("0+5+0", position=CartesianPosition(0.0, 0.0, 0.0), cartesian=True,
               width=1.0, height=1.0, depth=1.0)
    assert g["M+030"] == pytest.approx(g["M-030"], abs=1e-6)
    assert g["M+110"] == pytest.approx(g["M-110"], abs=1e-6)
    assert g["LFE1"] == 0.0
    assert sum(v * v for v in g.values()) == pytest.approx(1.0, abs=1e-5)


def test_screen_edge_lock_follows_the_reproduction_screen():
    from adm.model import DEFAULT_SCREEN, ScreenEdgeLock

    layout = get_layout("0+5+0")
    panner = configure_objects(layout)
    locked = ObjectsBlock(id="b", position=PolarPosition(10.0),
                          screen_edge_lock=ScreenEdgeLock("left", None))

    def plain(azimuth):
        return object_block_gains(panner, [ObjectsBlock(id="p", position=PolarPosition(azimuth))])

    # the default screen is 58 degrees wide, centred: its left edge is at +29 degrees
    with_screen = object_block_gains(panner, [locked], reproduction_screen=DEFAULT_SCREEN)
    np.testing.assert_allclose(with_screen, plain(29.0), atol=1e-6)
    # no reproduction screen (a room without one): the lock does nothing
    without = object_block_gains(panner, [locked], reproduction_screen=None)
    np.testing.assert_allclose(without, plain(10.0), atol=1e-6)
