"""Each account's learning spam filter (issue 8): token statistics trained from what the
user files, and the classifier that reads them.

The user trains it by moving mail into their \\Junk mailbox (spam) or out of it (ham).
The statistics are derived from the person's mail, so they are personal data: the
``SpamFilter`` is a ``PersonalAggregate``, sealed under the account's subject key and
shredded with it (erasure lists its stream). Its id derives from the account id, so
erasure and the classifier find it without an index.

The classifier is Gary Robinson's, as SpamBayes and bogofilter use it: each token's
spam probability from how many spam and ham messages held it, shrunk towards 0.5 when
the token was rarely seen, then the most telling tokens combined with Fisher's
chi-square method. It answers ``None`` (abstains) until it has seen
``MIN_TRAINED_EACH`` messages of each kind: a filter trained on three messages would
only add noise to the scorer.

State stays bounded: one event per trained message with at most
``spam_tokens.MAX_MESSAGE_TOKENS`` hashed tokens, a vocabulary capped at
``MAX_VOCABULARY`` (the rarest tokens are dropped first, deterministically, so a replay
gives the same state), and snapshots (``LedgerApplication.snapshotting_intervals``).
"""

from __future__ import annotations

import math
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.model.base import PersonalAggregate

#: Verdicts a message can be trained with.
VERDICTS = ("spam", "ham")
#: Below this many trained messages of either kind the filter abstains.
MIN_TRAINED_EACH = 10
#: Distinct tokens the filter keeps; past it, it forgets the rarest down to ``PRUNE_TO``.
MAX_VOCABULARY = 20_000
PRUNE_TO = MAX_VOCABULARY * 9 // 10
#: Robinson's prior for a token: probability ``UNKNOWN_TOKEN_PROB`` with the weight of
#: ``UNKNOWN_TOKEN_STRENGTH`` messages (SpamBayes' defaults).
UNKNOWN_TOKEN_PROB = 0.5
UNKNOWN_TOKEN_STRENGTH = 0.45
#: Tokens whose probability is closer to 0.5 than this say nothing and are ignored.
MIN_PROB_STRENGTH = 0.1
#: At most this many of the most telling tokens are combined.
MAX_DISCRIMINATORS = 150


def spam_filter_id_for(account_id: UUID) -> UUID:
    return uuid5(account_id, "spam-filter")


class SpamFilter(PersonalAggregate):
    @staticmethod
    def create_id(account_id: UUID, **_: Any) -> UUID:  # type: ignore[override]
        return spam_filter_id_for(account_id)

    @event("Opened")
    def __init__(self, subject_id: str, account_id: UUID) -> None:
        self.subject_id = subject_id
        self.account_id = account_id
        self.spam_trained = 0
        self.ham_trained = 0
        #: token hash -> [spam messages holding it, ham messages holding it]
        self.tokens: dict[str, list[int]] = {}

    def learn(self, verdict: str, tokens: list[str]) -> None:
        """Count one message, classified by the user as ``verdict``."""
        if verdict not in VERDICTS:
            raise ValueError(f"a message is trained as one of {VERDICTS}, not {verdict!r}")
        self._trained(verdict, sorted(set(tokens)))

    @event("Trained")
    def _trained(self, verdict: str, tokens: list[str]) -> None:
        column = 0 if verdict == "spam" else 1
        if column == 0:
            self.spam_trained += 1
        else:
            self.ham_trained += 1
        counts = self.tokens
        for token in tokens:
            pair = counts.get(token)
            if pair is None:
                pair = counts[token] = [0, 0]
            pair[column] += 1
        if len(counts) > MAX_VOCABULARY:
            keep = sorted(counts.items(), key=lambda item: (-(item[1][0] + item[1][1]), item[0]))[:PRUNE_TO]
            self.tokens = dict(keep)

    # -- the classifier ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.spam_trained >= MIN_TRAINED_EACH and self.ham_trained >= MIN_TRAINED_EACH

    def spam_probability(self, tokens: list[str]) -> float | None:
        """0.0 (surely ham) to 1.0 (surely spam); ``None`` while not trained enough."""
        if not self.ready:
            return None
        clues = []
        for token in set(tokens):
            prob = self.token_probability(token)
            if abs(prob - 0.5) >= MIN_PROB_STRENGTH:
                clues.append((abs(prob - 0.5), token, prob))
        clues.sort(reverse=True)
        return fisher_combined([prob for _, _, prob in clues[:MAX_DISCRIMINATORS]])

    def token_probability(self, token: str) -> float:
        """Robinson's f(w): the token's spam ratio against its ham ratio, shrunk towards
        ``UNKNOWN_TOKEN_PROB`` by how few messages held it."""
        spam, ham = self.tokens.get(token, (0, 0))
        seen = spam + ham
        if seen == 0:
            return UNKNOWN_TOKEN_PROB
        spam_ratio = spam / self.spam_trained
        ham_ratio = ham / self.ham_trained
        prob = spam_ratio / (spam_ratio + ham_ratio)
        return ((UNKNOWN_TOKEN_STRENGTH * UNKNOWN_TOKEN_PROB + seen * prob)
                / (UNKNOWN_TOKEN_STRENGTH + seen))


def fisher_combined(probs: list[float]) -> float:
    """Fisher's method (Robinson, "A statistical approach to the spam problem", 2003, as
    SpamBayes' chi2_spamprob): how unlikely the probabilities are under "all random"
    towards spam (S) and towards ham (H), combined as (S - H + 1) / 2."""
    if not probs:
        return 0.5
    n = len(probs)
    ham_evidence = sum(math.log(p) for p in probs)
    spam_evidence = sum(math.log1p(-p) for p in probs)
    spamminess = 1.0 - chi2_q(-2.0 * spam_evidence, 2 * n)
    hamminess = 1.0 - chi2_q(-2.0 * ham_evidence, 2 * n)
    return (spamminess - hamminess + 1.0) / 2.0


def chi2_q(x2: float, freedom: int) -> float:
    """P(chi-square with ``freedom`` (even) degrees of freedom >= ``x2``)."""
    m = x2 / 2.0
    term = math.exp(-m)
    total = term
    for i in range(1, freedom // 2):
        term *= m / i
        total += term
    return min(total, 1.0)
