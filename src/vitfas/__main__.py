"""``python -m vitfas`` (used by ``torchrun -m vitfas``)."""

import sys

from vitfas.cli import main

sys.exit(main())
