"""Unlearning methods, one file each, registered by name in :data:`METHODS`."""

from pii_unlearn.unlearn.methods import dfsu, ga, npo, unpii  # noqa: F401  (registration)
from pii_unlearn.unlearn.methods.base import METHODS, Method, get_method, register

__all__ = ["METHODS", "Method", "get_method", "register"]
