"""``python -m detector`` (and ``torchrun -m detector``) runs the ``detector`` command."""

import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main())
