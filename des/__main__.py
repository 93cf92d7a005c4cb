"""``python -m des``: the command line (see :mod:`des.cli`)."""

import sys

from des.cli import main

sys.exit(main())
