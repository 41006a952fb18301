"""`python -m captionkit.cli ...` (what `torchrun -m captionkit.cli` runs): the `captionkit` command."""

import sys

from captionkit.cli import main

sys.exit(main())
