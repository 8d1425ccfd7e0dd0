"""``python -m bitscale``: the same as the ``bitscale`` command."""

import sys

from bitscale.cli import main

sys.exit(main())
