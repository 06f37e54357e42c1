"""Unlearning methods, one file each, registered by name in :data:`METHODS`.

Every module of this package is imported here, so a new method is one file that
defines a registered :class:`Method` subclass, and nothing else.
"""

import importlib
import pkgutil

from pii_unlearn.unlearn.methods.base import METHODS, EditResult, GuardReading, Method, get_method, register
from pii_unlearn.unlearn.methods.gradient import GradientMethod

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "EditResult", "GradientMethod", "GuardReading", "Method", "get_method", "register"]
