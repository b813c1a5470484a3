"""Payload protection: encrypted (AES-256-GCM) or signed (HMAC-SHA256) task bodies and results.

Threat model. Whoever can read Redis (or a dump.rdb / AOF copy of it) must not read what tasks
carry, and whoever can write to Redis must not make a worker run a task of their making. With
keys configured, producers seal each payload, workers refuse what is not sealed with a known
key (dead letter "bad signature" or "cannot decrypt", never run), and results and the error
messages and tracebacks of failures (they often echo the payload) are sealed too. What Redis
access still reveals: queue and type names, priorities, retries and timeouts, timing, counts,
task ids and sizes (the claim script schedules on them), and tq's own error texts.

Body formats (shared/task.py): the header stays plain so Lua can schedule; the payload goes

    encrypted  {"t":"email","p":"tqe1.KEYID.NONCE.CIPHERTEXT"}       (base64url, no padding)
    signed     {"t":"email","s":"KEYID.MAC","p":{...}}

The associated data (encryption) / signed text binds the task's queue, id and whole header,
so a body cannot be moved to another task, queue or type, nor its priority, retries or
timeout changed. Results and errors bind the queue, the id and what they are.

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
import json
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


# -- what is sealed, and what it is bound to ------------------------------------------------
def body_aad(queue: str, task_id: str, header: str) -> str:
    """A body's associated data / signed prefix: queue, id and the plain header."""
    return f"tq1|body|{queue}|{task_id}|{header}"


def result_aad(queue: str, task_id: str) -> str:
    return f"tq1|result|{queue}|{task_id}"


def progress_aad(queue: str, task_id: str) -> str:
    return f"tq1|progress|{queue}|{task_id}"


def error_aad(queue: str, task_id: str, what: str) -> str:
    return f"tq1|{what}|{queue}|{task_id}"


_HEADER_RE = re.compile(r'^\{(.*?)"p":', re.S)
_SIG_RE = re.compile(r'"s":"([^"]*)",')


def split_body(raw: str) -> tuple[str, str | None, str]:
    """(header without the signature, the signature or None, the payload text) of a body."""
    m = _HEADER_RE.match(raw)
    if m is None:
        raise Rejected("bad_signature", "bad signature: not a tq body")
    head = m.group(1)
    sig = _SIG_RE.search(head)
    signature = sig.group(1) if sig else None
    if sig:
        head = head[:sig.start()] + head[sig.end():]
    payload = raw[m.end():-1] if raw.endswith("}") else ""
    return head, signature, payload


# -- bodies, results and errors ---------------------------------------------------------------
class SealedBody(str):
    """A sealed body on its way to Redis, with what re-seals it for another id (the enqueue
    script answers a rare id collision with a retry under a fresh id)."""

    plain: str
    ring: KeyRing
    queue: str

    def reseal(self, task_id: str) -> SealedBody:
        return seal_body(self.ring, self.queue, task_id, self.plain)


def seal_body(ring: KeyRing, queue: str, task_id: str, plain: str) -> SealedBody:
    """A plain body (task.encode_body) encrypted or signed for task `task_id` of `queue`."""
    head, _, payload = split_body(plain)
    aad = body_aad(queue, task_id, head)
    if ring.encrypts:
        text = "{" + head + '"p":"' + ring.seal(payload, aad) + '"}'
    else:
        text = "{" + head + '"s":"' + ring.sign(aad + "|" + payload) + '","p":' + payload + "}"
    out = SealedBody(text)
    out.plain, out.ring, out.queue = plain, ring, queue
    return out


def open_payload(ring: KeyRing | None, queue: str, task_id: str, raw: str | None,
                 sealed: bool) -> str | None:
    """The payload JSON of a protected body, checked: None when there is nothing to open (a
    plain body and no keys). Rejected when protection refuses it: a sealed body and no key
    for it, tampering, a body moved from another task, or (keys configured) a body that is
    neither signed nor encrypted."""
    if ring is None:
        if sealed:
            raise Rejected("cannot_decrypt", "cannot decrypt: this worker has no keys "
                           "(TQ_KEYS or keys_file)")
        return None
    if raw is None:
        raise Rejected("bad_signature", "bad signature: the task is neither signed nor "
                       "encrypted, and payload protection is on")
    head, signature, payload = split_body(raw)
    aad = body_aad(queue, task_id, head)
    if sealed:
        if not (payload.startswith('"') and payload.endswith('"')):
            raise Rejected("cannot_decrypt", "cannot decrypt: not a sealed payload")
        return ring.open(payload[1:-1], aad)
    if signature is None:
        raise Rejected("bad_signature", "bad signature: the task is not signed, and payload "
                       "protection is on")
    ring.verify(signature, aad + "|" + payload)
    return payload


def open_text(ring: KeyRing | None, value: str, aad: str) -> str | None:
    """A sealed text (a result, an error message) opened; None without a key that opens it."""
    if ring is None:
        return None
    try:
        return ring.open(value, aad)
    except Rejected:
        return None


def reveal(ring: KeyRing | None, value: Any, aad: str) -> Any:
    """A stored text that may be sealed (an error message, a traceback): the plain text with
    the keys, "(encrypted)" without them or when it cannot be opened."""
    if not isinstance(value, str) or not value.startswith(ENCRYPTED):
        return value
    opened = open_text(ring, value, aad)
    if opened is not None:
        return opened
    return "(encrypted)" if ring is None else "(encrypted: cannot decrypt with these keys)"


def _key_id(sealed_or_signature: str) -> str:
    text = sealed_or_signature.removeprefix(ENCRYPTED)
    return text.split(".", 1)[0]


def reseal_body(ring: KeyRing, queue: str, task_id: str, raw: str) -> str | None:
    """A stored protected body sealed again with the current key; None when it already is
    (or is not protected, or cannot be opened with these keys: left as it is)."""
    try:
        head, signature, payload = split_body(raw)
        sealed = payload.startswith('"' + ENCRYPTED)
        if not sealed and signature is None:
            return None
        kid = _key_id(payload[1:] if sealed else signature or "")
        if kid == ring.current and sealed == ring.encrypts:
            return None
        plain_payload = open_payload(ring, queue, task_id, raw, sealed)
    except Rejected:
        return None
    assert plain_payload is not None
    return str(seal_body(ring, queue, task_id, "{" + head + '"p":' + plain_payload + "}"))


def reseal_error(ring: KeyRing, queue: str, task_id: str, raw: str) -> str | None:
    """A stored error (JSON) with its sealed texts sealed again with the current key."""
    try:
        err = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(err, dict):
        return None
    changed = False

    def again(value: Any, what: str) -> Any:
        nonlocal changed
        if not isinstance(value, str) or not value.startswith(ENCRYPTED) \
                or _key_id(value) == ring.current:
            return value
        plain = open_text(ring, value, error_aad(queue, task_id, what))
        if plain is None:
            return value
        changed = True
        return ring.seal(plain, error_aad(queue, task_id, what))

    err["message"] = again(err.get("message"), "message")
    err["traceback"] = again(err.get("traceback"), "traceback")
    for h in err.get("history") or []:
        if isinstance(h, dict):
            h["message"] = again(h.get("message"), "message")
    return json.dumps(err, separators=(",", ":")) if changed else None
