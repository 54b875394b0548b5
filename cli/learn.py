"""`kebiao learn import|train|status|keywords|forget`: learning from decisions."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, positive_int, run_db

if TYPE_CHECKING:
    from config import Settings
    from learning.model import TagMetrics
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao learn ACTION` group."""
    group = verbs.add_parser(
        "learn",
        help="learned suggestions: import labelled history, train, status, keyword discovery, forget",
        description="Kebiao learns from every accept, reject, undo and manual tag (texts stored with personal "
        "data masked; docs/learning.md).",
    )
    sub = group.add_subparsers(dest="learn_action", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import",
        help="load labelled history (JSONL) as examples",
        description='FILE holds one {"text": "...", "tags": ["询价客户", ...]} per line. Listed tags are positives; '
        "every other tag of the taxonomy in force is a negative for that text. Unknown tags and malformed lines "
        "are listed with their line numbers and nothing is stored.",
    )
    imp.add_argument("file", metavar="FILE.jsonl", help="labelled history, UTF-8 JSON lines")
    imp.set_defaults(handler=cmd_import)
    train = sub.add_parser(
        "train",
        help="train the learned model on the stored examples",
        description="Train one classifier per tag. A tag gets learned suggestions only with enough examples "
        "(KEBIAO_LEARN_MIN_EXAMPLES, KEBIAO_LEARN_MIN_POSITIVES) and a cross-validated precision of at least "
        "KEBIAO_LEARN_MIN_PRECISION at its threshold. When no tag qualifies, the current model is kept and "
        "the tags lacking data are listed (exit 1).",
    )
    train.set_defaults(handler=cmd_train)
    status = sub.add_parser(
        "status",
        help="per-tag metrics of the model in use",
        description="Print the newest "
        "model's version, training size and each tag's examples, threshold, precision and recall.",
    )
    status.set_defaults(handler=cmd_status)
    keywords = sub.add_parser(
        "keywords",
        help="propose new keywords per tag from accepted vs rejected and untagged messages",
        description="Mine jieba words that set a tag's accepted messages apart (log-odds ratio with an "
        "informative Dirichlet prior). Each candidate has its support, its precision on stored history and two "
        "example messages (masked). Add chosen ones with `kebiao taxonomy add-keywords TAG WORD...`.",
    )
    keywords.add_argument("--tag", metavar="TAG", help="only this tag (name or dimension:tag)")
    keywords.add_argument("--limit", type=positive_int, default=10, metavar="N", help="candidates per tag (10)")
    keywords.add_argument("--min-support", type=positive_int, default=3, metavar="N", help="positive texts (3)")
    keywords.set_defaults(handler=cmd_keywords)
    forget = sub.add_parser(
        "forget",
        help="delete one customer's examples and remembered messages",
        description="Delete every training example and remembered message text of the customer (by database "
        "id, crm id, WeCom external user id or exact name). Models trained earlier hold no texts; retrain to "
        "drop the customer's influence from the model too.",
    )
    forget.add_argument("--customer", required=True, metavar="ID", help="customer id, crm id or exact name")
    forget.set_defaults(handler=cmd_forget)


def _metrics_line(m: TagMetrics) -> str:
    if not m.enabled:
        return f"  {m.dimension}/{m.tag}: keyword-only ({m.reason})"
    return (
        f"  {m.dimension}/{m.tag}: learned · {m.examples} examples ({m.positives} positive) · threshold "
        f"{m.threshold:.2f} · cv precision {m.precision:.2f} · cv recall {m.recall:.2f}"
        + (f" · holds keyword hits back below {m.veto:.2f}" if m.veto else "")
    )


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Load labelled history; all or nothing."""
    from pathlib import Path

    path = Path(args.file)
    if not path.is_file():
        print(f"kebiao learn import: {path} is not a file", file=sys.stderr)
        return 1
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        print(f"kebiao learn import: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 1

    async def work(database: Database) -> int:
        from datetime import UTC, datetime

        from cli.common import current_or_initial
        from cli.progress import ProgressBar
        from core.learning.history import HistoryError, import_history
        from storage.learning import SqlLearningStore

        current = await current_or_initial(database, settings)
        bar = ProgressBar(unit="lines")
        try:
            count, examples = await import_history(
                SqlLearningStore(database.engine), lines, current.taxonomy, datetime.now(UTC), bar
            )
        except HistoryError as exc:
            bar.finish()
            for problem in str(exc).splitlines():
                print(f"{path}: {problem}", file=sys.stderr)
            print(f"kebiao learn import: nothing was stored; fix {path} and import it again", file=sys.stderr)
            return 1
        bar.finish()
        print(f"{count} labelled texts imported as {examples} examples (taxonomy version {current.version})")
        return 0

    return run_db(settings, work)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train now; exit 1 when no tag qualified (the current model stays)."""

    async def work(database: Database) -> int:
        from datetime import UTC, datetime

        from cli.common import current_or_initial
        from core.learning.trainer import train_model
        from scheduler import training_config
        from storage.learning import SqlLearningStore

        current = await current_or_initial(database, settings)
        store = SqlLearningStore(database.engine)
        report = await train_model(store, current.taxonomy, training_config(settings.learning), datetime.now(UTC))
        if report.version is None:
            previous = await store.latest_model_version()
            kept = f"model {previous} stays in use" if previous else "no model is stored; suggestions stay keyword-only"
            print(f"no tag has enough data for learned suggestions ({report.texts} texts); {kept}", file=sys.stderr)
            for m in report.lacking:
                print(_metrics_line(m), file=sys.stderr)
            return 1
        print(f"model {report.version} trained on {report.texts} texts ({report.examples} examples):")
        for m in (*report.enabled, *report.lacking):
            print(_metrics_line(m))
        return 0

    return run_db(settings, work)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """The newest model's per-tag metrics and the examples stored since."""

    async def work(database: Database) -> int:
        from core.learning.suggester import ModelCell
        from learning.model import TagMetrics
        from storage.learning import SqlLearningStore

        store = SqlLearningStore(database.engine)
        latest = await store.latest_model(with_arrays=False)
        total = await store.count_examples()
        if latest is None:
            print(f"no learned model yet; {total} examples stored. Train with `kebiao learn train`.")
            return 0
        cell = ModelCell()
        await cell.refresh(store)
        usable = "in use" if cell.version == latest.version else "NOT usable (see the warning above); keywords only"
        fresh = await store.count_examples(since=latest.created_at)
        print(
            f"model {latest.version} ({usable}), trained {latest.created_at.isoformat(timespec='seconds')} on "
            f"{latest.training_size} texts; {total} examples stored, {fresh} since"
        )
        for raw in latest.metrics:
            print(_metrics_line(TagMetrics.from_json(raw)))
        return 0

    return run_db(settings, work)


def cmd_keywords(args: argparse.Namespace, settings: Settings) -> int:
    """Keyword candidates per tag."""

    async def work(database: Database) -> int:
        from cli.common import current_or_initial
        from core.learning.discovery import keyword_candidates
        from storage.learning import SqlLearningStore
        from tagging.policy import AmbiguousTagError, UnknownTagError, find_tag

        current = await current_or_initial(database, settings)
        only = None
        if args.tag:
            try:
                dimension, tag = find_tag(current.taxonomy, args.tag)
            except (UnknownTagError, AmbiguousTagError) as exc:
                print(f"kebiao learn keywords: {exc.args[0]}", file=sys.stderr)
                return 1
            only = (dimension.key, tag.name)
        found = await keyword_candidates(
            SqlLearningStore(database.engine), current.taxonomy, only, args.limit, args.min_support
        )
        for group in found:
            if only is None and not group.candidates:
                continue
            print(f"{group.dimension}/{group.tag} ({group.positives} positive texts)")
            if not group.candidates:
                print(f"  no candidates (needs words in at least {args.min_support} accepted messages)")
            for c in group.candidates:
                print(f"  {c.word}\tsupport {c.support}\tprecision {c.precision:.2f}\tscore {c.score:.2f}")
                for example in c.examples:
                    print(f"      “{example}”")
        if only is None and not any(g.candidates for g in found):
            print("no keyword candidates yet: accept, reject or import more labelled messages")
        return 0

    return run_db(settings, work)


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    """Delete one customer's examples and remembered messages."""

    async def work(database: Database) -> int:
        from core.learning.retention import forget_customer
        from core.tags.customers import resolve_customer
        from storage.learning import SqlLearningStore

        wanted = args.customer.strip()
        async with database.unit_of_work(read_only=True) as uow:
            customer = await uow.customers.get(int(wanted)) if wanted.isdigit() else None
            if customer is None:
                resolution = await resolve_customer(uow, wanted)
                customer = resolution.customer
        if customer is None:
            print(f"kebiao learn forget: no customer matches {wanted!r}", file=sys.stderr)
            return 1
        examples, messages = await forget_customer(SqlLearningStore(database.engine), customer.id)
        print(f"customer {customer.id} ({customer.name}): {examples} examples and {messages} message texts deleted")
        return 0

    return run_db(settings, work)
