"""`kebiao ingest FILE.jsonl [--resume]`: a WeCom chat-archive export into tag suggestions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import Verbs, current_or_initial, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database

log = logging.getLogger("kebiao.cli")


def register(verbs: Verbs) -> None:
    """Add the `ingest` verb."""
    ingest = verbs.add_parser(
        "ingest",
        help="turn a WeCom chat-archive export (JSONL) into tag suggestions",
        description="Read FILE.jsonl exported from WeCom's 会话内容存档 (decrypted; one JSON object per line with "
        "msgid, from, tolist, roomid, msgtime, msgtype, text.content). Text from customers (external user ids "
        "wm…/wo… of known customers) is matched: auto_apply tags are applied, others stored as suggestions. "
        "Idempotent by msgid; a checkpoint FILE.jsonl.kebiao-checkpoint allows --resume. Bad lines are "
        "printed with their line number and skipped; the exit status is then 1.",
    )
    ingest.add_argument("file", metavar="FILE.jsonl", help="chat-archive export, one JSON object per line")
    ingest.add_argument("--resume", action="store_true", help="continue after the last checkpoint")
    ingest.set_defaults(handler=cmd_ingest)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest a WeCom chat-archive export (JSONL): suggestions and auto-applied tags per customer."""
    import asyncio

    from core.importing.ingest import CheckpointError, ingest_archive
    from core.learning.suggester import MergedSuggester, ModelCell
    from core.tags.assignments import TaggingRules
    from core.taxonomy.matcher_holder import MatcherHolder
    from storage.learning import SqlLearningStore
    from storage.outbox import SqlAlertStore

    path = Path(args.file)
    if not path.is_file():
        print(f"kebiao ingest: {path} is not a file", file=sys.stderr)
        return 1
    tty = sys.stderr.isatty()
    last_log = [0.0]

    def progress(done: int, total: int, lines: int) -> None:
        share = done / total if total else 1.0
        if tty:
            bar = "#" * int(share * 30)
            print(f"\r[{bar:<30}] {share:6.1%} {lines} lines", end="", file=sys.stderr, flush=True)
        elif asyncio.get_running_loop().time() - last_log[0] >= 5.0:
            last_log[0] = asyncio.get_running_loop().time()
            log.info("ingest: %.1f%% (%d lines)", share * 100, lines)

    async def work(database: Database) -> int:
        current = await current_or_initial(database, settings)
        holder = MatcherHolder()
        await holder.rebuild(current.taxonomy)
        assert holder.current is not None
        rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)
        # Keyword and learned suggestions in one stream; texts that raised suggestions are kept for learning.
        learning = SqlLearningStore(database.engine)
        models = ModelCell()
        await models.refresh(learning)
        source = MergedSuggester(holder.current, models.model, current.taxonomy)
        try:
            store = SqlAlertStore(database.engine)  # alert uow: ingest also records customer activity
            summary = await ingest_archive(
                store,
                current.taxonomy,
                source,
                rules,
                path,
                resume=args.resume,
                progress=progress,
                learning=learning,
            )
        except CheckpointError as exc:
            print(f"kebiao ingest: {exc}", file=sys.stderr)
            return 1
        if tty:
            print(file=sys.stderr)
        for problem in summary.bad:
            print(f"{path}: {problem}", file=sys.stderr)
        print(summary)
        return 1 if summary.bad else 0

    return run_db(settings, work)
