"""npp_ext.data, being split into a package: for now everything is in ``files``."""

from .files import *  # noqa: F403
from .files import __all__  # noqa: F401
