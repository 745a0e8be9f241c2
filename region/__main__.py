"""``python -m region`` is ``bootsync-regiond``."""

import sys

from region.main import main

sys.exit(main())
