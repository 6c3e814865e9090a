"""THREAD (RFC 5256): the base subject, the ORDEREDSUBJECT and REFERENCES algorithms, and
the THREAD response body, as pure functions over a few header values per message.

The session reads Message-ID, In-Reply-To, References, Subject and the sent date of the
messages a search selected and hands them over as ``ThreadInput``; what comes back is a
tree of ``Thread`` nodes, written out by ``format_threads``. Nothing here recurses: a
5,000-deep reply chain, a References field of 10,000 ids or a loop A -> B -> A costs
linear time and no RecursionError, and hostile sizes are capped (``MAX_HEADER``,
``MAX_REFERENCES``). ``base_subject`` is also the SUBJECT key of SORT (``sorting.py``).

Encoded words (RFC 2047) are decoded by ``charsets.decode_words``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from adapters.imap.charsets import decode_words

#: Message ids of a References field that are used: the last ones (the parent is last).
MAX_REFERENCES = 1000
#: Characters of a raw header value that are read at all.
MAX_HEADER = 64 * 1024

_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)
_WSP = re.compile(r"[ \t\r\n]+")
# RFC 5256 §5 subj-blob = "[" *BLOBCHAR "]" *WSP; BLOBCHAR excludes "[" and "]".
_BLOB = re.compile(r"\[[^\[\]]*\] ?")
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":", led by *subj-blob (subj-leader).
_LEADER = re.compile(r"(?:\[[^\[\]]*\] ?)*(?:re|fwd?) ?(?:\[[^\[\]]*\] ?)?:", re.IGNORECASE)
_MSG_ID = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True, slots=True)
class ThreadInput:
    """One message to thread. ``number`` is what the response prints (a sequence number
    for THREAD, a UID for UID THREAD); the strings are raw header values ("" when
    absent); ``sent`` is the Date field, or the INTERNALDATE when there is no usable Date
    (RFC 5256 §2.2 asks for that fallback; None sorts first)."""

    number: int
    message_id: str
    in_reply_to: str
    references: str
    subject: str
    sent: dt.datetime | None


@dataclass(slots=True)
class Thread:
    """A node of the result: ``message`` is None for a dummy (a message that is referred
    to but not present, kept only at the top to hold several children)."""

    message: ThreadInput | None
    children: list[Thread] = field(default_factory=list)


# -- RFC 5256 §2.1 base subject --------------------------------------------------------------


def base_subject(subject: str) -> str:
    """The RFC 5256 §2.1 base subject, casefolded (subjects compare case-insensitively):
    "Re: [list] Fwd: Lunch (fwd)" and "lunch" have the same one."""
    return _extract(subject)[0]


def _extract(subject: str) -> tuple[str, bool]:
    """The base subject and whether the message is a reply or forward: its subject had a
    subj-refwd, a "(fwd)" trailer or a "[fwd: ...]" wrapper (RFC 5256 §3 REFERENCES
    step 5, as Courier and Dovecot read it). Works on indices into one string, each only
    moving inwards, so the whole extraction is linear in the subject's length."""
    # RFC 5256 §2.1 (1): decode encoded words, tabs and continuations to one space.
    text = _WSP.sub(" ", decode_words(subject[:MAX_HEADER]))
    start, end, refwd = 0, len(text), False
    while True:
        end, trailed = _strip_trailers(text, start, end)  # (2)
        start, led = _strip_leaders(text, start, end)  # (3), (4), (5)
        refwd = refwd or trailed or led
        # (6) "[fwd:" ... "]" around the whole subject: unwrap and start again at (2).
        if end - start >= 6 and text[start:start + 5].lower() == "[fwd:" and text[end - 1] == "]":
            start, end, refwd = start + 5, end - 1, True
            continue
        return text[start:end].casefold(), refwd


def _strip_trailers(text: str, start: int, end: int) -> tuple[int, bool]:
    """RFC 5256 §2.1 (2): subj-trailer = "(fwd)" / WSP, removed from the end, repeatedly."""
    trailed = False
    while end > start:
        if text[end - 1] == " ":
            end -= 1
        elif text[max(start, end - 5):end].lower() == "(fwd)":
            end, trailed = end - 5, True
        else:
            break
    return end, trailed


def _strip_leaders(text: str, start: int, end: int) -> tuple[int, bool]:
    """RFC 5256 §2.1 (3)-(5): remove subj-leaders (WSP, or blobs then "re:"/"fw:"/"fwd:"),
    then leading subj-blobs while something is left after them. Once a leader fails to
    match here it fails after any of the blobs as well (a leader may begin with blobs),
    so (3) need not be tried again: the loop of (5) ends with the blobs."""
    position, led = start, False
    while position < end:
        if text[position] == " ":
            position += 1
            continue
        leader = _LEADER.match(text, position, end)
        if leader is None:
            break
        position, led = leader.end(), True
    # (4): a leading blob goes only if a non-empty subj-base remains.
    while (blob := _BLOB.match(text, position, end)) is not None and blob.end() < end:
        position = blob.end()
    return position, led


# -- sent dates (RFC 5256 §2.2) --------------------------------------------------------------


def sent_key(when: dt.datetime | None) -> dt.datetime:
    """A comparable instant: naive datetimes are taken as UTC, None sorts first."""
    if when is None:
        return _EPOCH
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _order(message: ThreadInput) -> tuple[dt.datetime, int]:
    # RFC 5256 §2.2: by sent date; equal dates in mailbox (sequence) order.
    return sent_key(message.sent), message.number


# -- ORDEREDSUBJECT (RFC 5256 §3) ---------------------------------------------------------------


def thread_orderedsubject(messages: Iterable[ThreadInput]) -> list[Thread]:
    """RFC 5256 §3 ORDEREDSUBJECT: messages grouped by base subject, each group in sent
    order; the first message of a group is the root and the others its children; the
    threads in the sent order of their first messages."""
    groups: dict[str, list[ThreadInput]] = {}
    for message in sorted(messages, key=_order):
        groups.setdefault(base_subject(message.subject), []).append(message)
    threads = [Thread(group[0], [Thread(m) for m in group[1:]]) for group in groups.values()]
    threads.sort(key=lambda thread: _order(thread.message))  # type: ignore[arg-type]
    return threads


# -- REFERENCES (RFC 5256 §3) -------------------------------------------------------------------


class _Node:
    __slots__ = ("message", "parent", "children")

    def __init__(self, message: ThreadInput | None = None) -> None:
        self.message = message
        self.parent: _Node | None = None
        self.children: list[_Node] = []


def message_ids(value: str, *, last: bool = False) -> list[str]:
    """The msg-ids of a field, without their angle brackets (RFC 5322 §3.6.4: an id has
    an "@"); compared case-sensitively, as RFC 5256 asks. Of a field longer than
    ``MAX_HEADER`` only the start is read, or the end when ``last`` (References: the
    parent is the last id)."""
    if "<" not in value:
        return []
    value = value[-MAX_HEADER:] if last else value[:MAX_HEADER]
    return [found for found in _MSG_ID.findall(value) if "@" in found]


def thread_references(messages: Iterable[ThreadInput]) -> list[Thread]:
    """RFC 5256 §3 REFERENCES, steps 1 to 6."""
    nodes = _link_all(sorted(messages, key=lambda m: m.number))
    roots = [node for node in nodes if node.parent is None and (node.message or node.children)]  # (2)
    roots = _prune(roots)  # (3)
    _sort_top(roots)  # (4)
    roots = _gather_subjects(roots)  # (5)
    _sort_all(roots)  # (6)
    return _as_threads(roots)


def _link_all(messages: list[ThreadInput]) -> list[_Node]:
    """Step 1 for every message, in mailbox order; returns every node made, in order."""
    table: dict[str, _Node] = {}
    nodes: list[_Node] = []

    def lookup(message_id: str) -> _Node:
        node = table.get(message_id)
        if node is None:  # (1)(A): a dummy stands for a message not (yet) seen
            node = table[message_id] = _Node()
            nodes.append(node)
        return node

    for message in messages:
        references = message_ids(message.references, last=True)
        if not references:
            # A message without usable References: the first valid id of In-Reply-To
            # is its only reference (RFC 5256 §3 REFERENCES, step 1).
            references = message_ids(message.in_reply_to)[:1]
        previous: _Node | None = None
        for reference in references[-MAX_REFERENCES:]:
            node = lookup(reference)
            # (1)(A): link each reference to the next, unless the later one has a parent
            # already (a truncated References) or the link would make a loop.
            if previous is not None and node.parent is None and not _makes_loop(previous, node):
                _attach(previous, node)
            previous = node
        node = _message_node(message, table, nodes)
        # (1)(B): the last reference is the parent; an earlier link is broken, and a
        # message with no references has no parent.
        if node.parent is not None:
            _detach(node)
        if previous is not None and not _makes_loop(previous, node):
            _attach(previous, node)
    return nodes


def _message_node(message: ThreadInput, table: dict[str, _Node], nodes: list[_Node]) -> _Node:
    """The message's own node: the dummy its Message-ID was waiting in, or a new one. A
    missing id, or one already taken by an earlier message, gets a node nobody can refer
    to (RFC 5256 §3 step 1(A): "assign a unique Message ID")."""
    ids = message_ids(message.message_id)
    node = table.get(ids[0]) if ids else None
    if node is not None and node.message is None:
        node.message = message
        return node
    node = _Node(message)
    if ids and ids[0] not in table:
        table[ids[0]] = node
    nodes.append(node)
    return node


def _makes_loop(parent: _Node, child: _Node) -> bool:
    """Whether making ``parent`` the parent of ``child`` would close a loop: it would if
    ``parent`` is ``child`` or one of its descendants. The tree never holds a loop, so
    the walk up ends; a child without children needs no walk at all."""
    if parent is child:
        return True
    if not child.children:
        return False
    ancestor = parent.parent
    while ancestor is not None:
        if ancestor is child:
            return True
        ancestor = ancestor.parent
    return False


def _attach(parent: _Node, child: _Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _detach(child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _preorder(roots: list[_Node]) -> list[_Node]:
    order: list[_Node] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(node.children))
    return order


def _prune(roots: list[_Node]) -> list[_Node]:
    """Step 3: a dummy without children goes; a dummy with children goes and its children
    take its place, except at the top where a dummy with several children stays. Done
    children first, so every promoted child has been pruned already."""
    for node in reversed(_preorder(roots)):
        kept: list[_Node] = []
        for child in node.children:
            if child.message is None:
                for grandchild in child.children:
                    grandchild.parent = node
                kept.extend(child.children)
            else:
                kept.append(child)
        node.children = kept
    top: list[_Node] = []
    for root in roots:
        if root.message is None and len(root.children) == 1:
            root.children[0].parent = None
            top.append(root.children[0])
        elif root.message is not None or root.children:
            top.append(root)
    return top


def _key(node: _Node) -> tuple[dt.datetime, int]:
    """A dummy sorts as its first child (RFC 5256 §3 steps 4 and 6)."""
    while node.message is None and node.children:
        node = node.children[0]
    return _order(node.message) if node.message is not None else (_EPOCH, 0)


def _sort_top(roots: list[_Node]) -> None:
    """Step 4: the top level by sent date, a dummy's children first."""
    for root in roots:
        if root.message is None:
            root.children.sort(key=_key)
    roots.sort(key=_key)


def _gather_subjects(roots: list[_Node]) -> list[_Node]:
    """Step 5: top-level threads with the same base subject are merged."""
    subjects: dict[int, tuple[str, bool]] = {}
    for root in roots:
        first = root if root.message is not None else root.children[0]
        subjects[id(root)] = _extract(first.message.subject)  # type: ignore[union-attr]
    table: dict[str, _Node] = {}
    for root in roots:  # (B)
        subject, refwd = subjects[id(root)]
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (held.message is not None and (
                root.message is None or (subjects[id(held)][1] and not refwd))):
            table[subject] = root
    dummies: list[_Node] = []
    for root in roots:  # (C)
        subject, refwd = subjects[id(root)]
        held = table.get(subject) if subject else None
        if held is None or held is root:
            continue
        merged = _merge(held, root, refwd, subjects.get(id(held), ("", False))[1])
        if merged is not None:
            table[subject] = merged
            dummies.append(merged)
    return [node for node in roots + dummies
            if node.parent is None and (node.message is not None or node.children)]


def _merge(held: _Node, current: _Node, current_refwd: bool, held_refwd: bool) -> _Node | None:
    """Step 5(C) for one top-level ``current`` and the subject table's ``held``; returns
    a new dummy when one replaces ``held`` in the table."""
    if held.message is None and current.message is None:
        for child in current.children:
            child.parent = held
        held.children.extend(current.children)
        current.children = []  # gone: neither a message nor a holder of any
        return None
    if held.message is None or (current_refwd and not held_refwd):
        _attach(held, current)
        return None
    dummy = _Node()
    _attach(dummy, held)
    _attach(dummy, current)
    return dummy


def _sort_all(roots: list[_Node]) -> None:
    """Step 6: every set of siblings by sent date, the deepest first, so a dummy is
    placed by its already sorted first child."""
    for node in reversed(_preorder(roots)):
        node.children.sort(key=_key)
    roots.sort(key=_key)


def _as_threads(roots: list[_Node]) -> list[Thread]:
    top = [Thread(root.message) for root in roots]
    stack = list(zip(roots, top, strict=True))
    while stack:
        node, thread = stack.pop()
        for child in node.children:
            made = Thread(child.message)
            thread.children.append(made)
            stack.append((child, made))
    return top


# -- the response (RFC 5256 §4) ---------------------------------------------------------------


def format_threads(threads: Sequence[Thread], number: Callable[[int], int] | None = None) -> bytes:
    """The THREAD response data after ``* THREAD``: one thread-list per thread, e.g.
    ``(2)(3 6 (4 23)(44 7 96))`` (RFC 5256 §4). A chain of single children is written as
    one list of numbers; a node with several children is followed by one parenthesized
    list per child; a dummy at the top is a list of its children's lists, ``((3)(5))``.
    ``number`` maps each ``ThreadInput.number`` to the number to print (e.g. UID to
    sequence number); the empty result is b"" (the response is then ``* THREAD``)."""
    show = number if number is not None else int
    out: list[bytes] = []
    stack: list[Thread | bytes] = list(reversed(threads))
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        node, written = item, 0
        out.append(b"(")
        while True:  # RFC 5256 §4 thread-members: a chain of single children
            if node.message is not None:
                out.append(b"%s%d" % (b" " if written else b"", show(node.message.number)))
                written += 1
            if len(node.children) != 1:
                break
            node = node.children[0]
        if node.children:  # thread-nested = 2*thread-list
            if written:
                out.append(b" ")
            stack.append(b")")
            stack.extend(reversed(node.children))
        else:
            out.append(b")")
    return b"".join(out)
