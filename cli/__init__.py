"""The `kebiao` command: one module per verb group, registered from one table in `cli.main`.

Each verb module imports only argparse and the standard library at the top; what a verb needs (the server,
SQLAlchemy, jieba) is imported inside its handler, so `kebiao --help` and a dry-run `suggest` start fast.
"""

from cli.main import main

__all__ = ["main"]
