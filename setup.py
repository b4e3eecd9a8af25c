"""Build script: the pure-Python package by default (everything is in pyproject.toml).

With ``TICKLINE_COMPILE`` set to a comma-separated list of modules (``tickline._build``
does this for ``make compiled``), those modules are also compiled with mypyc into extension
modules. Without it (a plain ``pip install``), no compiler is needed.
"""

import os

from setuptools import setup

modules = [m for m in os.environ.get("TICKLINE_COMPILE", "").split(",") if m]
ext_modules = []
if modules:
    from mypyc.build import mypycify

    paths = ["src/" + m.replace(".", "/") + ".py" for m in modules]
    ext_modules = mypycify(paths, opt_level="3")

setup(ext_modules=ext_modules)
