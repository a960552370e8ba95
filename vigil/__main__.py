"""`python -m vigil` = the `vigil` command."""

import sys

from vigil.cli import main

sys.exit(main())
