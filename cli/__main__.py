"""`python -m cli`: the same program as the installed `nexus-backup` script."""

import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
