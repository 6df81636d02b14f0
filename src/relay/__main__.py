"""`python -m relay`: the key-management CLI (see relay/admin/api/cli.py)."""

import sys

from relay.admin.cli import main

sys.exit(main())
