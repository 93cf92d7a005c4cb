"""``python -m des``: the command line (see :mod:`des.app.cli`)."""

import sys

from des.app.cli import main

sys.exit(main())
