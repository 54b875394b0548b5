"""`python -m cli` runs the `kebiao` command."""

import sys

from cli.main import main

sys.exit(main())
