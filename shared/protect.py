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

The keys, and sealing or signing one text with them, are tq.keyring's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .keyring import ENCRYPTED, KeyRing, Rejected


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
