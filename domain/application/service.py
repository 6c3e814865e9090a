"""``LedgerMail``: the one application, all use cases (accounts, mail, erasure, export)."""

from __future__ import annotations

from domain.application.erasure import ErasureUseCases


class LedgerMail(ErasureUseCases):
    """The write side of ledgermail; adapters call its methods, one per use case."""

    name = "ledgermail"
