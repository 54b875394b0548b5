"""`kebiao suggest`: tag chat lines and print one JSON object per line."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, positive_int

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """Add the `suggest` verb."""
    from tagging.builtin import TEMPLATES

    suggest = verbs.add_parser(
        "suggest",
        help="tag chat lines (stdin or --text) with the database's taxonomy and learned model, or dry-run a file",
        description="Tag chat messages and print one JSON object per message, in input order: "
        '{"text": "...", "tags": [{"tag": "询价客户", "dimension": "stage", "matched": ["报价"], "score": 0.9, '
        '"action": "suggest", "source": "keyword"}]}. "action" is "apply" for auto_apply tags, "suggest" '
        'otherwise; "source" is "keyword" or "learned". Messages come one per line on stdin (UTF-8), or from '
        "--text. Without --taxonomy or --template it uses the taxonomy in force in the database "
        "(KEBIAO_DATABASE_URL) and, when one is trained, the learned model. With --taxonomy FILE (or --template "
        "NAME: the built-in taxonomy plus an industry template) it dry-runs that taxonomy from keywords only and "
        "touches no database. See docs/suggest.md for the output and docs/taxonomy.md for the file format.",
        epilog="example: kebiao suggest --taxonomy FILE < chat.txt > tags.jsonl",
    )
    source = suggest.add_mutually_exclusive_group()
    source.add_argument("--taxonomy", metavar="FILE", help="dry-run this taxonomy file (.yaml/.yml/.json); no database")
    source.add_argument(
        "--template",
        metavar="NAME",
        choices=TEMPLATES,
        help=f"dry-run the built-in taxonomy plus this industry template: {', '.join(TEMPLATES)}; no database",
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
    """Tag messages (stdin lines or --text): one JSON line each."""
    from core.taxonomy.dryrun import run_suggest
    from tagging.loader import TaxonomyError

    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    if args.taxonomy is None and args.template is None:
        return _suggest_from_database(args, settings)
    try:
        return run_suggest(args.taxonomy, args.template, args.text, args.workers, sys.stdin, sys.stdout)
    except TaxonomyError as exc:
        print(f"kebiao suggest: {exc}", file=sys.stderr)
        return 1


def _suggest_from_database(args: argparse.Namespace, settings: Settings) -> int:
    """The taxonomy in force and the newest usable learned model, merged per tag."""
    from cli.common import current_or_initial, run_db

    async def work(database: Database) -> int:
        import asyncio
        from collections.abc import Iterable

        from core.learning.suggester import MergedSuggester, ModelCell
        from core.taxonomy.dryrun import batch_for, suggest_stream, without_bom
        from storage.learning import SqlLearningStore
        from tagging.matcher import Matcher

        current = await current_or_initial(database, settings)
        cell = ModelCell()
        await cell.refresh(SqlLearningStore(database.engine))
        matcher = await asyncio.to_thread(Matcher.build, current.taxonomy)
        source = MergedSuggester(matcher, cell.model, current.taxonomy)
        lines: Iterable[str] = [args.text] if args.text is not None else without_bom(sys.stdin)
        workers = args.workers if args.text is None else 1
        suggest_stream(source, lines, sys.stdout, workers=workers, batch=batch_for(sys.stdin))
        sys.stdout.flush()
        return 0

    return run_db(settings, work)
