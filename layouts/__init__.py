"""Loudspeaker layouts: BS.2051 layouts, film-name aliases and extra (Dolby) layouts."""

from .loader import describe_layouts, film_labels, get_layout, layout_names
from .model import Layout, LayoutError, Speaker, polar_to_cartesian

__all__ = [
    "Layout",
    "LayoutError",
    "Speaker",
    "describe_layouts",
    "film_labels",
    "get_layout",
    "layout_names",
    "polar_to_cartesian",
]
