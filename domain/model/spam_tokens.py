"""What the learning spam filter sees of a message: a bounded set of hashed tokens.

The words of the Subject and of the text parts (HTML with its tags removed), lowercased,
3 to 20 characters, plus a few header tokens (the From: domain, the hosts of links, the
kinds of parts). Subject words are prefixed, since "free" in a subject says more than in
a body (SpamBayes and bogofilter tag tokens by where they came from the same way).

Only fields the sender wrote are read: never ``Received:`` or the fields our scanners
add (``X-Spam-*``, ``Authentication-Results:``), or the filter would learn our own
verdict back and reinforce it.

Each token is reduced to a 64-bit BLAKE2b digest, unkeyed: the filter's statistics are
sealed under the person's key anyway (DESIGN §3), so the hash only keeps them compact,
not secret. Pure code over bytes: no I/O.
"""

from __future__ import annotations

import html
import re
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default
from email.utils import getaddresses
from hashlib import blake2b

#: Word lengths kept: shorter ones are mostly stop words, longer ones mostly encodings.
MIN_WORD = 3
MAX_WORD = 20
#: Distinct tokens taken from one message, in order of first appearance (Subject first):
#: bounds an event's size and a classification's cost whatever the message's size.
MAX_MESSAGE_TOKENS = 400
#: Characters of decoded text read per message (a long mail says enough in its start).
MAX_TEXT_CHARS = 100_000
#: Parts looked at per message (a message of thousands of parts is not read to the end).
MAX_PARTS = 50

_WORD = re.compile(r"\w+")
_TAG = re.compile(r"<[^>]{0,2000}>")
_URL_HOST = re.compile(r"https?://([a-z0-9.-]{1,253})", re.IGNORECASE)


def message_tokens(raw: bytes) -> list[str]:
    """The hashed tokens of ``raw``, distinct, at most ``MAX_MESSAGE_TOKENS``."""
    return [token_hash(token) for token in plain_tokens(raw)]


def token_hash(token: str) -> str:
    """16 hex digits: collisions among a capped vocabulary are negligible at 64 bits."""
    return blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def plain_tokens(raw: bytes) -> list[str]:
    """The tokens before hashing (for tests and for reasoning about what is learnt)."""
    seen: dict[str, None] = {}

    def add(token: str) -> None:
        if len(seen) < MAX_MESSAGE_TOKENS:
            seen.setdefault(token, None)

    try:
        message = message_from_bytes(raw, policy=default)
        subject, sender, texts, kinds, hosts = _parts(message)
    except Exception:  # noqa: BLE001 - mail from anywhere; a tokenizer must never fail a caller
        subject, sender, kinds = "", "", []
        texts = [raw[:MAX_TEXT_CHARS].decode("latin-1")]
        hosts = _URL_HOST.findall(texts[0])
    for word in _words(subject):
        add(f"subject:{word}")
    if sender:
        add(f"from-domain:{sender}")
    for kind in kinds:
        add(f"part:{kind}")
    for host in hosts:
        add(f"url:{host.lower().rstrip('.')}")
    for text in texts:
        for word in _words(text):
            add(word)
    return list(seen)


def _parts(message: Message) -> tuple[str, str, list[str], list[str], list[str]]:
    """Subject, From: domain, the text of each text part, the part types, and the hosts
    of links (taken before HTML tags are removed: links live in their attributes)."""
    subject = _header(message, "subject")
    authors = [address for _, address in getaddresses([_header(message, "from")]) if "@" in address]
    sender = authors[0].rpartition("@")[2].lower() if authors else ""
    texts: list[str] = []
    kinds: list[str] = []
    hosts: list[str] = []
    budget = MAX_TEXT_CHARS
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS or budget <= 0:
            break
        kind = part.get_content_type()
        if part.is_multipart():
            continue
        if kind not in kinds:
            kinds.append(kind)
        if part.get_content_maintype() != "text" or part.get_filename():
            continue
        text = _text_of(part)[:budget]
        hosts += _URL_HOST.findall(text)
        if kind == "text/html":
            text = html.unescape(_TAG.sub(" ", text))
        budget -= len(text)
        texts.append(text)
    return subject, sender, texts, kinds, hosts


def _header(message: Message, name: str) -> str:
    try:
        return str(message.get(name) or "")
    except Exception:  # noqa: BLE001 - a malformed encoded word is not worth failing over
        return ""


def _text_of(part: Message) -> str:
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
            if isinstance(content, str):
                return content
        except (LookupError, ValueError, AssertionError):
            pass  # unknown charset or broken encoding: decode the bytes leniently below
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return payload.decode("utf-8", "replace")


def _words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower())
            if MIN_WORD <= len(word) <= MAX_WORD and not word.isdigit()]
