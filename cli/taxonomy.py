"""`kebiao taxonomy validate|import|export`: the tag taxonomy file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import Verbs, initial_taxonomy, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database
    from tagging.taxonomy import Taxonomy


def register(verbs: Verbs) -> None:
    """The `kebiao taxonomy ACTION` group."""
    from tagging.builtin import TEMPLATES

    group = verbs.add_parser(
        "taxonomy",
        help="validate, import or export the tag taxonomy",
        description="Work with taxonomy files (YAML or JSON; the format is described in docs/taxonomy.md).",
    )
    sub = group.add_subparsers(dest="taxonomy_action", metavar="ACTION", required=True)
    validate = sub.add_parser(
        "validate",
        help="check a taxonomy file and list every problem",
        description="Check FILE (.yaml, .yml or .json). Prints a summary and exits 0 when valid; otherwise "
        "prints every problem as FILE:PATH: REASON on stderr and exits 1.",
    )
    validate.add_argument("file", metavar="FILE", help="taxonomy file to check")
    validate.add_argument(
        "--template",
        metavar="NAME",
        choices=TEMPLATES,
        help=f"also check that FILE merges over the built-in taxonomy with this industry template "
        f"({', '.join(TEMPLATES)})",
    )
    validate.set_defaults(handler=cmd_validate)
    imp = sub.add_parser(
        "import",
        help="store a taxonomy file as the new current version",
        description="Validate FILE and store it in the database (KEBIAO_DATABASE_URL) as a new taxonomy "
        "version; tags removed from the taxonomy stay on customers and are listed. Exits 1 listing every problem.",
    )
    imp.add_argument(
        "file", metavar="FILE", nargs="?", help="taxonomy file (.yaml, .yml or .json); optional with --template"
    )
    imp.add_argument(
        "--template",
        metavar="NAME",
        choices=TEMPLATES,
        help="import the built-in taxonomy + this industry template; with FILE, merge FILE over them",
    )
    imp.set_defaults(handler=cmd_import)
    export = sub.add_parser(
        "export",
        help="write the current taxonomy as YAML or JSON",
        description="Write the database's current taxonomy (to stdout, or --out FILE).",
    )
    export.add_argument("--format", choices=("yaml", "json"), default="yaml", help="output format (default yaml)")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(handler=cmd_export)
    add = sub.add_parser(
        "add-keywords",
        help="add keywords to one tag as a new taxonomy version",
        description="Add WORD... to TAG's keywords (TAG may be written dimension:tag) in the taxonomy in force and "
        "store the result as a new version; words the tag already has are skipped. The new taxonomy is checked "
        "like a file; problems are listed and nothing is stored. `kebiao learn keywords` proposes candidates.",
    )
    add.add_argument("tag", metavar="TAG", help="tag name, or dimension:tag")
    add.add_argument("words", metavar="WORD", nargs="+", help="keywords to add")
    add.set_defaults(handler=cmd_add_keywords)


def _load(file: str | None, template: str | None) -> Taxonomy:
    """FILE, the built-in taxonomy + TEMPLATE, or FILE merged over them; raises TaxonomyError."""
    from tagging.builtin import load_builtin
    from tagging.loader import load_taxonomy_file, merge_taxonomies

    if file is None:
        return load_builtin(template)
    taxonomy = load_taxonomy_file(file)
    if template is not None:
        taxonomy = merge_taxonomies(load_builtin(template), taxonomy, source=file)
    return taxonomy


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Check a taxonomy file (optionally merged over a built-in template); list every problem."""
    from tagging.loader import TaxonomyError

    try:
        taxonomy = _load(args.file, args.template)
    except TaxonomyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    over = f" (merged over built-in + {args.template})" if args.template else ""
    tags = sum(1 for _ in taxonomy.iter_tags())
    print(
        f"{args.file}: valid{over}: {len(taxonomy.dimensions)} dimensions, {tags} tags, "
        f"{taxonomy.keyword_count} keywords"
    )
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Store a taxonomy file as the new current version and report kept tags it no longer contains."""
    from datetime import UTC, datetime

    from core.taxonomy.store import import_taxonomy
    from tagging.loader import TaxonomyError

    if args.file is None and args.template is None:
        print("kebiao taxonomy import: give FILE, --template NAME, or both", file=sys.stderr)
        return 2
    try:
        taxonomy = _load(args.file, args.template)
    except TaxonomyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    origin = " over ".join(
        part for part in (args.file, f"built-in + {args.template}" if args.template else None) if part
    )

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            change = await import_taxonomy(uow, taxonomy, "cli", datetime.now(UTC), note=f"imported {origin}")
        if not change.changed:
            print(f"no change: {origin} is the same as taxonomy version {change.version.version}; nothing stored")
            return 0
        print(f"taxonomy version {change.version.version} is current ({origin})")
        for orphan in change.orphaned:
            print(
                f"kept: {orphan.dimension}/{orphan.tag} is no longer in the taxonomy but {orphan.customers} "
                "customers still hold it"
            )
        return 0

    return run_db(settings, work)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the current taxonomy as YAML or JSON."""
    from tagging.loader import dump_taxonomy

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            # Nothing stored yet: show what the first start would load, so it can serve as a template.
            print(
                "kebiao taxonomy export: no taxonomy stored yet; writing the one the first start would load",
                file=sys.stderr,
            )
        taxonomy = current.taxonomy if current is not None else initial_taxonomy(settings)
        text = dump_taxonomy(taxonomy, args.format)
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0

    return run_db(settings, work)


def cmd_add_keywords(args: argparse.Namespace, settings: Settings) -> int:
    """Add keywords to one tag of the taxonomy in force, as a new version."""
    from datetime import UTC, datetime

    from core.taxonomy.keywords import add_keywords
    from tagging.loader import TaxonomyError
    from tagging.policy import AmbiguousTagError, UnknownTagError

    async def work(database: Database) -> int:
        try:
            async with database.unit_of_work() as uow:
                addition, change = await add_keywords(uow, args.tag, args.words, "cli", datetime.now(UTC))
        except UnknownTagError as exc:
            close = f" (did you mean {', '.join(exc.close)}?)" if exc.close else ""
            print(f"kebiao taxonomy add-keywords: no tag named {exc.name!r}{close}", file=sys.stderr)
            return 1
        except AmbiguousTagError as exc:
            print(
                f"kebiao taxonomy add-keywords: tag {exc.name!r} is in several dimensions "
                f"({', '.join(exc.dimensions)}); write dimension:tag",
                file=sys.stderr,
            )
            return 1
        except TaxonomyError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        except LookupError as exc:
            print(f"kebiao taxonomy add-keywords: {exc.args[0]}", file=sys.stderr)
            return 1
        where = f"{addition.dimension}/{addition.tag}"
        if addition.already:
            print(f"{where} already has: {', '.join(addition.already)}")
        if change is None:
            print(f"nothing added to {where}; the taxonomy is unchanged")
            return 0
        print(f"taxonomy version {change.version.version} is current: {where} gained {', '.join(addition.added)}")
        return 0

    return run_db(settings, work)
