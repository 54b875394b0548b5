"""A small message catalogue: Chinese first, English when the browser prefers it (Accept-Language)."""

from __future__ import annotations

from collections.abc import Callable

ZH, EN = "zh", "en"

# key -> (Chinese, English); "{name}" placeholders are filled by keyword.
MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("客标管理", "Kebiao console"),
    "skip": ("跳到正文", "Skip to content"),
    "nav": ("主导航", "Main navigation"),
    "taxonomy": ("标签体系", "Taxonomy"),
    "customers": ("客户", "Customers"),
    "reports": ("报表", "Reports"),
    "signout": ("退出", "Sign out"),
    "signed_in_as": ("当前用户", "Signed in as"),
    "signin": ("登录", "Sign in"),
    "signin_title": ("登录客标管理", "Sign in to the Kebiao console"),
    "signin_teams": (
        "在 Teams 中打开“客标管理”标签页即可自动登录。",
        "Open the “客标管理” tab in Teams to sign in automatically.",
    ),
    "signin_wecom": ("企业微信登录", "Sign in with WeCom"),
    "signin_token": ("管理员令牌", "Admin token"),
    "signin_token_help": ("运维人员使用 KEBIAO_ADMIN_TOKEN 登录。", "Operators sign in with KEBIAO_ADMIN_TOKEN."),
    "signin_failed": ("登录失败：{reason}", "Sign-in failed: {reason}"),
    "wrong_token": ("令牌不正确", "wrong token"),
    "no_method": ("尚未配置任何登录方式，请联系管理员。", "No sign-in method is configured; ask your administrator."),
    "teams_signing_in": ("正在通过 Teams 登录…", "Signing in through Teams…"),
    "teams_failed": (
        "Teams 登录失败。请在 Teams 客户端中打开此页面，或使用浏览器登录。",
        "Teams sign-in failed. Open this page in the Teams client, or sign in from a browser.",
    ),
    "refused_title": ("抱歉，您暂时无法使用管理后台", "Sorry, the console is for managers"),
    "refused_body": (
        "客标管理后台仅对经理和管理员开放。如需访问，请联系管理员为您开通经理角色。您仍可在聊天中正常使用客标。",
        "The Kebiao console is open to managers and administrators. Ask an administrator for the manager "
        "role if you need it; you can keep using Kebiao in chat as usual.",
    ),
    "csrf_title": ("请求已被拒绝", "Request refused"),
    "csrf_body": (
        "安全校验失败（缺少或错误的 CSRF 令牌）。请刷新页面后重试。",
        "The security check failed (missing or wrong CSRF token). Reload the page and try again.",
    ),
    "not_found": ("未找到", "Not found"),
    "back": ("返回", "Back"),
    "version": ("版本", "Version"),
    "version_n": ("版本 {n}", "Version {n}"),
    "current": ("当前", "current"),
    "history": ("历史版本", "History"),
    "dimension": ("维度", "Dimension"),
    "tag": ("标签", "Tag"),
    "tags": ("标签", "Tags"),
    "parent": ("上级标签", "Parent tag"),
    "none_top": ("（无，顶级标签）", "(none: top level)"),
    "name": ("名称", "Name"),
    "color": ("颜色", "Colour"),
    "icon": ("图标（一个表情）", "Icon (one emoji)"),
    "regions": ("适用区域（留空为全部区域）", "Regions (empty: every region)"),
    "description": ("说明 / 使用指引", "Description / usage guide"),
    "keywords": ("关键词", "Keywords"),
    "keywords_help": ("用逗号、顿号或换行分隔", "Separate with commas or new lines"),
    "exclude": ("排除词", "Excluded phrases"),
    "ttl_days": ("有效期（天）", "Expiry (days)"),
    "auto_apply": ("自动打标（无需确认）", "Apply automatically (no confirmation)"),
    "managers_only": ("仅经理可见", "Managers only"),
    "exclusive": ("互斥", "Exclusive"),
    "edit": ("编辑", "Edit"),
    "add_tag": ("新增标签", "Add tag"),
    "retire": ("停用", "Retire"),
    "merge": ("合并", "Merge"),
    "merge_into": ("合并到", "Merge into"),
    "preview": ("预览影响", "Preview"),
    "save": ("保存为新版本", "Save as new version"),
    "rollback": ("回滚到此版本", "Roll back to this version"),
    "problems": ("请修正以下问题", "Please fix these problems"),
    "preview_title": ("预览：草稿在最近 {n} 条消息上的效果", "Preview: the draft over the last {n} messages"),
    "preview_summary": ("{changed} 条消息的标签会变化", "{changed} messages would change tags"),
    "gained": ("新增", "gains"),
    "lost": ("减少", "loses"),
    "examples": ("示例", "Examples"),
    "message": ("消息", "Message"),
    "no_change": ("这些消息的标签都不会变化。", "No message would change tags."),
    "changes": ("变更", "Changes"),
    "added": ("新增", "added"),
    "removed": ("删除", "removed"),
    "moved": ("移动", "moved"),
    "changed": ("修改", "changed"),
    "field": ("字段", "Field"),
    "before": ("之前", "Before"),
    "after": ("之后", "After"),
    "by": ("操作人", "By"),
    "at": ("时间", "When"),
    "note": ("备注", "Note"),
    "archive": ("已停用 / 已合并的标签", "Retired and merged tags"),
    "saved": ("已保存为版本 {n}。", "Saved as version {n}."),
    "rolled_back": ("已回滚，当前为版本 {n}。", "Rolled back; version {n} is now in force."),
    "retired_done": ("已停用，当前为版本 {n}。", "Retired; version {n} is now in force."),
    "merged_done": ("已合并，当前为版本 {n}。", "Merged; version {n} is now in force."),
    "conflict": ("保存前已有人保存了版本 {n}，请重新预览。", "Someone saved version {n} meanwhile; preview again."),
    "confirm_retire": (
        "确认停用？停用后不再匹配，已有的客户标签保留为“已停用”。",
        "Retire? It stops matching; customers keep it, shown as retired.",
    ),
    "search": ("搜索", "Search"),
    "search_by": ("搜索方式", "Search by"),
    "by_name": ("名称", "Name"),
    "by_expr": ("标签表达式", "Tag expression"),
    "expr_help": ("例如：VIP客户 AND 询价客户 AND NOT 沉默客户", "e.g. VIP客户 AND 询价客户 AND NOT 沉默客户"),
    "results": ("共 {total} 位客户", "{total} customers"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "company": ("公司", "Company"),
    "owner": ("负责人", "Owner"),
    "region": ("区域", "Region"),
    "contract_end": ("合同到期", "Contract ends"),
    "timeline": ("标签时间线", "Tag timeline"),
    "evidence": ("依据", "Evidence"),
    "source": ("来源", "Source"),
    "conversations": ("关联会话", "Linked conversations"),
    "no_conversations": ("暂无关联会话", "No linked conversations"),
    "add_tags": ("添加标签", "Add tags"),
    "remove": ("移除", "Remove"),
    "apply": ("添加", "Add"),
    "tag_names": ("标签名（多个用逗号分隔）", "Tag names (comma separated)"),
    "retired_tag": ("已停用", "retired"),
    "expires": ("到期", "expires"),
    "tag_changes_done": ("标签已更新。", "Tags updated."),
    "usage": ("标签使用趋势（近 30 天新增）", "Tag usage (added, last 30 days)"),
    "accept_rate": ("建议采纳率", "Suggestion accept rate"),
    "cooccurrence": ("标签组合分析（共同持有的客户数）", "Tag combinations (customers holding both)"),
    "tag_table": ("标签健康度", "Tag health"),
    "holders": ("持有客户", "Holders"),
    "added_30": ("近30天新增", "Added (30 d)"),
    "accepted": ("采纳", "Accepted"),
    "rejected": ("拒绝", "Rejected"),
    "rate": ("采纳率", "Rate"),
    "last_used": ("最近使用", "Last used"),
    "retire_candidates": ("建议停用", "Retire candidates"),
    "merge_candidates": ("建议合并", "Merge candidates"),
    "near_cap": ("接近标签上限的客户", "Customers near the tag cap"),
    "outbox": ("提醒发件箱", "Alert outbox"),
    "state": ("状态", "State"),
    "count": ("数量", "Count"),
    "oldest": ("最早", "Oldest"),
    "reason": ("原因", "Reason"),
    "download_csv": ("下载 CSV", "Download CSV"),
    "never": ("从未", "never"),
    "none": ("暂无", "None"),
    "never_used": ("从未使用", "never used"),
    "idle": ("长期未使用", "idle"),
    "overlap": ("持有客户高度重叠", "holders overlap"),
    "similar_name": ("名称相近", "similar names"),
    "chart_fallback": (
        "图表需要 JavaScript；数据见下方表格。",
        "Charts need JavaScript; the tables below hold the data.",
    ),
    "menu": ("菜单", "Menu"),
}


def choose_language(accept_language: str | None) -> str:
    """English when the browser ranks English above Chinese (or Chinese is absent); Chinese otherwise."""
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not tag:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        lang = tag.split("-")[0]
        if lang in (ZH, EN) and q > 0 and (best is None or q > best[0]):
            best = (q, lang)
    return best[1] if best else ZH


def translator(lang: str) -> Callable[..., str]:
    """`t(key, **values)` in the language; an unknown key shows itself (visible in tests, never a crash)."""
    index = 1 if lang == EN else 0

    def t(key: str, **values: object) -> str:
        pair = MESSAGES.get(key)
        text = pair[index] if pair else key
        return text.format(**values) if values else text

    return t
