"""The key ring of payload protection: keys by id, loaded from TQ_KEYS or a keys file, with
what one key does to one text (seal/open: AES-256-GCM; sign/verify: HMAC-SHA256).

Keys: `TQ_KEYS="k2:BASE64,k1:BASE64"` (the first is current) or `keys_file` (TOML:
`current = "k2"` and a `[keys]` table of id = base64 of 32 random bytes). Encrypt with the
current key, decrypt and verify with any listed one: rotation is adding a key as current,
re-sealing what waits (`tq keys rotate`), then dropping the old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENCRYPTED = "tqe1."   # prefix of a sealed payload, result or error text
MODES = ("encrypt", "sign")
KEY_BYTES = 32
_ID_RE = re.compile(r"[A-Za-z0-9_\-]{1,32}")


_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_LAST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URL).decode()


def _unb64(text: str) -> bytes:
    """Strict base64url without padding: anything but the one canonical spelling of some
    bytes is refused (a lenient decoder skips stray characters and ignores unused bits: a
    changed body would still open)."""
    rest = len(text) % 4
    if rest == 1 or not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    if rest and _LAST.index(text[-1]) % (16 if rest == 2 else 4):
        raise ValueError("not canonical base64url")   # unused low bits set
    return binascii.a2b_base64(text.encode().translate(_FROM_URL) + b"=" * (-rest % 4))


class _Nonces:
    """96-bit GCM nonces from os.urandom, read 4 KiB at a time (a syscall per result showed);
    never shared with a forked child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buf, self.pos = b"", 0

    def take(self) -> bytes:
        with self.lock:
            if self.pos + 12 > len(self.buf):
                self.buf, self.pos = os.urandom(4096), 0
            self.pos += 12
            return self.buf[self.pos - 12:self.pos]


_nonces = _Nonces()


def _fresh_nonces() -> None:
    global _nonces
    _nonces = _Nonces()


os.register_at_fork(after_in_child=_fresh_nonces)


class Rejected(ValueError):
    """A body, result or error that protection refuses: `reason` is the dead letter's kind."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason   # bad_signature | cannot_decrypt


@dataclass(frozen=True)
class KeyRing:
    """Keys by id, the current one, and the mode (encrypt or sign)."""

    keys: dict[str, bytes] = field(repr=False)
    current: str
    mode: str = "encrypt"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"protect must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.current not in self.keys:
            raise ConfigError(f"the current key {self.current!r} is not among the keys")
        for kid, key in self.keys.items():
            if not _ID_RE.fullmatch(kid):
                raise ConfigError(f"key id {kid[:40]!r} must be 1-32 letters, digits, - or _")
            if len(key) != KEY_BYTES:
                raise ConfigError(f"key {kid!r} must be {KEY_BYTES} bytes (base64 of 32 "
                                  f"random bytes), not {len(key)}")

    @property
    def encrypts(self) -> bool:
        """Payloads, results and errors are encrypted (else bodies are only signed)."""
        return self.mode == "encrypt"

    def __repr__(self) -> str:   # never the key material
        return f"KeyRing(ids={sorted(self.keys)}, current={self.current!r}, mode={self.mode!r})"

    # -- sealing ------------------------------------------------------------------------
    def _aead(self, kid: str) -> Any:
        """The AES-GCM object of a key, made once (its key schedule costs more than a
        small payload's encryption)."""
        cache = self.__dict__.setdefault("_aeads", {})
        aead = cache.get(kid)
        if aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            aead = cache[kid] = AESGCM(self.keys[kid])
        return aead

    def seal(self, plain: str, aad: str) -> str:
        """Encrypt text with the current key: "tqe1.KEYID.NONCE.CIPHERTEXT"."""
        nonce = _nonces.take()
        ct = self._aead(self.current).encrypt(nonce, plain.encode("utf-8"), aad.encode("utf-8"))
        return f"{ENCRYPTED}{self.current}.{_b64(nonce)}.{_b64(ct)}"

    def open(self, sealed: str, aad: str) -> str:
        """Decrypt what seal() made (with whichever listed key sealed it); Rejected if it
        cannot be (unknown key, tampered, moved to another task, garbled)."""
        from cryptography.exceptions import InvalidTag

        parts = sealed.split(".") if isinstance(sealed, str) else []
        if len(parts) != 4 or parts[0] + "." != ENCRYPTED:
            raise Rejected("cannot_decrypt", "cannot decrypt: not a sealed value")
        kid = parts[1]
        key = self.keys.get(kid)
        if key is None:
            raise Rejected("cannot_decrypt", f"cannot decrypt: unknown key id {kid[:32]!r}")
        try:
            nonce, ct = _unb64(parts[2]), _unb64(parts[3])
            if len(nonce) != 12:
                raise ValueError("nonce")
            plain = self._aead(kid).decrypt(nonce, ct, aad.encode("utf-8"))
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, TypeError):
            raise Rejected("cannot_decrypt", f"cannot decrypt with key {kid!r}: tampered, "
                           "moved from another task, or sealed with another key") from None

    def sign(self, text: str) -> str:
        mac = hmac.new(self.keys[self.current], text.encode("utf-8"), hashlib.sha256).digest()
        return f"{self.current}.{_b64(mac)}"

    def verify(self, signature: str, text: str) -> None:
        kid, _, mac = signature.partition(".") if isinstance(signature, str) else ("", "", "")
        key = self.keys.get(kid)
        if key is None:
            raise Rejected("bad_signature", f"bad signature: unknown key id {kid[:32]!r}")
        want = hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()
        try:
            got = _unb64(mac)
        except ValueError:
            got = b""
        if not hmac.compare_digest(want, got):
            raise Rejected("bad_signature", "bad signature: the body was changed, moved from "
                           "another task, or signed with another key")

    # -- loading ------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, mode: str = "encrypt") -> KeyRing:
        """TQ_KEYS: "k2:BASE64,k1:BASE64" (the first is current)."""
        keys: dict[str, bytes] = {}
        order = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            kid, sep, b64 = item.partition(":")
            if not sep:
                raise ConfigError("TQ_KEYS must be KEYID:BASE64[,KEYID:BASE64] (the first is "
                                  "the current key)")
            keys[kid.strip()] = _decode_key(kid.strip(), b64.strip())
            order.append(kid.strip())
        if not keys:
            raise ConfigError("TQ_KEYS lists no key")
        return cls(keys, order[0], mode)

    @classmethod
    def from_file(cls, path: str | Path, mode: str = "encrypt") -> KeyRing:
        """A keys file: `current = "k2"` and a [keys] table of id = base64."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read keys file {p}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raise ConfigError(f"keys file {p} is not valid TOML") from None   # (no echo of it)
        table = data.get("keys")
        if not isinstance(table, dict) or not table:
            raise ConfigError(f"keys file {p}: needs a [keys] table of id = \"base64\"")
        keys = {str(k): _decode_key(str(k), v) for k, v in table.items()}
        current = data.get("current")
        if not isinstance(current, str):
            raise ConfigError(f"keys file {p}: needs current = \"KEYID\"")
        return cls(keys, current, mode)


def _decode_key(kid: str, b64: Any) -> bytes:
    if not isinstance(b64, str):
        raise ConfigError(f"key {kid!r} must be a base64 string")
    try:
        key = base64.b64decode(b64 + "=" * (-len(b64) % 4), altchars=b"-_"
                               if ("-" in b64 or "_" in b64) else None, validate=True)
    except ValueError:
        raise ConfigError(f"key {kid!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"key {kid!r} must be {KEY_BYTES} bytes (base64 of 32 random "
                          f"bytes), not {len(key)}")
    return key


def new_key() -> str:
    """Base64 of 32 random bytes: a new key for TQ_KEYS or a keys file."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")
