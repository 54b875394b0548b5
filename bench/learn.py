"""Learned suggestions on real customer-service tickets: `python -m bench learn [--data FILE] [--quick]`.

Data set: COCC, the Complaint Order Classification Corpus (投诉工单分类语料库) of a Chinese mobile operator's
customer service: 2,400 desensitised complaint tickets written by agents, 300 in each of 8 classes, from
https://github.com/zhng1200/COCC (file COCC.txt: one ticket, a tab, its class per line). Licence: the
authors release it for scientific research and other non-profit use only, never commercial use (README of
that repository); nothing of it is kept in this repository. Obtain it with

    git clone https://github.com/zhng1200/COCC /tmp/COCC

and run `python -m bench learn --data /tmp/COCC/COCC.txt` (or set KEBIAO_BENCH_COCC to the file).

What it measures (printed, never asserted):
1. A learning curve with k-fold simulated feedback: per fold, the other folds play the labelled decisions
   agents make over time (each ticket: its class's tag accepted, every other tag rejected, as `kebiao learn
   import` stores it). After N decisions the model is trained exactly as `kebiao learn train` does (same
   thresholds: 30 examples, 10 positives, cross-validated precision ≥ 0.8) and the held-out fold is tagged
   by keywords alone and by keywords + learned suggestions (which may also hold keyword hits back). Micro
   precision/recall/F1 over (ticket, tag) pairs, and the precision of the learned suggestions alone. The
   keywords were written for the bench taxonomy below from the class names and telecom customer-service
   vocabulary before any figure was measured.
2. `suggest` throughput on the same tickets with the model on and off (target: on ≥ 0.5× off), for the
   engine alone and for `kebiao suggest`'s path one line at a time (what a chat turn costs), and for
   `kebiao suggest` over a stream of lines (suggested a batch at a time), in CPU seconds with off and on
   interleaved; then the same for short chat-length lines, where the keyword matcher mostly stops at its first scan.
3. Training time (wall and CPU) and peak memory (process max RSS) on 100,000 labelled texts (target: under
   2 minutes), drawn with replacement from the data set (the vocabulary is the data set's; every text is
   featurised and fitted). CPU seconds are printed beside wall time: on a loaded machine wall time is mostly
   waiting for a core.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import corpus
from core.learning.suggester import MergedSuggester
from core.taxonomy.dryrun import BATCH_LINES, suggest_stream
from learning.model import LearnedModel
from learning.training import LabelledText, TrainingConfig, train
from tagging.matcher import Matcher
from tagging.taxonomy import Dimension, TagDef, Taxonomy

ENV = "KEBIAO_BENCH_COCC"
DIMENSION = "issue"

# COCC class → (Kebiao tag, keywords written for it before measuring).
TAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "费用问题": ("费用争议", ("扣费", "退费", "话费", "收费", "乱扣费", "多扣", "账单", "费用")),
    "网络问题": ("网络故障", ("信号", "网速", "上网慢", "基站", "掉线", "无信号", "信号差", "网络")),
    "业务使用问题": ("业务使用故障", ("无法使用", "不能用", "用不了", "无法连接", "打不开", "无法拨打", "收不到")),
    "业务办理问题": ("业务办理", ("办理", "过户", "销户", "补卡", "携号转网", "变更套餐", "开发票", "停机")),
    "信息安全问题": ("信息安全", ("骚扰", "垃圾短信", "诈骗", "泄露", "盗用", "骚扰电话", "冒用")),
    "营销活动问题": ("营销活动", ("活动", "优惠", "赠送", "营销", "合约", "促销", "积分", "外呼")),
    "不知情定制问题": ("不知情定制", ("不知情", "未定制", "没有订购", "莫名", "自动开通", "未经同意", "私自开通")),
    "服务问题": ("服务投诉", ("服务态度", "态度差", "工作人员", "营业员", "不满意", "推诿", "服务质量")),
}


def bench_taxonomy() -> Taxonomy:
    """One dimension of ticket types, each tag with the keywords above (suggest only, never auto)."""
    tags = tuple(
        TagDef(name=name, dimension=DIMENSION, path=(name,), keywords=keywords) for name, keywords in TAGS.values()
    )
    return Taxonomy(version=1, dimensions=(Dimension(key=DIMENSION, name="工单类型", tags=tags),))


def load(path: Path) -> list[tuple[str, str]]:
    """(ticket, Kebiao tag) pairs; a ticket seen twice is kept once."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("\t")
        if not sep or label.strip() not in TAGS:
            raise SystemExit(f"{path}:{number}: expected 'ticket<TAB>class' with one of {', '.join(TAGS)}")
        out.setdefault(text.strip(), TAGS[label.strip()][0])
    return list(out.items())


def labelled(rows: Sequence[tuple[str, str]]) -> list[LabelledText]:
    """As `kebiao learn import` stores them: the ticket's tag positive, every other tag negative."""
    names = [name for name, _ in TAGS.values()]
    return [LabelledText(text, {(DIMENSION, n): n == tag for n in names}) for text, tag in rows]


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    learned: int = 0
    learned_right: int = 0

    def add(self, got: set[str], expected: str, learned: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.tp += int(expected in got)
        self.fp += len(got - {expected})
        self.fn += int(expected not in got)
        self.learned += len(learned)
        self.learned_right += int(expected in learned)

    def prf(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return p, r, 2 * p * r / (p + r) if p + r else 0.0


def _evaluate(source: Callable[[str], list[tuple[str, str]]], test: Sequence[tuple[str, str]]) -> Counts:
    counts = Counts()
    for text, expected in test:
        found = source(text)
        counts.add({tag for tag, _ in found}, expected, {tag for tag, origin in found if origin == "learned"})
    return counts


def _suggest(engine: Matcher | MergedSuggester) -> Callable[[str], list[tuple[str, str]]]:
    return lambda text: [(s.tag, s.source) for s in engine.suggest(text)]


def curve(rows: list[tuple[str, str]], folds: int, points: Sequence[int], seed: int = 0) -> None:
    """The learning curve, averaged over folds (counts summed over folds: micro averages)."""
    taxonomy = bench_taxonomy()
    matcher = Matcher.build(taxonomy)
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    size = len(shuffled) // folds
    keyword = Counts()
    merged: dict[int, Counts] = {n: Counts() for n in points}
    enabled: dict[int, list[int]] = {n: [] for n in points}
    for fold in range(folds):
        test = shuffled[fold * size : (fold + 1) * size]
        pool = shuffled[: fold * size] + shuffled[(fold + 1) * size :]
        fold_kw = _evaluate(_suggest(matcher), test)
        for name in ("tp", "fp", "fn"):
            setattr(keyword, name, getattr(keyword, name) + getattr(fold_kw, name))
        for n in points:
            model = train(labelled(pool[:n]), [(DIMENSION, t) for t, _ in TAGS.values()], TrainingConfig()).model
            enabled[n].append(len(model.labels) if model else 0)
            fold_counts = _evaluate(_suggest(MergedSuggester(matcher, model, taxonomy)), test)
            total = merged[n]
            for name in ("tp", "fp", "fn", "learned", "learned_right"):
                setattr(total, name, getattr(total, name) + getattr(fold_counts, name))
        print(f"  fold {fold + 1}/{folds} done", file=sys.stderr, flush=True)
    kp, kr, kf = keyword.prf()
    print(
        f"\nlearning curve: {len(rows)} distinct tickets, 8 tags, {folds}-fold (each fold tagged by a model "
        "trained on N decisions from the other folds)"
    )
    print(f"keyword only:             P {kp:.3f}  R {kr:.3f}  F1 {kf:.3f}")
    print("decisions seen | keyword+learned P     R     F1  | ΔF1 vs keyword | learned P (n)        | tags learned")
    for n in points:
        p, r, f = merged[n].prf()
        counts = merged[n]
        lp = counts.learned_right / counts.learned if counts.learned else float("nan")
        tags = sum(enabled[n]) / len(enabled[n])
        print(
            f"{n:>14,} | {p:>19.3f} {r:.3f} {f:.3f} | {f - kf:>+14.3f} | {lp:>9.3f} ({counts.learned:>5,}) | "
            f"{tags:.1f}/8"
        )


def throughput(texts: Sequence[str], model: LearnedModel, what: str) -> None:
    """Messages/s with the model off (keywords) and on (merged), same lines, same run.

    Three figures: the suggestion engine alone and `kebiao suggest`'s path for one line at a time (the engine plus
    the JSON line it writes; what a chat turn costs), and `kebiao suggest` over a stream of lines, which it
    suggests a batch at a time (the learned model reads a whole batch in one numpy pass). Off and on alternate
    over blocks of lines and are timed in CPU seconds of this process, so other work on the machine does not
    favour either side.
    """
    taxonomy = bench_taxonomy()
    matcher = Matcher.build(taxonomy)
    merged = MergedSuggester(matcher, model, taxonomy)
    sink = io.StringIO()
    per_line: dict[str, Callable[[str], object]] = {
        "engine off": matcher.suggest,
        "engine on": merged.suggest,
        "suggest off": lambda text: suggest_stream(matcher, (text,), sink),
        "suggest on": lambda text: suggest_stream(merged, (text,), sink),
    }
    per_block: dict[str, Callable[[Sequence[str]], object]] = {
        "stream off": lambda block: suggest_stream(matcher, block, sink),
        "stream on": lambda block: suggest_stream(merged, block, sink),
    }
    spent = dict.fromkeys([*per_line, *per_block], 0.0)
    size = 2 * BATCH_LINES  # whole batches, off and on alternating
    for start in range(0, len(texts), size):
        block = texts[start : start + size]
        for name, run in per_line.items():
            began = time.process_time()
            for text in block:
                run(text)
            spent[name] += time.process_time() - began
        for name, run_block in per_block.items():
            began = time.process_time()
            run_block(block)
            spent[name] += time.process_time() - began
        sink.seek(0)
        sink.truncate()
    print(
        f"\nsuggest throughput over {len(texts):,} {what} (CPU seconds, off/on interleaved; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):"
    )
    labels = {
        "engine": "engine, per message",
        "suggest": "suggest, per line",
        "stream": f"suggest (batched stream, {BATCH_LINES} lines a batch)",
    }
    for kind, label in labels.items():
        off, on = len(texts) / spent[f"{kind} off"], len(texts) / spent[f"{kind} on"]
        print(
            f"  {label:<44} model off {off:>7,.0f} msg/s, on {on:>7,.0f} msg/s, ratio {on / off:.2f}x (target ≥ 0.5x)"
        )


def training_cost(rows: list[tuple[str, str]], count: int) -> LearnedModel | None:
    """Train on `count` labelled texts drawn with replacement; time and peak memory."""
    rng = random.Random(1)
    sample = [rows[rng.randrange(len(rows))] for _ in range(count)]
    data = labelled(sample)
    tags = [(DIMENSION, t) for t, _ in TAGS.values()]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    outcome = train(data, tags, TrainingConfig())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = outcome.model
    vocab = len(model.vocabulary) if model else 0
    print(
        f"\ntraining on {count:,} labelled texts (8 tags): {seconds:.1f} s wall, {cpu:.1f} s CPU (target < 120 s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); process max RSS {after / 1024:,.0f} MiB "
        f"(was {before / 1024:,.0f} MiB); vocabulary {vocab:,}; tags enabled {len(model.labels) if model else 0}/8"
    )
    return model


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench learn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get(ENV), help=f"COCC.txt (or set {ENV})")
    parser.add_argument("--quick", action="store_true", help="3 folds, fewer curve points, 20,000 for the timing")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-curve", action="store_true", help="only the training cost and the throughput")
    options = parser.parse_args(argv)
    if not options.data or not Path(options.data).is_file():
        print(
            "bench learn needs the COCC data set (research and non-profit use only; not part of this repository):\n"
            "  git clone https://github.com/zhng1200/COCC /tmp/COCC\n"
            f"  python -m bench learn --data /tmp/COCC/COCC.txt    (or {ENV}=/tmp/COCC/COCC.txt)",
            file=sys.stderr,
        )
        return 2
    rows = load(Path(options.data))
    folds = 3 if options.quick else options.folds
    points: tuple[int, ...] = (100, 300, 600, 1200) if options.quick else (50, 100, 200, 300, 400, 600, 1000, 1500)
    points = tuple(p for p in points if p <= len(rows) - len(rows) // folds)
    if not options.no_curve:
        curve(rows, folds, points)
    model = training_cost(rows, 20_000 if options.quick else 100_000)
    if model is not None:
        texts = [text for text, _ in rows]
        throughput(texts * (1 if options.quick else 3), model, "COCC tickets (median 107 characters)")
        chat = corpus.messages(5_000 if options.quick else 20_000)
        throughput(chat, model, "chat-length messages from bench/corpus.py")
    return 0
