"""Building encrypted WeCom callbacks for route tests, and a running app wired to the fake WeCom API."""

from __future__ import annotations

from pathlib import Path

from bots.wecom.crypto import WeComCrypto
from config import Settings, WeComSettings
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET

TOKEN = "kebiaoTestToken2025"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

TAXONOMY_YAML = """
version: 1
dimensions:
  - key: stage
    name: 需求阶段
    tags:
      - name: 询价客户
        keywords: [报价, 询价, 多少钱]
      - name: 售后工单
        keywords: [退款, 维修]
        auto_apply: true
  - key: value
    name: 价值等级
    exclusive: true
    tags:
      - name: VIP客户
      - name: 普通客户
  - key: channel
    name: 渠道来源
    tags:
      - name: 展会获客
      - name: 官网咨询
channels:
  expo2025: 展会获客
  website: 官网咨询
"""


def settings_for(
    tmp_path: Path,
    api_base: str,
    *,
    token: str = TOKEN,
    key: str = AES_KEY,
    corp: str = CORP_ID,
    database_url: str | None = None,
    taxonomy_yaml: str = TAXONOMY_YAML,
) -> Settings:
    """Settings of a WeCom-enabled app on the fake API and a fresh database (a SQLite file unless given)."""
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(taxonomy_yaml, encoding="utf-8")
    return Settings(
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}",
        taxonomy_path=str(taxonomy),
        scheduler_enabled=False,
        wecom=WeComSettings(
            corp_id=corp, token=token, encoding_aes_key=key, secret=SECRET, agent_id=AGENT_ID, api_base=api_base
        ),
    )


def envelope(encrypt: str, corp: str = CORP_ID) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
        f"<AgentID>{AGENT_ID}</AgentID></xml>"
    )


def signed(
    crypto: WeComCrypto, inner_xml: str, timestamp: str = "1732510200", nonce: str = "n0nce42"
) -> tuple[dict[str, str], str]:
    """(query, body) of an encrypted callback, signed like WeCom signs it."""
    encrypt = crypto.encrypt(inner_xml)
    query = {"msg_signature": crypto.signature(timestamp, nonce, encrypt), "timestamp": timestamp, "nonce": nonce}
    return query, envelope(encrypt)


def text_xml(content: str, msg_id: str = "7000001", user: str = "zhangwei", created: int = 1732510200) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>"
    )


def contact_xml(
    change: str,
    external: str = "wmABC123customer",
    user: str = "zhangwei",
    state: str | None = None,
    created: int = 1732510200,
) -> str:
    state_xml = f"<State><![CDATA[{state}]]></State>" if state else ""
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[{change}]]></ChangeType>"
        f"<UserID><![CDATA[{user}]]></UserID><ExternalUserID><![CDATA[{external}]]></ExternalUserID>{state_xml}</xml>"
    )


def card_click_xml(event_key: str, user: str = "zhangwei", task_id: str = "kb-task1", created: int = 1732510300) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{event_key}]]></EventKey>"
        f"<TaskId><![CDATA[{task_id}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>"
        f"<ResponseCode><![CDATA[rc-click-1]]></ResponseCode><AgentID>{AGENT_ID}</AgentID></xml>"
    )


def tag_event_xml(change: str = "create", tag_id: str = "etNEW1", created: int = 1732510400) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[change_external_tag]]></Event><ChangeType><![CDATA[{change}]]></ChangeType>"
        f"<Id><![CDATA[{tag_id}]]></Id><TagType><![CDATA[tag]]></TagType></xml>"
    )
