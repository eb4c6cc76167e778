"""``python -m tf_translate COMMAND ...``: the same as ``tf-translate``."""

import sys

from tf_translate.cli import main

sys.exit(main())
