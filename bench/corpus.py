"""Repeatable benchmark corpus: seeded mixed Chinese/English chat messages and generated taxonomies."""

from __future__ import annotations

import os
import random
from functools import lru_cache

import jieba

from tagging.taxonomy import Dimension, TagDef, Taxonomy

_CLAUSES_ZH = (
    "你好，在吗",
    "请问你们的企业版价格是多少",
    "我们公司大概有五十个人在用",
    "麻烦发一份报价单给我",
    "上次买的设备坏了，需要维修",
    "我不需要退款，换一个新的就行",
    "为什么到现在还没退款",
    "这个问题很紧急，请加急处理",
    "合同我们这边已经盖章了",
    "下周三可以安排一次现场演示吗",
    "我们老板想了解一下你们的方案",
    "续费的话有没有优惠",
    "试用账号快到期了",
    "谢谢，收到",
    "好的，我跟领导汇报一下",
    "今天天气不错，周末去爬山了",
    "发票抬头写我们公司全称",
    "这个功能和别家比起来怎么样",
    "货款已经打过去了，请查收",
    "明天上午十点开会讨论需求",
    "你们的客服响应太慢了",
    "显示器的对比度可以调高一点吗",
    "我们是在展会上认识的",
    "培训机构那边也想用",
    "收到，辛苦了",
    "能不能便宜一点",
    "帮我查一下订单物流",
    "系统登录不了，一直报错",
    "账期能不能放宽到九十天",
    "我们还在内部评估，不着急",
)
_CLAUSES_EN = (
    "can you send me a quote",
    "we need an API for our CRM",
    "the device is broken, please repair it",
    "I want a refund asap",
    "thanks, talk tomorrow",
    "our capital budget is limited this year",
    "is there a trial version",
    "let's schedule a demo next week",
    "the contract renewal is due in March",
    "no need to hurry",
)
_NAMES = ("张总", "李经理", "王工", "陈老师", "小刘", "Amy", "Tom", "赵姐")
_TAILS = ("", "", "", "。", "！", "？", "~", "哈哈", "[微笑]", " 谢谢")


def messages(count: int, seed: int = 20240601) -> list[str]:
    """`count` chat messages, mostly Chinese, some English or mixed, identical for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            pool = _CLAUSES_EN if rng.random() < 0.15 else _CLAUSES_ZH
            parts.append(rng.choice(pool))
        text = "，".join(parts)
        if rng.random() < 0.3:
            text = rng.choice(_NAMES) + "，" + text
        if rng.random() < 0.1:
            text += f" 订单号{rng.randint(100000, 999999)}"
        out.append(text + rng.choice(_TAILS))
    return out


@lru_cache(maxsize=1)
def _dictionary_words() -> tuple[str, ...]:
    """Two-to-four character words of jieba's bundled dictionary, in file order."""
    path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    words = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word = line.split(" ", 1)[0]
            if 2 <= len(word) <= 4 and all("\u4e00" <= ch <= "\u9fff" for ch in word):
                words.append(word)
    return tuple(words)


def _coined_words(count: int, rng: random.Random, known: set[str]) -> list[str]:
    """Made-up two-to-four character words (product and project names) that jieba does not know."""
    alphabet = "云智通达星辰海数联科信安盛华宇创新源泰和恒瑞博远卓越"
    words: set[str] = set()
    while len(words) < count:
        word = "".join(rng.choice(alphabet) for _ in range(rng.choice((2, 3, 4))))
        if word not in known:
            words.add(word)
    return sorted(words)


def taxonomy(keyword_count: int, seed: int = 7, per_tag: int = 10) -> Taxonomy:
    """A five-dimension taxonomy of `keyword_count` keywords for speed runs.

    It holds the built-in taxonomy's keywords (so the corpus really hits it), then fills up with real
    jieba words, coined words jieba does not know, and one Latin keyword in twenty.
    """
    from tagging.builtin import load_builtin

    rng = random.Random(seed)
    builtin = list(dict.fromkeys(k for tag in load_builtin().iter_tags() for k in tag.keywords))
    words = builtin[:keyword_count]
    known = set(_dictionary_words()) | set(words)
    rest = keyword_count - len(words)
    latin = [f"sku{index}x" for index in range(rest // 20)]
    coined = _coined_words((rest - len(latin)) // 2, rng, known)
    real = rng.sample(sorted(known - set(words) - set(coined)), rest - len(latin) - len(coined))
    words += latin + coined + real
    keys = ("basic", "value", "behavior", "stage", "risk")
    tags: dict[str, list[TagDef]] = {key: [] for key in keys}
    for number, start in enumerate(range(0, keyword_count, per_tag)):
        key = keys[number % len(keys)]
        name = f"标签{number:05d}"
        tags[key].append(
            TagDef(name=name, dimension=key, path=(name,), keywords=tuple(words[start : start + per_tag]))
        )
    dimensions = tuple(Dimension(key=key, name=key, tags=tuple(tags[key])) for key in keys)
    return Taxonomy(version=1, dimensions=dimensions)
