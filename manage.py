#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> int:
    """Run a command; a set-up error (settings, database, server patches) is one line on stderr and exit status 1."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "puomemo.settings")
    from puomemo.startup import run_management_command

    return run_management_command(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
