"""The optional native mixing kernel (renderer/_mixkernel.c); everything else is in
pyproject.toml. Where it cannot be compiled, dubstage installs without it and mixes with its
JAX kernel (renderer.engine)."""

import sys

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "renderer._mixkernel", ["renderer/_mixkernel.c"], optional=True,
    extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
)])
