"""npp_ext.tasks, being split into a package: for now everything is in ``detection``."""

from .detection import *  # noqa: F403
from .detection import __all__  # noqa: F401
