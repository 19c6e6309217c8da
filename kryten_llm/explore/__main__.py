"""``python -m kryten_llm.explore`` runs the explorer's command line on its own."""

import sys

from kryten_llm.explore.cli import main

sys.exit(main())
