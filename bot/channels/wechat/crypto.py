"""WeChat Official Account message signatures and "safe mode" encryption.

The published scheme (公众号 消息加解密):
- signature      = sha1 of the lexicographically sorted [token, timestamp, nonce], joined;
- msg_signature  = sha1 of the sorted [token, timestamp, nonce, Encrypt];
- Encrypt        = base64(AES-256-CBC(plaintext)), key = base64decode(EncodingAESKey + "="),
                   IV = key[:16], PKCS#7 padding to a 32-byte block;
- plaintext      = 16 random bytes + len(xml) as 4 bytes network order + xml + AppID.

Everything here is pure: no I/O, no clock.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16 (its samples' PKCS7Encoder block_size = 32)
_AES_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")


class CryptoError(Exception):
    """A message that cannot be decrypted (bad base64, padding, length or AppID)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_ok(expected_parts: tuple, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(sha1_signature(*expected_parts), given.strip().lower())


def decode_aes_key(encoding_aes_key: str) -> bytes:
    if not _AES_KEY.match(encoding_aes_key or ""):
        raise ValueError("EncodingAESKey must be 43 characters of [A-Za-z0-9]")
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey does not decode to 32 bytes")
    return key


class MessageCrypto:
    def __init__(self, encoding_aes_key: str, appid: str):
        self.key = decode_aes_key(encoding_aes_key)
        self.iv = self.key[:16]
        self.appid = appid.encode("utf-8")

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.iv))

    def encrypt(self, xml: bytes, random16: bytes | None = None) -> str:
        random16 = os.urandom(16) if random16 is None else random16
        if len(random16) != 16:
            raise ValueError("random prefix must be 16 bytes")
        plain = random16 + struct.pack(">I", len(xml)) + xml + self.appid
        padder = padding.PKCS7(BLOCK * 8).padder()  # 1..32 bytes; a full block when already aligned
        padded = padder.update(plain) + padder.finalize()
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(padded) + enc.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> bytes:
        try:
            data = base64.b64decode((encrypted or "").strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("bad_base64")
        if not data or len(data) % 16:
            raise CryptoError("bad_length")
        dec = self._cipher().decryptor()
        plain = dec.update(data) + dec.finalize()
        # The padding lies in the last 32 bytes. Only those go through the unpadder, which
        # wants one whole 32-byte block: a ciphertext aligned to AES's 16 only is still read,
        # as WeChat's own samples read it (a lone 16-byte block gets zeros in front, which
        # never pass as padding bytes).
        tail = plain[-BLOCK:].rjust(BLOCK, b"\0")
        unpadder = padding.PKCS7(BLOCK * 8).unpadder()
        try:
            pad = len(tail) - len(unpadder.update(tail) + unpadder.finalize())
        except ValueError:
            raise CryptoError("bad_padding")
        content = plain[16:-pad]
        if len(content) < 4:
            raise CryptoError("bad_length")
        (length,) = struct.unpack(">I", content[:4])
        if length > len(content) - 4:
            raise CryptoError("bad_length")
        xml, appid = content[4:4 + length], content[4 + length:]
        if not hmac.compare_digest(appid, self.appid):
            raise CryptoError("appid_mismatch")
        return xml
