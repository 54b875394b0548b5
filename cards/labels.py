"""Fixed UI strings of the cards in Chinese and English (trusted text: never user input)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Lang = Literal["zh", "en"]

BOLD: Mapping[str, Any] = {"weight": "Bolder"}
SUBTLE: Mapping[str, Any] = {"isSubtle": True}
SMALL: Mapping[str, Any] = {"size": "Small"}
_LABELS: dict[str, tuple[str, str]] = {
    "more": ("还有 {n} 个", "and {n} more"),
    "no_tags": ("暂无标签", "No tags yet"),
    "show_deeper": ("显示子标签（{n}）", "Show sub-tags ({n})"),
    "hide_deeper": ("收起子标签", "Hide sub-tags"),
    "managers_only": ("仅经理可见", "Managers only"),
    "choose": ("选择", "Choose"),
    "page": ("第 {page}/{pages} 页", "Page {page} of {pages}"),
    "owner_is": ("负责人：{who}", "Owner: {who}"),
    "level_high": ("高", "High"),
    "level_mid": ("中", "Medium"),
    "level_low": ("低", "Low"),
    "snooze_note": ("点“已跟进”后 7 天内不再提醒", "“Followed up” pauses this alert for 7 days"),
    "show_rest": ("显示其余 {n} 条", "Show {n} more"),
    "hide_rest": ("收起", "Show fewer"),
    "unlisted": ("另有 {n} 个未列在此卡片中", "{n} more are not listed on this card"),
    "show_all": ("显示全部标签", "Show all tags"),
    "company": ("公司", "Company"),
    "region": ("区域", "Region"),
    "owner": ("负责人", "Owner"),
    "crm_id": ("CRM 编号", "CRM id"),
    "contract_end": ("合同到期", "Contract ends"),
    "expires_on": ("{date} 到期", "expires {date}"),
    "expires_today": ("今天到期", "expires today"),
    "expires_in": ("{n} 天后到期", "expires in {n} days"),
    "expired": ("已过期", "expired"),
    "suggested_for": ("为 {name} 建议的标签", "Suggested tags for {name}"),
    "matched": ("命中：{words}", "Matched: {words}"),
    "learned": ("模型建议：{words}", "Model suggestion: {words}"),
    "score": ("置信度 {pct}%", "confidence {pct}%"),
    "accept": ("接受", "Accept"),
    "reject": ("拒绝", "Reject"),
    "accept_all": ("全部接受", "Accept all"),
    "accepted_by": ("✅ 已接受 · {who} · {when}", "✅ Accepted by {who} · {when}"),
    "rejected_by": ("❌ 已拒绝 · {who} · {when}", "❌ Rejected by {who} · {when}"),
    "suggestion_expired": ("⌛ 已过期", "⌛ Expired"),
    "applied_for": ("已为 {name} 自动添加标签", "Tags added automatically for {name}"),
    "undo": ("撤销", "Undo"),
    "undone_by": ("↩️ 已撤销 · {who} · {when}", "↩️ Undone by {who} · {when}"),
    "search_title": ("“{query}”的搜索结果（共 {total} 个）", "Results for “{query}” ({total} in all)"),
    "search_empty": ("没有找到匹配的客户", "No customer matches"),
    "show": ("查看", "Show"),
    "previous": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "choose_title": ("有多个客户匹配“{query}”，请选择：", "Several customers match “{query}”; pick one:"),
    "refine": ("没有要找的？请输入更完整的名称。", "Not listed? Type a longer name."),
    "choose_n": ("选择 {n}", "Choose {n}"),
    "choose_card_hint": (
        "点下方卡片上的“选择 n”，即对所选客户执行原命令。",
        "Tap “Choose n” on the card below to run the command for that customer.",
    ),
    "choose_resend_hint": (
        "请重新发送命令，把客户名称换成上面列出的 CRM 编号（或完整名称），例如：",
        "Send the command again with the customer's CRM id (or full name) from the list, e.g.:",
    ),
    "resend_rest": ("（后面照原样写上要加、减的标签）", "(followed by the tags to add and remove, as before)"),
    "not_shown": ("另有 {n} 条未在此消息中列出", "{n} more are not listed in this message"),
    "see_all_hint": (
        "点提醒卡片上的“显示全部标签”分页查看",
        "Tap “Show all tags” on the alert card to page through them",
    ),
    "next_page_hint": ("点下方卡片上的“下一页”查看第 {n} 页", "Tap “Next” on the card below for page {n}"),
    "continued": ("（续）", " (continued)"),
    "help_title": ("客标 Kebiao 使用帮助", "Kebiao (客标) help"),
    "help_mention": (
        "在群聊和频道里先 @Kebiao 再写命令，例如“@Kebiao 帮助”；一对一聊天直接发送命令。",
        "In group chats and channels, address the bot with @Kebiao first, e.g. “@Kebiao help”; "
        "in a 1:1 chat just send the command.",
    ),
    "error_title": ("出错了", "Something went wrong"),
    "alert_raised": ("提醒时间 {when}", "Raised {when}"),
    "ack": ("我知道了", "Got it"),
    "snooze": ("已跟进", "Followed up"),
    "show_customer": ("查看客户", "Show customer"),
    "acked_by": ("✅ 已确认 · {who} · {when}", "✅ Acknowledged by {who} · {when}"),
    "snoozed_until": ("💤 暂停提醒至 {when}", "💤 Snoozed until {when}"),
}


def label(key: str, lang: Lang = "zh", **values: object) -> str:
    """The fixed string `key` in `lang`, with `values` filled in."""
    zh, en = _LABELS[key]
    return (zh if lang == "zh" else en).format(**values)


def label_runs(
    key: str, lang: Lang, slot: str, value: dict[str, Any], style: Mapping[str, Any] | None = None, **values: object
) -> list[dict[str, Any]]:
    """The fixed string `key` as TextRuns (with `style`), the run `value` standing in for `{slot}`."""
    zh, en = _LABELS[key]
    before, _, after = (zh if lang == "zh" else en).partition("{" + slot + "}")
    props = dict(style or {})
    runs = [{"type": "TextRun", "text": before.format(**values), **props}, value]
    runs.append({"type": "TextRun", "text": after.format(**values), **props})
    return [r for r in runs if r["text"]]


def aside(note: str, lang: Lang = "zh") -> str:
    """A parenthetical after a value: full-width brackets in Chinese, ' (…)' in English."""
    return f"（{note}）" if lang == "zh" else f" ({note})"
