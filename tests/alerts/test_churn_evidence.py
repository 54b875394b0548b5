"""The 高危流失 event's evidence, masked sentence by sentence, equals masking the whole note."""

from __future__ import annotations

import random

from core.alerts.jobs import churn_tag_evidence
from core.alerts.selection import ChurnAssessment, Reason, churn_evidence
from core.tags.assignments import clean_evidence

# Characters that make or break personal numbers: digits (ASCII and full-width), group separators, the
# ID check X, a plus sign, the note's own separator and plain text.
ALPHABET = "0123456789０１２３４５６７８９ -+Xx；;（）天合同已于"
SAMPLES = [
    "合同3天后到期（2026-12-09），未续费",
    "客户电话13812345678",
    "身份证11010519491231002X",
    "卡号6222 0212 3456 7890 128",
    "+86 138-1234-5678",
    "１３８１２３４５６７８",
    "13812345",
    "678",
]


def _assessment(texts: list[str]) -> ChurnAssessment:
    reasons = tuple(Reason(f"s{i}", 0.2, text) for i, text in enumerate(texts))
    return ChurnAssessment(1, "客户", "owner", "华东", 0.6, reasons, False)


def test_sentences_with_and_without_personal_numbers() -> None:
    for texts in ([], [SAMPLES[0]], SAMPLES, SAMPLES[-2:], list(reversed(SAMPLES))):
        assessment = _assessment(texts)
        assert churn_tag_evidence(assessment) == clean_evidence(churn_evidence(assessment))
    masked = churn_tag_evidence(_assessment(SAMPLES[1:2]))["note"]
    assert masked == "客户电话***********"
    # A number split across two sentences is two short runs, masked in neither way.
    assert churn_tag_evidence(_assessment(SAMPLES[-2:]))["note"] == "13812345；678"


def test_random_sentences_mask_as_the_whole_note_does() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        texts = [
            "".join(rng.choice(ALPHABET if rng.random() < 0.3 else "0123456789 -") for _ in range(rng.randint(0, 24)))
            for _ in range(rng.randint(1, 4))
        ]
        assessment = _assessment(texts)
        assert churn_tag_evidence(assessment) == clean_evidence(churn_evidence(assessment)), texts
