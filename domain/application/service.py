"""``LedgerMail``: the one application, all use cases (accounts, mail, erasure, export, outbound queue,
consent, admin tokens, retention and legal holds)."""

from __future__ import annotations

from domain.application.consent import ConsentUseCases
from domain.application.erasure import ErasureUseCases
from domain.application.outbound import QueueUseCases
from domain.application.retention import RetentionUseCases
from domain.application.tokens import TokenUseCases


class LedgerMail(ErasureUseCases, RetentionUseCases, QueueUseCases, ConsentUseCases, TokenUseCases):
    """The write side of ledgermail; adapters call its methods, one per use case."""

    name = "ledgermail"
