"""``python -m rack`` is ``bootsync-rackd``."""

import sys

from rack.main import main

sys.exit(main())
