"""WeComClient against the fake WeCom API on 127.0.0.1: tokens, retries, errors and each method."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bots.wecom.client import BUSY_ERRCODES, WeComApiError, WeComClient, WeComHttpError
from bots.wecom.replies import CardButton, button_interaction_card, markdown_message, template_card_message
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    fake_wecom: FakeWeComApi, sleeps: list[float], clock: FakeClock
) -> AsyncIterator[WeComClient]:
    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with aiohttp.ClientSession() as session:
        yield WeComClient(
            session,
            CORP_ID,
            SECRET,
            AGENT_ID,
            fake_wecom.api_base,
            sleep=record_sleep,
            clock=clock,
            max_attempts=4,
        )


async def test_token_is_fetched_once_and_shared(client: WeComClient, fake_wecom: FakeWeComApi) -> None:
    payload = markdown_message("**客户** ABC公司", to_users=["zhangwei"])
    await client.send_message(payload)
    await client.send_message(payload)
    assert fake_wecom.token_fetches == 1
    assert {c.token for c in fake_wecom.calls_to("message/send")} == {"TOKEN-1"}


async def test_concurrent_callers_share_one_refresh(client: WeComClient, fake_wecom: FakeWeComApi) -> None:
    payload = markdown_message("并发", to_users=["zhangwei"])
    await asyncio.gather(*(client.send_message(payload) for _ in range(8)))
    assert fake_wecom.token_fetches == 1
    assert len(fake_wecom.calls_to("message/send")) == 8


async def test_token_is_refreshed_before_it_expires(
    client: WeComClient, fake_wecom: FakeWeComApi, clock: FakeClock
) -> None:
    await client.access_token()
    clock.now += 7200 - 301
    assert await client.access_token() == "TOKEN-1"
    assert fake_wecom.token_fetches == 1
    clock.now += 2  # now inside the 300 s safety margin: fetched again (WeCom answers with the token it holds)
    assert await client.access_token() == "TOKEN-1"
    assert fake_wecom.token_fetches == 2


@pytest.mark.parametrize("errcode", [42001, 40014])
async def test_expired_token_is_refreshed_and_the_call_retried_once(
    client: WeComClient, fake_wecom: FakeWeComApi, errcode: int, sleeps: list[float]
) -> None:
    await client.access_token()
    fake_wecom.expire_token_once(errcode)
    result = await client.send_message(markdown_message("续期", to_users=["lina"]))
    assert result["msgid"]
    assert [c.token for c in fake_wecom.calls_to("message/send")] == ["TOKEN-1", "TOKEN-2"]
    assert sleeps == []


async def test_token_error_twice_in_a_row_is_raised(client: WeComClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.fail("message/send", 40014, "invalid access_token", times=2)
    with pytest.raises(WeComApiError) as info:
        await client.send_message(markdown_message("x", to_users=["lina"]))
    assert info.value.errcode == 40014 and info.value.api == "message/send"
    assert len(fake_wecom.calls_to("message/send")) == 2


@pytest.mark.parametrize("errcode", [45009, 45033, -1])
async def test_busy_errors_back_off_and_succeed(
    client: WeComClient, fake_wecom: FakeWeComApi, sleeps: list[float], errcode: int
) -> None:
    fake_wecom.rate_limit("message/send", times=2, errcode=errcode)
    await client.send_message(markdown_message("限流", to_users=["lina"]))
    assert len(fake_wecom.calls_to("message/send")) == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # exponential ceiling, jittered


async def test_busy_errors_give_up_after_the_bound(
    client: WeComClient, fake_wecom: FakeWeComApi, sleeps: list[float]
) -> None:
    fake_wecom.rate_limit("message/send", times=10)
    with pytest.raises(WeComApiError) as info:
        await client.send_message(markdown_message("限流", to_users=["lina"]))
    assert info.value.errcode == 45009
    assert len(fake_wecom.calls_to("message/send")) == 4 and len(sleeps) == 3


@pytest.mark.parametrize("status", [429, 502, 503])
async def test_http_errors_are_retried(
    client: WeComClient, fake_wecom: FakeWeComApi, sleeps: list[float], status: int
) -> None:
    fake_wecom.http_error("externalcontact/get_corp_tag_list", status, times=1)
    assert await client.get_corp_tag_list() == []
    assert len(sleeps) == 1


async def test_persistent_http_error_becomes_a_wecom_api_error(
    client: WeComClient, fake_wecom: FakeWeComApi
) -> None:
    fake_wecom.http_error("externalcontact/get_corp_tag_list", 502, times=10)
    with pytest.raises(WeComApiError, match="HTTP 502") as info:
        await client.get_corp_tag_list()
    assert info.value.errcode == -1


@pytest.mark.parametrize("status", [400, 403, 404, 405])
async def test_client_http_errors_are_permanent_and_name_status_and_path(
    client: WeComClient, fake_wecom: FakeWeComApi, sleeps: list[float], status: int
) -> None:
    fake_wecom.http_error("externalcontact/get_corp_tag_list", status, times=10)
    with pytest.raises(WeComHttpError) as info:
        await client.get_corp_tag_list()
    assert info.value.status == status and info.value.errcode not in BUSY_ERRCODES
    assert f"HTTP {status}" in str(info.value) and "/externalcontact/get_corp_tag_list" in str(info.value)
    assert sleeps == [] and len(fake_wecom.calls_to("externalcontact/get_corp_tag_list")) == 1  # never retried


async def test_a_wrong_api_base_is_a_clear_permanent_error(fake_wecom: FakeWeComApi, sleeps: list[float]) -> None:
    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    wrong = fake_wecom.api_base.removesuffix("/cgi-bin")  # forgot the /cgi-bin part: every path is a 404
    async with aiohttp.ClientSession() as session:
        client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, wrong, sleep=record_sleep)
        with pytest.raises(WeComHttpError, match=r"HTTP 404 from the API path /gettoken.*WECOM_API_BASE") as info:
            await client.send_message(markdown_message("你好", to_users=["zhangwei"]))
    assert sleeps == [] and SECRET not in str(info.value)


async def test_other_errcodes_are_raised_at_once(
    client: WeComClient, fake_wecom: FakeWeComApi, sleeps: list[float]
) -> None:
    fake_wecom.fail("message/send", 81013, "user & party & tag all invalid")
    with pytest.raises(WeComApiError) as info:
        await client.send_message(markdown_message("x", to_users=["nobody"]))
    assert (info.value.errcode, info.value.errmsg, info.value.api) == (
        81013,
        "user & party & tag all invalid",
        "message/send",
    )
    assert sleeps == []


async def test_unreachable_api_is_a_typed_error_without_the_token(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with aiohttp.ClientSession() as session:
        client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, "http://127.0.0.1:9/cgi-bin", sleep=no_sleep)
        with caplog.at_level(logging.DEBUG), pytest.raises(WeComApiError, match="network error") as info:
            await client.access_token()
    assert info.value.api == "gettoken"
    assert SECRET not in str(info.value) and SECRET not in caplog.text


async def test_wrong_secret_is_reported(fake_wecom: FakeWeComApi) -> None:
    async with aiohttp.ClientSession() as session:
        client = WeComClient(session, CORP_ID, "wrong", AGENT_ID, fake_wecom.api_base)
        with pytest.raises(WeComApiError) as info:
            await client.send_message(markdown_message("x", to_users=["u"]))
    assert (info.value.errcode, info.value.api) == (40001, "gettoken")


async def test_token_never_appears_in_errors_logs_or_repr(
    client: WeComClient, fake_wecom: FakeWeComApi, caplog: pytest.LogCaptureFixture
) -> None:
    fake_wecom.rate_limit("message/send", times=10)
    with caplog.at_level(logging.DEBUG), pytest.raises(WeComApiError) as info:
        await client.send_message(markdown_message("x", to_users=["u"]))
    for text in (str(info.value), caplog.text, repr(client)):
        assert "TOKEN-1" not in text and SECRET not in text


async def test_send_message_adds_agent_and_duplicate_check(
    client: WeComClient, fake_wecom: FakeWeComApi
) -> None:
    card = button_interaction_card("suggest-7", "建议标签：询价客户", [CardButton("接受", "accept:7")])
    result = await client.send_message(
        template_card_message(card, to_users=["zhangwei"]), duplicate_check_interval=600
    )
    assert result["response_code"].startswith("rc-")
    body = fake_wecom.calls_to("message/send")[0].body
    assert body is not None
    assert (body["agentid"], body["enable_duplicate_check"], body["duplicate_check_interval"]) == (
        1000002,
        1,
        600,
    )
    assert body["template_card"]["task_id"] == "suggest-7"


async def test_send_message_without_duplicate_check(client: WeComClient, fake_wecom: FakeWeComApi) -> None:
    await client.send_message(markdown_message("x", to_users=["u"]), enable_duplicate_check=False)
    body = fake_wecom.calls_to("message/send")[0].body
    assert body is not None and body["enable_duplicate_check"] == 0


@pytest.mark.parametrize("interval", [0, 4 * 3600 + 1])
async def test_duplicate_check_interval_bounds(
    client: WeComClient, fake_wecom: FakeWeComApi, interval: int
) -> None:
    with pytest.raises(ValueError, match="duplicate_check_interval"):
        await client.send_message(markdown_message("x", to_users=["u"]), duplicate_check_interval=interval)
    assert fake_wecom.calls == []


async def test_update_template_card_button_and_whole_card(
    client: WeComClient, fake_wecom: FakeWeComApi
) -> None:
    await client.update_template_card("rc-1", replace_name="已接受", userids=["zhangwei"])
    card = button_interaction_card("suggest-8", "已处理", [CardButton("查看", "view:8")])
    await client.update_template_card("rc-2", template_card=card, atall=True)
    first, second = (c.body for c in fake_wecom.calls_to("message/update_template_card"))
    assert first == {
        "agentid": 1000002,
        "response_code": "rc-1",
        "userids": ["zhangwei"],
        "button": {"replace_name": "已接受"},
    }
    assert second is not None and second["atall"] == 1 and second["template_card"]["task_id"] == "suggest-8"
    with pytest.raises(ValueError, match="exactly one"):
        await client.update_template_card("rc-3")


async def test_corp_tags_add_list_and_mark(client: WeComClient, fake_wecom: FakeWeComApi) -> None:
    group = await client.add_corp_tag(["询价客户", " VIP客户 "], group_name="需求阶段")
    ids = [t["id"] for t in group["tag"]]
    assert [t["name"] for t in group["tag"]] == ["询价客户", "VIP客户"]
    more = await client.add_corp_tag(["沉默客户"], group_id=group["group_id"])
    assert more["group_id"] == group["group_id"]
    groups = await client.get_corp_tag_list()
    assert [len(g["tag"]) for g in groups] == [3]
    only = await client.get_corp_tag_list(tag_ids=[ids[0]])
    assert [t["name"] for g in only for t in g["tag"]] == ["询价客户"]

    await client.mark_tag("zhangwei", "wmABC", add_tag=ids)
    await client.mark_tag("zhangwei", "wmABC", remove_tag=[ids[1]])
    assert fake_wecom.customer_tags[("zhangwei", "wmABC")] == {ids[0]}


async def test_mark_tag_with_unknown_tag_raises_wecom_error(client: WeComClient) -> None:
    with pytest.raises(WeComApiError) as info:
        await client.mark_tag("zhangwei", "wmABC", add_tag=["etNOPE"])
    assert info.value.errcode == 40068


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tags": ["超" * 31], "group_name": "阶段"}, "at most 30"),
        ({"tags": ["a"], "group_name": "组" * 31}, "at most 30"),
        ({"tags": ["  "], "group_name": "阶段"}, "empty"),
        ({"tags": [], "group_name": "阶段"}, "at least one"),
        ({"tags": ["a", "a"], "group_name": "阶段"}, "twice"),
        ({"tags": ["a"]}, "exactly one"),
        ({"tags": ["a"], "group_name": "g", "group_id": "x"}, "exactly one"),
    ],
)
async def test_add_corp_tag_validates_before_calling(
    client: WeComClient, fake_wecom: FakeWeComApi, kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        await client.add_corp_tag(**kwargs)  # type: ignore[arg-type]
    assert fake_wecom.calls == []


async def test_mark_tag_validates_before_calling(client: WeComClient, fake_wecom: FakeWeComApi) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await client.mark_tag("u", "wm")
    with pytest.raises(ValueError, match="same tag"):
        await client.mark_tag("u", "wm", add_tag=["t1"], remove_tag=["t1"])
    assert fake_wecom.calls == []


async def test_get_external_contact(client: WeComClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.add_contact("wmABC", "王经理", ["zhangwei"])
    data = await client.get_external_contact("wmABC")
    assert data["external_contact"]["name"] == "王经理"
    call = fake_wecom.calls_to("externalcontact/get")[0]
    assert call.method == "GET" and call.query["external_userid"] == "wmABC"
    with pytest.raises(WeComApiError) as info:
        await client.get_external_contact("wmUNKNOWN")
    assert info.value.errcode == 84061
