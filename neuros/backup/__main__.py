"""``python3 -m neuros.backup``: see ``neuros.backup.cli``."""

import sys

from neuros.backup.cli import main

sys.exit(main())
