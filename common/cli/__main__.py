"""``python -m common.cli`` is the ``bootsync`` command."""

import sys

from common.cli import main

sys.exit(main())
