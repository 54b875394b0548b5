"""WeCom callback crypto: SHA1 message signatures and AES-256-CBC envelopes (WXBizMsgCrypt scheme).

Wire format of a decrypted envelope: 16 random bytes, a 4-byte network-order message length, the
message (UTF-8), the receive id (the corp id), then PKCS#7 padding to a multiple of 32 bytes.
The signature is SHA1 over the sorted [token, timestamp, nonce, encrypt] strings; because the token
is secret it is also the only integrity check (CBC alone is malleable), so it is verified first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_SIZE = 32  # WeCom pads to 32 bytes, not to the AES block size of 16
_RANDOM_PREFIX = 16
_LENGTH_FIELD = 4
_AES_KEY_CHARS = 43


class WeComCryptoError(Exception):
    """A callback failed a crypto check; messages never contain key material or tokens."""


class CryptoConfigError(WeComCryptoError, ValueError):
    """The token, EncodingAESKey or corp id cannot be used."""


class SignatureError(WeComCryptoError):
    """msg_signature does not match the request: wrong token, tampered body or forged call."""


class DecryptError(WeComCryptoError):
    """The signed ciphertext does not decrypt into a well-formed envelope for this corp."""


@dataclass(frozen=True)
class EncryptedReply:
    """One encrypted message with the signature that WeCom will check."""

    encrypt: str
    signature: str
    timestamp: str
    nonce: str


class WeComCrypto:
    """Verifies, decrypts and encrypts WeCom callback payloads for one app."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str) -> None:
        if not token:
            raise CryptoConfigError(
                "WeCom token is empty; set WECOM_TOKEN to the token from the app's API settings"
            )
        if not corp_id:
            raise CryptoConfigError("WeCom corp id is empty; set WECOM_CORP_ID (it starts with 'ww')")
        self._token = token
        self._key = _decode_aes_key(encoding_aes_key)
        self._corp_id = corp_id.encode("utf-8")

    def __repr__(self) -> str:
        return f"WeComCrypto(corp_id={self._corp_id.decode()!r})"

    # ------------------------------------------------------------------ signatures

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """SHA1 hex digest over the lexicographically sorted token, timestamp, nonce and ciphertext."""
        parts = sorted([self._token, timestamp, nonce, encrypt])
        return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()

    def verify_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise SignatureError unless msg_signature matches, compared in constant time."""
        expected = self.signature(timestamp, nonce, encrypt).encode("ascii")
        given = msg_signature.strip().lower().encode("utf-8", "replace")
        if not hmac.compare_digest(expected, given):
            raise SignatureError(
                "msg_signature does not match timestamp, nonce and payload; check WECOM_TOKEN "
                "and that the request really comes from WeCom"
            )

    # ------------------------------------------------------------------ inbound

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Check the URL-verification GET and return the plaintext echostr WeCom expects back."""
        return self.decrypt_message(msg_signature, timestamp, nonce, echostr)

    def decrypt_message(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """Verify the signature first, then decrypt the envelope and return the inner text."""
        self.verify_signature(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)

    def decrypt(self, encrypt: str) -> str:
        """Decrypt a base64 envelope without checking its signature (callers must verify first)."""
        ciphertext = _b64decode(encrypt)
        if not ciphertext or len(ciphertext) % BLOCK_SIZE:
            raise DecryptError(
                f"ciphertext is {len(ciphertext)} bytes; a WeCom envelope is a non-empty multiple of "
                f"{BLOCK_SIZE}"
            )
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        body = _unpad(padded)
        if len(body) < _RANDOM_PREFIX + _LENGTH_FIELD:
            raise DecryptError("decrypted envelope is shorter than its random prefix and length field")
        (length,) = struct.unpack(">I", body[_RANDOM_PREFIX : _RANDOM_PREFIX + _LENGTH_FIELD])
        start = _RANDOM_PREFIX + _LENGTH_FIELD
        if length > len(body) - start:
            raise DecryptError(
                f"envelope declares a {length}-byte message but only {len(body) - start} bytes follow"
            )
        message, receive_id = body[start : start + length], body[start + length :]
        if not hmac.compare_digest(receive_id, self._corp_id):
            raise DecryptError("envelope was encrypted for a different receive id than WECOM_CORP_ID")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecryptError(f"decrypted message is not valid UTF-8 (byte {exc.start})") from None

    # ------------------------------------------------------------------ outbound

    def encrypt(self, plaintext: str, random_prefix: bytes | None = None) -> str:
        """Encrypt plaintext into a base64 envelope for this corp (random prefix injectable for tests)."""
        prefix = os.urandom(_RANDOM_PREFIX) if random_prefix is None else random_prefix
        if len(prefix) != _RANDOM_PREFIX:
            raise ValueError(f"random prefix must be {_RANDOM_PREFIX} bytes, got {len(prefix)}")
        message = plaintext.encode("utf-8")
        body = prefix + struct.pack(">I", len(message)) + message + self._corp_id
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).encryptor()
        ciphertext = encryptor.update(_pad(body)) + encryptor.finalize()
        return base64.b64encode(ciphertext).decode("ascii")

    def encrypt_reply(self, plaintext: str, timestamp: str, nonce: str) -> EncryptedReply:
        """Encrypt a passive reply and sign it with the given timestamp and nonce."""
        encrypt = self.encrypt(plaintext)
        return EncryptedReply(encrypt, self.signature(timestamp, nonce, encrypt), timestamp, nonce)


def _decode_aes_key(encoding_aes_key: str) -> bytes:
    """EncodingAESKey is 43 base64 characters; with one '=' appended it decodes to the 32-byte AES key."""
    if len(encoding_aes_key) != _AES_KEY_CHARS:
        raise CryptoConfigError(
            f"EncodingAESKey must be {_AES_KEY_CHARS} characters, got {len(encoding_aes_key)}; "
            "copy it again from the app's API receive settings (WECOM_ENCODING_AES_KEY)"
        )
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise CryptoConfigError("EncodingAESKey is not valid base64; check WECOM_ENCODING_AES_KEY") from None
    if len(key) != 32:
        raise CryptoConfigError(
            "EncodingAESKey does not decode to a 32-byte AES key; check WECOM_ENCODING_AES_KEY"
        )
    return key


def _b64decode(text: str) -> bytes:
    """Strict base64 decoding; anything else is a DecryptError."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise DecryptError(
            "Encrypt/echostr is not valid base64 (was the query string URL-decoded?)"
        ) from None


def _pad(data: bytes) -> bytes:
    """PKCS#7 to a multiple of 32 bytes: always 1..32 bytes, each equal to the pad length."""
    amount = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes([amount]) * amount


def _unpad(data: bytes) -> bytes:
    """Strip and check PKCS#7 padding of 1..32 equal bytes."""
    amount = data[-1]
    if not 1 <= amount <= BLOCK_SIZE or amount > len(data):
        raise DecryptError(f"invalid padding length {amount}; expected 1..{BLOCK_SIZE}")
    if data[-amount:] != bytes([amount]) * amount:
        raise DecryptError("invalid padding bytes: PKCS#7 padding bytes must all be equal")
    return data[:-amount]
