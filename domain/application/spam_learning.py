"""The per-user learning spam filter's use cases (issue 8): training and classifying.

Training follows what the user does, the way Dovecot's antispam plugin and
Stalwart do it: a message copied or moved into the account's \\Junk mailbox (RFC 6154)
is trained as spam, one copied or moved out of \\Junk into any mailbox but \\Trash as
ham (deleting spam is not saying it was wanted). The hook is ``copy_messages`` itself,
so IMAP COPY/MOVE and any portal action that files mail through it train by the one
path; ``train_spam_filter`` is there for callers that judge messages directly.

Training runs right after the copy or move has committed, in its own transaction, and
never fails it: the user's mail is filed whatever happens to the statistics (an error
is logged, without addresses or content, and the move still answers OK).

Classifying (``spam_probabilities``) is for the MX scanner: one probability per local
recipient whose filter is trained enough, from the cached aggregate (no copy, no write).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

from domain.application.context import acting
from domain.application.mail import MailUseCases
from domain.model.account import Account
from domain.model.errors import DomainError, MessageNotFound
from domain.model.mailbox import Mailbox
from domain.model.message import MessageCopy, copy_id_for
from domain.model.spam_filter import VERDICTS, SpamFilter, spam_filter_id_for
from domain.model.spam_tokens import message_tokens

log = logging.getLogger(__name__)

#: Messages trained per command: moving ten thousand messages into Junk trains on the
#: first ones only, so one IMAP command cannot cost minutes of body reads.
MAX_TRAINED_PER_COMMAND = 500
#: The purpose the audit trail records for training events.
TRAINING_PURPOSE = "spam filtering"


class SpamLearningUseCases(MailUseCases):
    def copy_messages(self, account_id: UUID, source_id: UUID, uids: list[int],
                      target_name: str, *, move: bool = False) -> tuple[list[tuple[int, int]], int, int]:
        """``MailUseCases.copy_messages``, then the filter learns from where the
        messages went (see the module docstring); the position returned is the copy's."""
        result = super().copy_messages(account_id, source_id, uids, target_name, move=move)
        pairs = result[0]
        if pairs:
            try:
                self._learn_from_filing(account_id, source_id, target_name, [target for _, target in pairs])
            except Exception:  # noqa: BLE001 - training must never fail the user's move
                log.exception("spam filter training after %s failed", "MOVE" if move else "COPY")
        return result

    def _learn_from_filing(self, account_id: UUID, source_id: UUID, target_name: str,
                           target_uids: list[int]) -> None:
        source: Mailbox | None = self.peek(source_id)
        target_id = self.mailbox_id_of(account_id, target_name)
        target: Mailbox | None = self.peek(target_id)
        if source is None or target is None:
            return
        verdict = filing_verdict(source.special_use, target.special_use)
        if verdict is None:
            return
        self.train_spam_filter(account_id, verdict,
                               copy_ids=[copy_id_for(target_id, uid) for uid in target_uids])

    def train_spam_filter(self, account_id: UUID, verdict: str, *,
                          copy_ids: Iterable[UUID] = (), messages: Iterable[bytes] = ()) -> int:
        """Train the account's filter on its own message copies and/or raw messages,
        all as ``verdict`` (``spam`` or ``ham``); one ``Trained`` event per message, in
        one transaction. Returns the log position (or the current one if nothing was
        trained). Copies that are not the account's raise ``MessageNotFound``."""
        if verdict not in VERDICTS:
            raise ValueError(f"a message is trained as one of {VERDICTS}, not {verdict!r}")
        account: Account = self.load(account_id, what="the account")
        owned = set(account.mailbox_ids_ever)
        token_sets = [message_tokens(raw) for raw in messages]
        for copy_id in copy_ids:
            if len(token_sets) >= MAX_TRAINED_PER_COMMAND:
                break
            copy: MessageCopy | None = self.peek(copy_id)
            if copy is None or copy.erased or str(copy.mailbox_id) not in owned:
                raise MessageNotFound(str(copy_id))
            token_sets.append(message_tokens(self.ports.blobs.get(copy.blob_id, copy.data_key)))
        token_sets = token_sets[:MAX_TRAINED_PER_COMMAND]
        if not token_sets:
            return self.log_position()
        filter_id = spam_filter_id_for(account_id)

        def body() -> int:
            # Re-read under the lock: an erasure marks the account before the filter.
            owner: Account = self.load(account_id, what="the account")
            spam_filter: SpamFilter | None = self.load_or_none(filter_id)
            if spam_filter is None:
                spam_filter = SpamFilter(subject_id=owner.subject_id, account_id=owner.id)
            spam_filter.check_not_erased()
            for tokens in token_sets:
                spam_filter.learn(verdict, tokens)
            return self.save_with_envelope(spam_filter)

        with acting(purpose=TRAINING_PURPOSE):
            return self.retrying("the spam filter", lambda: [filter_id], body)

    def spam_filter_counts(self, account_id: UUID) -> tuple[int, int]:
        """(spam, ham) messages the account's filter has been trained on."""
        spam_filter: SpamFilter | None = self.peek(spam_filter_id_for(account_id))
        if spam_filter is None or spam_filter.erased:
            return 0, 0
        return spam_filter.spam_trained, spam_filter.ham_trained

    def spam_probability(self, account_id: UUID, raw: bytes) -> float | None:
        """The account's filter's verdict on ``raw``; ``None`` when it abstains."""
        return self._probability(account_id, message_tokens(raw))

    def spam_probabilities(self, addresses: Iterable[str], raw: bytes) -> dict[str, float]:
        """Per recipient address, its owner's filter's spam probability for ``raw``;
        addresses with no account here or no trained filter are left out. The message
        is tokenized once, whatever the number of recipients."""
        found: dict[str, float] = {}
        tokens: list[str] | None = None
        for address in addresses:
            try:
                account_id = self.delivery_account_id(address)
            except DomainError:
                continue
            if tokens is None:
                tokens = message_tokens(raw)
            prob = self._probability(account_id, tokens)
            if prob is not None:
                found[address] = prob
        return found

    def _probability(self, account_id: UUID, tokens: list[str]) -> float | None:
        try:
            spam_filter: SpamFilter | None = self.peek(spam_filter_id_for(account_id))
        except DomainError:  # the person was erased: no filter
            return None
        if spam_filter is None or spam_filter.erased:
            return None
        return spam_filter.spam_probability(tokens)


def filing_verdict(source_use: str | None, target_use: str | None) -> str | None:
    """What filing a message from a mailbox of ``source_use`` into one of ``target_use``
    says about it: into \\Junk is spam; out of \\Junk into anything but \\Trash is ham;
    anything else says nothing."""
    if target_use == "\\Junk" and source_use != "\\Junk":
        return "spam"
    if source_use == "\\Junk" and target_use not in ("\\Junk", "\\Trash"):
        return "ham"
    return None
