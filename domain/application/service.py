"""``LedgerMail``: the one application, all use cases (accounts, mail, erasure, export, outbound queue,
consent, admin tokens, retention and legal holds, brute-force bans, the learning spam filter)."""

from __future__ import annotations

from domain.application.bans import BanUseCases
from domain.application.consent import ConsentUseCases
from domain.application.erasure import ErasureUseCases
from domain.application.outbound import QueueUseCases
from domain.application.retention import RetentionUseCases
from domain.application.spam_learning import SpamLearningUseCases
from domain.application.tokens import TokenUseCases


class LedgerMail(SpamLearningUseCases, ErasureUseCases, RetentionUseCases, QueueUseCases, ConsentUseCases,
                 TokenUseCases, BanUseCases):
    """The write side of ledgermail; adapters call its methods, one per use case."""

    name = "ledgermail"
