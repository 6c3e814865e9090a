"""Several scanners as one: the virus scanner first, then the spam scorer.

The first verdict that refuses (``reject``) or defers (``tempfail``) the message ends
the chain, since nothing will be stored and later scanners would only cost time. The
others combine: the header fields of each are added in chain order, scores add up, the
summaries merge (each scanner uses its own keys; ``action`` is the chain's), and the
stricter action wins, for the message and for each recipient. A recipient's own
learning filter may move spam back to INBOX, but never a message the virus scanner
quarantined: per recipient, each scanner's word for that recipient (its
``recipient_actions`` entry, else its ``action``) counts, and the strictest wins.
"""

from __future__ import annotations

from typing import Any

from domain.ports import ScanContext, Scanner, ScanVerdict

#: Stricter is later.
_ORDER = ("accept", "junk")


def _stricter(a: str, b: str) -> str:
    return a if _ORDER.index(a) >= _ORDER.index(b) else b


class ScannerChain:
    def __init__(self, *scanners: Scanner) -> None:
        self.scanners = scanners

    def scan(self, raw: bytes, context: ScanContext) -> ScanVerdict:
        verdicts: list[ScanVerdict] = []
        summary: dict[str, Any] = {}
        for scanner in self.scanners:
            verdict = scanner.scan(raw, context)
            if verdict.action in ("reject", "tempfail"):
                return verdict._replace(summary={**summary, **verdict.summary, "action": verdict.action})
            verdicts.append(verdict)
            summary.update(verdict.summary)
        action, reason = "accept", ""
        for verdict in verdicts:
            if _stricter(verdict.action, action) != action:
                action, reason = verdict.action, verdict.reason
        recipients = {address for verdict in verdicts for address in verdict.recipient_actions}
        own: dict[str, str] = {}
        for address in recipients:
            word = "accept"
            for verdict in verdicts:
                word = _stricter(verdict.recipient_actions.get(address, verdict.action), word)
            if word != action:
                own[address] = word
        if summary:
            summary["action"] = action
        return ScanVerdict(action, reason, round(sum(v.score for v in verdicts), 2),
                           tuple(h for v in verdicts for h in v.headers), summary, own)
