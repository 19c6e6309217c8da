"""``python -m kryten_llm`` runs the command line."""

import sys

from kryten_llm.cli import main

sys.exit(main())
