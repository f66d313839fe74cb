"""`python -m puomemo_client`: the CLI."""

import sys

from puomemo_client.cli import main

sys.exit(main())
