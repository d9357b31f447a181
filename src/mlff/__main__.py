"""``python -m mlff`` runs the command line."""

import sys

from mlff.cli.main import main

sys.exit(main())
