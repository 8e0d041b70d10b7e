"""``python -m trecvit.cli``: the ``trecvit`` command (used by ``torchrun -m trecvit.cli``)."""

import sys

from trecvit.cli import main

sys.exit(main())
