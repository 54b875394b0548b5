"""Default false friends: compounds that contain a common keyword but mean something else.

A keyword occurrence strictly inside one of these phrases does not count (对比 in 对比度 is display contrast,
生气 in 生气勃勃 is vitality, 紧急 in 紧急联系人 is an emergency contact). Each tag's `exclude` adds its own.
"""

from __future__ import annotations

DEFAULT_FALSE_FRIENDS: tuple[str, ...] = (
    # 对比 (competitor comparison) vs picture contrast
    "对比度",
    "对比色",
    "高对比",
    # 生气 (angry) vs vitality
    "生气勃勃",
    "有生气",
    "没生气",
    # 紧急 (urgent ticket) vs emergency facilities and "not urgent"
    "紧急联系人",
    "紧急联络人",
    "紧急出口",
    "紧急避险",
    "紧急制动",
    "不紧急",
    "不太紧急",
    "并不紧急",
    # 坏了 (broken) used as "extremely"
    "气坏了",
    "累坏了",
    "饿坏了",
    "乐坏了",
    "急坏了",
    "吓坏了",
    "忙坏了",
    "高兴坏了",
    # 试用 (product trial) vs an employee's probation period
    "试用期员工",
    "员工试用期",
    "试用期工资",
    "试用期考核",
    "试用期满",
    "过了试用期",
    # 上门 (on-site visit) vs a husband marrying into the wife's family, couriers and unwelcome callers
    "上门女婿",
    "送货上门",
    "上门取件",
    "上门揽收",
    "找上门",
    # 价格 in a price war is market talk, not a price question
    "价格战",
    # 接口/对接 as the contact person of a company
    "接口人",
    "对接人",
    # 合同 about employment, not a sales contract
    "合同工",
    "劳动合同",
    # 垃圾 as rubbish, not an insult
    "垃圾桶",
    "垃圾分类",
    "垃圾袋",
    "垃圾邮件",
    "垃圾短信",
    # interest that is denied
    "不感兴趣",
    "没有兴趣",
    "不太感兴趣",
    # English idioms
    "trial and error",
    "at any price",
)
