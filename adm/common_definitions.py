"""The ITU-R BS.2094 ADM common definitions (packs AP_0001xxxx.., channels AC_0001xxxx.., and
their stream and track formats), bundled as ``adm/data/common_definitions.xml``.

ADM files refer to these IDs without defining them; :func:`adm.xml.parse_adm_xml` merges the
ones a file does not define itself. The data is parsed once, on first use.
"""

from __future__ import annotations

import functools
from importlib import resources

from .model import AdmDocument

__all__ = ["common_definitions", "COMMON_DEFINITIONS_RESOURCE"]

COMMON_DEFINITIONS_RESOURCE = "data/common_definitions.xml"


@functools.cache
def common_definitions() -> AdmDocument:
    """The BS.2094 common definitions as an :class:`AdmDocument`.

    Every element has ``is_common_definition=True``. The result is cached (parsed once per
    process); it is immutable, so sharing it is safe.
    """
    from .xml import parse_adm_elements  # local import: adm.xml imports this module

    resource = resources.files(__package__).joinpath(COMMON_DEFINITIONS_RESOURCE)
    data = resource.read_bytes()
    return parse_adm_elements(
        data, source="ITU-R BS.2094 common definitions", is_common_definition=True
    )
