"""Callback crypto against WeCom's official sample, round trips and tamper properties."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.wecom.crypto import (
    CryptoConfigError,
    DecryptError,
    SignatureError,
    WeComCrypto,
    WeComCryptoError,
)
from bots.wecom.parser import TextMessage, parse_envelope, parse_message
from tests.wecom import official_sample as S

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "wecom"


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)


# ---------------------------------------------------------------- official sample


def test_official_verify_url_signature_and_plaintext(crypto: WeComCrypto) -> None:
    assert crypto.signature(S.VERIFY_TIMESTAMP, S.VERIFY_NONCE, S.VERIFY_ECHOSTR) == S.VERIFY_MSG_SIGNATURE
    echo = crypto.verify_url(S.VERIFY_MSG_SIGNATURE, S.VERIFY_TIMESTAMP, S.VERIFY_NONCE, S.VERIFY_ECHOSTR)
    assert echo == "1288432023552776189"


def test_official_post_sample_decrypts_to_the_published_message(crypto: WeComCrypto) -> None:
    envelope = parse_envelope((PAYLOADS / "official_sample_post.xml").read_bytes())
    assert envelope.to_user_name == S.CORP_ID and envelope.agent_id == "1000002"
    assert crypto.signature(S.POST_TIMESTAMP, S.POST_NONCE, envelope.encrypt) == S.POST_MSG_SIGNATURE
    plaintext = crypto.decrypt_message(S.POST_MSG_SIGNATURE, S.POST_TIMESTAMP, S.POST_NONCE, envelope.encrypt)
    assert plaintext == S.POST_PLAINTEXT
    message = parse_message(plaintext)
    assert isinstance(message, TextMessage)
    assert (message.from_user, message.content, message.msg_id) == ("ChenJiaShun", "你好", "1456453720")


def test_signature_is_case_insensitive_hex_and_checked_before_decryption(crypto: WeComCrypto) -> None:
    upper = S.VERIFY_MSG_SIGNATURE.upper()
    assert crypto.verify_url(upper, S.VERIFY_TIMESTAMP, S.VERIFY_NONCE, S.VERIFY_ECHOSTR)
    # Garbage ciphertext with a wrong signature must fail on the signature, not on base64/AES.
    with pytest.raises(SignatureError):
        crypto.decrypt_message("0" * 40, S.VERIFY_TIMESTAMP, S.VERIFY_NONCE, "%%%not-base64%%%")


def test_wrong_timestamp_or_nonce_is_rejected(crypto: WeComCrypto) -> None:
    with pytest.raises(SignatureError):
        crypto.verify_url(S.VERIFY_MSG_SIGNATURE, "1476416374", S.VERIFY_NONCE, S.VERIFY_ECHOSTR)
    with pytest.raises(SignatureError):
        crypto.verify_url(S.VERIFY_MSG_SIGNATURE, S.VERIFY_TIMESTAMP, "47744684", S.VERIFY_ECHOSTR)


def test_non_ascii_signature_is_a_signature_error_not_a_type_error(crypto: WeComCrypto) -> None:
    with pytest.raises(SignatureError):
        crypto.verify_url("签名" * 20, S.VERIFY_TIMESTAMP, S.VERIFY_NONCE, S.VERIFY_ECHOSTR)


def test_other_corp_id_is_refused_even_with_a_valid_signature() -> None:
    other = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, "ww0000000000000000")
    with pytest.raises(DecryptError, match="receive id"):
        other.verify_url(S.VERIFY_MSG_SIGNATURE, S.VERIFY_TIMESTAMP, S.VERIFY_NONCE, S.VERIFY_ECHOSTR)


def test_errors_never_contain_secrets(crypto: WeComCrypto) -> None:
    messages = []
    for call in (
        lambda: crypto.verify_url("bad", S.VERIFY_TIMESTAMP, S.VERIFY_NONCE, S.VERIFY_ECHOSTR),
        lambda: crypto.decrypt("!!"),
        lambda: crypto.decrypt(base64.b64encode(b"x" * 31).decode()),
        lambda: WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY[:-1], S.CORP_ID),
        lambda: WeComCrypto(S.TOKEN, "!" * 43, S.CORP_ID),
    ):
        with pytest.raises(WeComCryptoError) as info:
            call()
        messages.append(str(info.value))
    for text in messages:
        assert S.TOKEN not in text and S.ENCODING_AES_KEY[:20] not in text
    assert S.TOKEN not in repr(crypto) and S.ENCODING_AES_KEY not in repr(crypto)


@pytest.mark.parametrize(
    ("token", "key", "corp", "fragment"),
    [
        ("", S.ENCODING_AES_KEY, S.CORP_ID, "WECOM_TOKEN"),
        (S.TOKEN, S.ENCODING_AES_KEY + "A", S.CORP_ID, "43 characters"),
        (S.TOKEN, "*" * 43, S.CORP_ID, "base64"),
        (S.TOKEN, S.ENCODING_AES_KEY, "", "WECOM_CORP_ID"),
    ],
)
def test_bad_configuration_is_refused(token: str, key: str, corp: str, fragment: str) -> None:
    with pytest.raises(CryptoConfigError, match=fragment):
        WeComCrypto(token, key, corp)


# ---------------------------------------------------------------- envelope checks


def _raw_envelope(crypto: WeComCrypto, body: bytes, pad: bytes) -> str:
    """Encrypt hand-made plaintext bytes (to build malformed envelopes the encryptor never makes)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = base64.b64decode(S.ENCODING_AES_KEY + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(body + pad) + enc.finalize()).decode()


def _body(message: bytes, length: int | None = None, receive_id: bytes = S.CORP_ID.encode()) -> bytes:
    declared = len(message) if length is None else length
    return b"R" * 16 + declared.to_bytes(4, "big") + message + receive_id


def _padded(body: bytes) -> tuple[bytes, bytes]:
    amount = 32 - len(body) % 32
    return body, bytes([amount]) * amount


def test_wecom_pads_to_32_byte_blocks(crypto: WeComCrypto) -> None:
    for text in ("", "a", "客" * 7, "x" * 100):
        raw = base64.b64decode(crypto.encrypt(text))
        assert len(raw) % 32 == 0
        assert crypto.decrypt(crypto.encrypt(text)) == text


def test_well_formed_hand_made_envelope_decrypts(crypto: WeComCrypto) -> None:
    assert crypto.decrypt(_raw_envelope(crypto, *_padded(_body("报价".encode())))) == "报价"


@pytest.mark.parametrize(
    ("body", "pad", "fragment"),
    [
        (_body(b"hello"), b"\x00" * 3, "padding length 0"),
        (_body(b"hello" + b"x" * 27), b"\x21" * 16, "padding length 33"),
        (_body(b"hi"), bytes([5, 5, 5, 4, 5]), "padding bytes"),
        (_body(b"hello", length=5000), None, "declares a 5000-byte message"),
        (_body(b"hello", receive_id=b"ww_other_corp_id__"), None, "receive id"),
        (_body(b"\xff\xfe", receive_id=S.CORP_ID.encode()), None, "UTF-8"),
        (b"short", None, "shorter than"),
    ],
)
def test_malformed_envelopes_are_typed_errors(
    crypto: WeComCrypto, body: bytes, pad: bytes | None, fragment: str
) -> None:
    if pad is None:
        body, pad = _padded(body)
    else:
        # keep whole 16-byte AES blocks so the malformed padding reaches our check
        filler = (-(len(body) + len(pad))) % 32
        body = body + b"z" * filler
    with pytest.raises(DecryptError, match=fragment):
        crypto.decrypt(_raw_envelope(crypto, body, pad))


@pytest.mark.parametrize("encrypt", ["", "!!!", "YWJj", base64.b64encode(b"x" * 48).decode(), "短"])
def test_bad_ciphertext_shapes_are_decrypt_errors(crypto: WeComCrypto, encrypt: str) -> None:
    with pytest.raises(DecryptError):
        crypto.decrypt(encrypt)


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(text=st.text())
def test_encrypt_then_decrypt_is_identity(text: str) -> None:
    crypto = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)
    reply = crypto.encrypt_reply(text, "1732510000", "nonce123")
    assert crypto.decrypt_message(reply.signature, reply.timestamp, reply.nonce, reply.encrypt) == text


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200), data=st.data())
def test_any_flipped_ciphertext_byte_fails_the_signature(text: str, data: st.DataObject) -> None:
    crypto = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)
    reply = crypto.encrypt_reply(text, "1732510000", "nonce123")
    raw = bytearray(base64.b64decode(reply.encrypt))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    tampered = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureError):
        crypto.decrypt_message(reply.signature, reply.timestamp, reply.nonce, tampered)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200), data=st.data())
def test_any_flipped_signature_byte_is_rejected(text: str, data: st.DataObject) -> None:
    crypto = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)
    reply = crypto.encrypt_reply(text, "1732510000", "nonce123")
    sig = list(reply.signature)
    index = data.draw(st.integers(0, len(sig) - 1))
    # Any other hex digit (case is not significant in a hex digest, so 'a' -> 'A' is no change).
    sig[index] = data.draw(st.sampled_from([c for c in "0123456789abcdef" if c != sig[index].lower()]))
    with pytest.raises(SignatureError):
        crypto.decrypt_message("".join(sig), reply.timestamp, reply.nonce, reply.encrypt)


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=200), data=st.data())
def test_flips_in_the_last_two_blocks_are_decrypt_errors_even_if_re_signed(
    text: str, data: st.DataObject
) -> None:
    """Someone holding the token can re-sign; padding, length and corp-id checks still catch the tail."""
    crypto = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)
    raw = bytearray(base64.b64decode(crypto.encrypt(text)))
    index = data.draw(st.integers(len(raw) - 32, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    tampered = base64.b64encode(bytes(raw)).decode()
    signature = crypto.signature("1732510000", "n", tampered)
    with pytest.raises(DecryptError):
        crypto.decrypt_message(signature, "1732510000", "n", tampered)


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=100), data=st.data())
def test_any_re_signed_flip_never_escapes_as_an_untyped_exception(text: str, data: st.DataObject) -> None:
    crypto = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)
    raw = bytearray(base64.b64decode(crypto.encrypt(text)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    tampered = base64.b64encode(bytes(raw)).decode()
    try:
        result = crypto.decrypt(tampered)
    except DecryptError:
        return
    # CBC is malleable: a flip in an early block can survive; the signature is what rejects it.
    assert result != text
