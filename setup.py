"""The optional native parts: the mixing kernel, its tables and the outputs' encoding
(renderer/_mixkernel.c), and the binaural filter updates, convolution products and FFTs
(renderer/_binaural.c); everything else is in pyproject.toml. Where they cannot be compiled,
dubstage installs without them: it mixes with its JAX kernel (renderer.engine), and makes the
tables, encodes the outputs and convolves for headphones with numpy."""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O3"]

setup(ext_modules=[
    Extension("renderer._mixkernel", ["renderer/_mixkernel.c"], optional=True,
              extra_compile_args=FLAGS, depends=["renderer/_vectors.h"]),
    Extension("renderer._binaural", ["renderer/_binaural.c"], optional=True,
              extra_compile_args=FLAGS, depends=["renderer/_vectors.h"]),
])
