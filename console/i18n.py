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
    # 规则 (rules)
    "rules": ("规则", "Rules"),
    "rules_intro": (
        "规则保存在标签体系中，随版本一起保存和回滚。启用前可先在历史数据上测试，测试不会写入任何数据。",
        "Rules live in the taxonomy and are versioned with it. Test a rule over history before switching it "
        "on; testing writes nothing.",
    ),
    "rule": ("规则", "Rule"),
    "trigger": ("触发", "Trigger"),
    "trigger_on": ("触发对象", "Triggered by"),
    "trigger_on_help": (
        "事件触发：事件类型（如 purchase），留空为任意事件；标签触发：被关注的标签。多个用逗号分隔。",
        "Event trigger: event kinds (e.g. purchase), empty for any; tag trigger: the watched tags. Comma separated.",
    ),
    "condition": ("条件", "Condition"),
    "when": ("条件（YAML）", "Condition (YAML)"),
    "when_help": (
        "与标签体系文件中的 when: 写法相同，留空表示总是触发。例如：all: [{lacks: 续费意向}]",
        "Written as under when: in the taxonomy file; empty means always. e.g. all: [{lacks: 续费意向}]",
    ),
    "then": ("动作（YAML）", "Actions (YAML)"),
    "then_help": (
        "与 then: 写法相同：add / remove / suggest / notify / webhook，例如：- add: 高危流失",
        "Written as under then:: add / remove / suggest / notify / webhook, e.g. - add: 高危流失",
    ),
    "actions": ("动作", "Actions"),
    "enabled": ("启用", "Enabled"),
    "disabled": ("未启用", "off"),
    "priority": ("优先级", "Priority"),
    "add_rule": ("新增规则", "Add rule"),
    "no_rules": ("当前标签体系中没有规则。", "The taxonomy in force has no rules."),
    "test_rule": ("在历史数据上测试", "Test over history"),
    "since_days": ("回看天数", "Days of history"),
    "remove_rule": ("删除规则", "Remove rule"),
    "confirm_remove_rule": ("确认删除此规则？保存后生效。", "Remove this rule? It takes effect when saved."),
    "rule_test_title": ("测试：{name}", "Test: {name}"),
    "rule_removal_title": ("删除规则：{name}", "Remove rule: {name}"),
    "rule_test_scope": (
        "已按“启用”测试，覆盖 {customers} 位客户、{messages} 条消息"
        "（近 {days} 天的事件、消息与标签变化），未写入任何数据。",
        "Tested as if switched on over {customers} customers and {messages} messages (events, messages and tag "
        "changes of the last {days} days); nothing was written.",
    ),
    "fired": ("触发客户数", "Customers it fires for"),
    "would_gain": ("将新增标签", "Would gain"),
    "would_lose": ("将移除标签", "Would lose"),
    "would_suggest": ("将建议标签", "Would suggest"),
    "notifications": ("通知", "Notifications"),
    "webhooks": ("Webhook 调用", "Webhook calls"),
    "webhook_defs": ("Webhook 地址", "Webhooks"),
    "url": ("地址", "URL"),
    "url_env": ("地址环境变量", "URL variable"),
    "secret_env": ("签名密钥环境变量", "Signing secret variable"),
    "webhooks_unconfigured": ("未配置地址（不会发送）", "not configured (would not be sent)"),
    "facts": ("满足的条件", "Facts"),
    "customer": ("客户", "Customer"),
    "rule_fires_none": (
        "在这段历史上，此规则不会对任何客户触发。",
        "Over this history the rule fires for no customer.",
    ),
    "rule_saved": ("已保存为版本 {n}。", "Saved as version {n}."),
    "rule_save_off": (
        "此规则未启用：保存后不会运行，可稍后编辑并启用。",
        "This rule is off: saved, it does not run until you switch it on.",
    ),
    "rt_daily": ("每天", "daily"),
    "rt_message": ("收到消息时", "on a message"),
    "rt_event": ("事件：{kinds}", "event: {kinds}"),
    "rt_any_event": ("任意事件", "any event"),
    "rt_tag": ("标签变化：{tags}", "tag change: {tags}"),
    "rc_and": (" 且 ", " and "),
    "rc_or": (" 或 ", " or "),
    "rc_not": ("并非 {c}", "not {c}"),
    "rc_always": ("总是", "always"),
    "rc_has": ("持有标签 {tag}", "holds {tag}"),
    "rc_min_days": ("（至少 {n} 天）", " (at least {n} days)"),
    "rc_max_days": ("（至多 {n} 天）", " (at most {n} days)"),
    "rc_lacks": ("没有标签 {tag}", "lacks {tag}"),
    "rc_message_tag": ("本条消息匹配 {tag}", "the message matched {tag}"),
    "rc_events_count": ("近 {days} 天 {kind} 事件次数 {cmp}", "{kind} events in {days} days {cmp}"),
    "rc_events_sum": ("近 {days} 天 {kind} 金额合计 {cmp}", "{kind} amounts in {days} days add up to {cmp}"),
    "rc_field_in": ("{name} 为 {values}", "{name} is {values}"),
    "rc_field_value": ("{name} {cmp}", "{name} {cmp}"),
    "rc_field_within": ("{name} 在 {n} 天内", "{name} within {n} days"),
    "rc_field_month_this": ("{name} 在本月", "{name} this month"),
    "rc_field_month_next": ("{name} 在下月", "{name} next month"),
    "rc_silent": ("未联系天数 {cmp}", "days without contact {cmp}"),
    "rc_churn": ("流失评分 {cmp}", "churn score {cmp}"),
    "ra_add": ("添加 {tag}", "add {tag}"),
    "ra_ttl": ("（{n} 天有效）", " ({n} days)"),
    "ra_contacts": ("（对联系人）", " (to contacts)"),
    "ra_remove": ("移除 {tag}", "remove {tag}"),
    "ra_suggest": ("建议 {tag}", "suggest {tag}"),
    "ra_notify": ("通知 {who}", "notify {who}"),
    "ra_managers": ("经理", "managers"),
    "ra_webhook": ("调用 Webhook {name}", "call webhook {name}"),
    # 关键词候选 (keyword candidates)
    "keyword_candidates": ("关键词候选", "Keyword candidates"),
    "keywords_intro": (
        "根据已采纳、已拒绝和未打标的消息，为每个标签挖掘出的候选关键词。支持度：含该词的正例消息数；准确率：历史上含该词的已标注消息中属于该标签的比例。示例已隐去个人信息。",
        "Words mined per tag from accepted, rejected and untagged messages. Support: positive messages holding "
        "the word; precision: of the labelled messages holding it, the share for the tag. Examples are masked.",
    ),
    "word": ("候选词", "Word"),
    "support": ("支持度", "Support"),
    "precision": ("准确率", "Precision"),
    "positives": ("正例 {n} 条", "{n} positive messages"),
    "add_keyword": ("添加为关键词", "Add as keyword"),
    "add_keyword_label": ("将“{word}”添加为“{tag}”的关键词", "Add “{word}” as a keyword of “{tag}”"),
    "no_candidates": (
        "暂无候选：还没有足够的已采纳或已拒绝的建议。",
        "No candidates yet: not enough accepted or rejected suggestions.",
    ),
    "no_positives": ("以下标签还没有正例：{tags}", "Tags without positive messages yet: {tags}"),
    "keyword_added": (
        "已将“{word}”添加为“{tag}”的关键词，当前为版本 {n}。",
        "Added “{word}” as a keyword of “{tag}”; version {n} is now in force.",
    ),
    "keyword_already": (
        "“{word}”已是“{tag}”的关键词，未做更改。",
        "“{word}” is already a keyword of “{tag}”; nothing changed.",
    ),
    "all_tags": ("全部标签", "All tags"),
    "filter": ("筛选", "Filter"),
    "computed_at": ("计算于 {at}（每分钟刷新）", "Computed at {at} (refreshed every minute)"),
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
