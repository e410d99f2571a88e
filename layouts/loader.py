"""Named loudspeaker layouts: the ITU-R BS.2051 layouts, film-name aliases and extra layouts.

Data files (``layouts/data``):

- ``bs2051.yaml``: BS.2051-3 nominal positions and permitted ranges, in BS.2051 channel order.
- ``allocentric.yaml``: BS.2127 allocentric (cartesian) loudspeaker positions per layout.
- ``extra.yaml``: film-name aliases ("5.1" = "0+5+0", ...) with film channel labels, and the
  non-BS.2051 layouts "5.1.2", "7.1.2", "9.1.6" (Dolby's published set-ups).

Real positions of a named layout are its nominal positions (as BS.2127 does for a layout given
by name only).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .model import Layout, LayoutError, Speaker

DATA_DIR = Path(__file__).parent / "data"
_BS2051_FILE = DATA_DIR / "bs2051.yaml"
_ALLO_FILE = DATA_DIR / "allocentric.yaml"
_EXTRA_FILE = DATA_DIR / "extra.yaml"

_SCREEN_SPEAKERS = ("M+SC", "M-SC")


# libyaml's safe loader when PyYAML was built with it (about ten times faster: the layout
# data is read at every start-up), else PyYAML's own, which reads the same data alike
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_SafeLoader)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as e:
        raise LayoutError(f"{path}: cannot read layout data: {e}") from e


def _range(d: dict[str, Any], key: str, nominal: float, where: str) -> tuple[float, float]:
    """Permitted range (lo, hi) in degrees; the nominal value itself when absent."""
    r = d.get(key)
    if r is None:
        return (nominal, nominal)
    if len(r) != 2:
        raise LayoutError(f"{where}: {key} must have two values, got {r!r}")
    return (float(r[0]), float(r[1]))


def _speaker(d: dict[str, Any], where: str) -> Speaker:
    try:
        name = str(d["name"])
        az = float(d["position"]["az"])
        el = float(d["position"]["el"])
    except (KeyError, TypeError, ValueError) as e:
        raise LayoutError(f"{where}: channel needs a name and position az/el ({d!r})") from e
    where = f"{where}, channel {name}"
    return Speaker(
        name=name,
        azimuth=az,
        elevation=el,
        distance=1.0,
        is_lfe=bool(d.get("is_lfe", False)),
        nominal_azimuth=az,
        nominal_elevation=el,
        az_range=_range(d, "az_range", az, where),
        el_range=_range(d, "el_range", el, where),
        screen_speaker=name in _SCREEN_SPEAKERS,
    )


def _allocentric(
    layout_name: str, speakers: tuple[Speaker, ...], table: dict[str, Any], where: str
) -> tuple[tuple[str, tuple[float, float, float]], ...]:
    out = []
    for s in speakers:
        if s.name not in table:
            raise LayoutError(f"{where}: no allocentric position for {layout_name} {s.name}")
        p = table[s.name]
        if len(p) != 3:
            raise LayoutError(
                f"{where}: allocentric position of {layout_name} {s.name} needs 3 values"
            )
        out.append((s.name, (float(p[0]), float(p[1]), float(p[2]))))
    return tuple(out)


class _Registry:
    """Everything parsed from the data files, keyed by canonical layout name."""

    def __init__(self) -> None:
        bs2051 = _load_yaml(_BS2051_FILE)
        allo = _load_yaml(_ALLO_FILE)
        extra = _load_yaml(_EXTRA_FILE)
        self.layouts: dict[str, Layout] = {}
        self.labels: dict[str, tuple[str, ...]] = {}
        self.bs2051_names: list[str] = []
        self.aliases: dict[str, str] = {}
        self.extra_names: list[str] = []

        for entry in bs2051:
            name = str(entry["name"])
            where = f"{_BS2051_FILE.name}, layout {name}"
            speakers = tuple(_speaker(c, where) for c in entry["channels"])
            if name not in allo:
                raise LayoutError(f"{_ALLO_FILE.name}: no allocentric positions for {name}")
            positions = _allocentric(name, speakers, allo[name], _ALLO_FILE.name)
            self.layouts[name] = Layout(
                name=name,
                speakers=speakers,
                allocentric_positions=positions,
                description=f"ITU-R BS.2051 {name}",
            )
            self.bs2051_names.append(name)

        for alias, a in extra["aliases"].items():
            alias = str(alias)
            target = str(a["layout"])
            where = f"{_EXTRA_FILE.name}, alias {alias}"
            if target not in self.layouts:
                raise LayoutError(f"{where}: unknown target layout {target!r}")
            labels = tuple(str(x) for x in a["labels"])
            if len(labels) != self.layouts[target].n_channels:
                raise LayoutError(f"{where}: {len(labels)} labels for {target}")
            self.aliases[alias] = target
            self.labels[target] = labels

        for entry in extra["layouts"]:
            name = str(entry["name"])
            where = f"{_EXTRA_FILE.name}, layout {name}"
            channels = entry["channels"]
            speakers = tuple(_speaker(c, where) for c in channels)
            table = {str(c["name"]): c.get("allocentric") for c in channels}
            table = {k: v for k, v in table.items() if v is not None}
            self.layouts[name] = Layout(
                name=name,
                speakers=speakers,
                allocentric_positions=_allocentric(name, speakers, table, where),
                description=str(entry.get("description", "")),
            )
            labels = [c.get("label") for c in channels]
            if any(x is None for x in labels):
                raise LayoutError(f"{where}: every channel needs a film label")
            self.labels[name] = tuple(str(x) for x in labels)
            self.extra_names.append(name)

    def canonical(self, name: str) -> str:
        if name in self.layouts:
            return name
        if name in self.aliases:
            return self.aliases[name]
        known = ", ".join(self.names())
        raise LayoutError(f"unknown layout '{name}'; known layouts: {known}")

    def names(self) -> list[str]:
        return self.bs2051_names + list(self.aliases) + self.extra_names


@lru_cache(maxsize=1)
def _registry() -> _Registry:
    return _Registry()


def get_layout(name: str) -> Layout:
    """The named layout, in its channel order, with real positions = nominal positions.

    ``name`` is a BS.2051 name ("0+2+0" ... "4+7+0"), a film alias ("2.0", "5.1", "7.1",
    "5.1.4", "7.1.4": the same Layout as its BS.2051 layout, BS.2051 channel order) or an
    extra layout ("5.1.2", "7.1.2", "9.1.6"). Raises LayoutError for an unknown name.
    """
    reg = _registry()
    return reg.layouts[reg.canonical(name)]


def layout_names() -> list[str]:
    """All accepted names: BS.2051 names, then aliases, then extra layouts."""
    return _registry().names()


def film_labels(layout_name: str) -> tuple[str, ...] | None:
    """Film channel names (L, R, C, LFE, Ls, ...) in the layout's channel order.

    None for a BS.2051 layout that has no film name (e.g. "9+10+3"). Raises LayoutError for
    an unknown name.
    """
    reg = _registry()
    return reg.labels.get(reg.canonical(layout_name))


def describe_layouts() -> str:
    """One line per layout: name, aliases, channel order (with film labels where defined)."""
    reg = _registry()
    lines = []
    for name in reg.bs2051_names + reg.extra_names:
        layout = reg.layouts[name]
        aliases = [a for a, t in reg.aliases.items() if t == name]
        head = name + (f" (= {', '.join(aliases)})" if aliases else "")
        labels = reg.labels.get(name)
        if labels is None:
            chans = " ".join(layout.channel_names)
        else:
            pairs = zip(layout.channel_names, labels, strict=True)
            chans = " ".join(f"{c}/{lab}" for c, lab in pairs)
        lines.append(f"{head:<20} {layout.n_channels:>2} ch: {chans}")
    return "\n".join(lines)
