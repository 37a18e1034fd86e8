"""``python -m thaw_cli ...`` runs the ``thaw`` command line."""

import sys

from thaw_cli.main import main

sys.exit(main())
