"""``python -m kryten_llm.batch``: the batch command on its own (same as ``kryten-llm batch``)."""

import sys

from kryten_llm.batch.cli import main

sys.exit(main())
