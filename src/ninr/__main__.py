"""``python -m ninr`` is the ``ninr`` command."""

import sys

from ninr.cli import main

sys.exit(main())
