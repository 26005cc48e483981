"""`python -m llmtray` runs the same entry point as the `llmtray` console script."""

import sys

from llmtray.cli import main

sys.exit(main())
