"""``python -m datacarto``: the same as the ``datacarto`` command."""

import sys

from datacarto.cli import main

if __name__ == "__main__":
    sys.exit(main())
