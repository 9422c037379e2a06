"""``python -m xtwin.cli ...``: the same as ``xtwin ...``."""

import sys

from xtwin.cli import main

sys.exit(main())
