"""`python -m relay`: the key-management CLI (see relay/cli.py)."""

import sys

from .cli import main

sys.exit(main())
