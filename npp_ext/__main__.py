"""``python -m npp_ext`` runs the ``npp-ext`` command."""

import sys

from .cli import main

sys.exit(main())
