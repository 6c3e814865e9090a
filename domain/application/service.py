"""``LedgerMail``: the one application, all use cases (accounts, mail, erasure, export, outbound queue,
consent)."""

from __future__ import annotations

from domain.application.consent import ConsentUseCases
from domain.application.erasure import ErasureUseCases
from domain.application.outbound import QueueUseCases


class LedgerMail(ErasureUseCases, QueueUseCases, ConsentUseCases):
    """The write side of ledgermail; adapters call its methods, one per use case."""

    name = "ledgermail"
