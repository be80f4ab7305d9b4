"""Run the cnnspec CLI from a checkout: ``python cli.py validate specs/lenet5.yaml``."""

import sys

from cnnspec.cli import main

if __name__ == "__main__":
    sys.exit(main())
