"""`kebiao suggest`: tag chat lines and print one JSON object per line."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, positive_int

if TYPE_CHECKING:
    from config import Settings


def register(verbs: Verbs) -> None:
    """Add the `suggest` verb."""
    from tagging.builtin import TEMPLATES

    suggest = verbs.add_parser(
        "suggest",
        help="dry-run a taxonomy over chat lines (stdin or --text), one JSON line each",
        description="Tag chat messages and print one JSON object per message, in input order: "
        '{"text": "...", "tags": [{"tag": "询价客户", "dimension": "stage", "matched": ["报价"], "score": 0.9, '
        '"action": "suggest", "source": "keyword"}]}. "action" is "apply" for auto_apply tags, "suggest" '
        "otherwise. Messages come one per line on stdin (UTF-8), or from --text. With --taxonomy FILE (or "
        "--template NAME: the built-in taxonomy plus an industry template) it dry-runs that taxonomy and touches "
        "no database. See docs/suggest.md for the output and docs/taxonomy.md for the file format.",
        epilog="example: kebiao suggest --taxonomy FILE < chat.txt > tags.jsonl",
    )
    source = suggest.add_mutually_exclusive_group()
    source.add_argument("--taxonomy", metavar="FILE", help="taxonomy file (.yaml, .yml or .json) to dry-run")
    source.add_argument(
        "--template",
        metavar="NAME",
        choices=TEMPLATES,
        help=f"built-in taxonomy plus this industry template: {', '.join(TEMPLATES)} (default: none)",
    )
    suggest.add_argument("--text", help="tag this one message instead of reading stdin")
    suggest.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="worker processes for large inputs (default: 1; output order is kept)",
    )
    suggest.set_defaults(handler=cmd_suggest)


def cmd_suggest(args: argparse.Namespace, settings: Settings) -> int:
    """Dry-run a taxonomy over messages (stdin lines or --text): one JSON line each, no database."""
    from core.taxonomy.dryrun import run_suggest
    from tagging.loader import TaxonomyError

    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    try:
        return run_suggest(args.taxonomy, args.template, args.text, args.workers, sys.stdin, sys.stdout)
    except TaxonomyError as exc:
        print(f"kebiao suggest: {exc}", file=sys.stderr)
        return 1
