"""The bundle's entry script: the same `main` as the `llmtray` console script.

(Not llmtray/__main__.py: PyInstaller puts an entry script's folder on the module path, and the
package's own folder there would make `paths`, `cli`, ... importable as top-level modules.)"""

import sys

from llmtray.cli import main

sys.exit(main())
