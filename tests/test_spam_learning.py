"""The per-user learning spam filter (issue 8): trained by filing mail into and out of
\\Junk, classifying held-out mail, filing new MX mail per recipient, and erased with
the person. Storage tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import imaplib
import random
from pathlib import Path
from uuid import UUID

import pytest

from adapters.bootstrap import Container
from domain.application.context import acting
from domain.application.spam_learning import TRAINING_PURPOSE, filing_verdict
from domain.model.errors import SubjectErased
from domain.model.spam_filter import MAX_VOCABULARY, MIN_TRAINED_EACH, SpamFilter, spam_filter_id_for
from domain.model.spam_tokens import MAX_MESSAGE_TOKENS, message_tokens, plain_tokens, token_hash
from tests.imap_support import PASSWORD, add_user, running_imap
from tests.outbound_support import FakeResolver
from tests.scanner_support import ALICE, bodies, letter, running_mx, scored_store, send
from tests.storage_scan import everything_containing

CLEAN_ZONE = {"sender.test": ["v=spf1 ip4:127.0.0.1 -all"]}


def vocabulary(text: str) -> list[str]:
    return text.split()


SPAM_WORDS = vocabulary(
    "viagra pills casino winner prize lottery bitcoin crypto investment guaranteed cheap "
    "discount offer limited urgent claim unclaimed inheritance million dollars wire transfer "
    "bonus jackpot pharmacy replica watches loan credit approval refinance mortgage diet "
    "miracle enlargement rolex exclusive congratulations selected")
HAM_WORDS = vocabulary(
    "meeting agenda project deadline review quarterly report budget draft minutes lunch "
    "tomorrow schedule conference slides invoice contract colleague holiday family dinner "
    "weekend birthday recipe garden football train ticket hotel booking kernel patch release "
    "build pipeline merge request")
SHARED_WORDS = vocabulary(
    "the and your this that with from have please thanks regards today about more "
    "information here will need just time best know")


def corpus_message(rng: random.Random, kind: str, number: int) -> bytes:
    """A message drawn mostly from its kind's vocabulary, with shared words and some of
    the other kind's (so no single word decides), from the same sender domain for both."""
    own, other = (SPAM_WORDS, HAM_WORDS) if kind == "spam" else (HAM_WORDS, SPAM_WORDS)

    def word() -> str:
        roll = rng.random()
        return rng.choice(own if roll < 0.4 else SHARED_WORDS if roll < 0.85 else other)

    subject = " ".join(word() for _ in range(rng.randint(3, 6)))
    body = " ".join(word() for _ in range(rng.randint(25, 60)))
    return letter(f"{subject} {number}", body=body.encode() + b"\r\n")


def corpus(count: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    return ([corpus_message(rng, "spam", n) for n in range(count)],
            [corpus_message(rng, "ham", n) for n in range(count)])


# -- the classifier ---------------------------------------------------------------------


def test_after_training_on_50_spam_and_50_ham_held_out_mail_is_classified_far_better_than_chance(
        store: Container) -> None:
    app = store.app
    account_id = app.create_account(ALICE, PASSWORD)
    spam, ham = corpus(100)
    app.train_spam_filter(account_id, "spam", messages=spam[:50])
    app.train_spam_filter(account_id, "ham", messages=ham[:50])

    held_out = [(raw, True) for raw in spam[50:]] + [(raw, False) for raw in ham[50:]]
    verdicts = [(app.spam_probability(account_id, raw), is_spam) for raw, is_spam in held_out]
    assert all(p is not None for p, _ in verdicts)
    correct = sum((p is not None and p > 0.5) == is_spam for p, is_spam in verdicts)
    accuracy = correct / len(held_out)
    print(f"learning filter accuracy on {len(held_out)} held-out messages: {accuracy:.2f}")
    assert accuracy >= 0.9
    assert accuracy - 0.5 >= 0.35
    assert app.spam_filter_counts(account_id) == (50, 50)


def test_the_filter_abstains_until_it_has_seen_ten_messages_of_each_kind(store: Container) -> None:
    app = store.app
    account_id = app.create_account(ALICE, PASSWORD)
    spam, ham = corpus(MIN_TRAINED_EACH + 1)
    assert app.spam_probability(account_id, spam[-1]) is None  # no filter at all yet
    app.train_spam_filter(account_id, "spam", messages=spam[:MIN_TRAINED_EACH - 1])
    app.train_spam_filter(account_id, "ham", messages=ham[:MIN_TRAINED_EACH])
    assert app.spam_probability(account_id, spam[-1]) is None
    app.train_spam_filter(account_id, "spam", messages=spam[MIN_TRAINED_EACH - 1:MIN_TRAINED_EACH])
    probability = app.spam_probability(account_id, spam[-1])
    assert probability is not None and probability > 0.5


def test_a_verdict_other_than_spam_or_ham_is_refused_before_anything_is_stored(store: Container) -> None:
    account_id = store.app.create_account(ALICE, PASSWORD)
    position = store.app.log_position()
    with pytest.raises(ValueError, match="spam"):
        store.app.train_spam_filter(account_id, "junk", messages=[letter()])
    assert store.app.log_position() == position


def test_the_vocabulary_is_capped_and_a_replay_gives_the_same_state() -> None:
    spam_filter = SpamFilter(subject_id="s", account_id=UUID(int=1))
    per_message = MAX_MESSAGE_TOKENS
    messages = MAX_VOCABULARY // per_message + 5
    for n in range(messages):
        spam_filter.learn("spam" if n % 2 else "ham",
                          [token_hash(f"word{n}-{i}") for i in range(per_message)] + [token_hash("common")])
    assert len(spam_filter.tokens) <= MAX_VOCABULARY
    assert spam_filter.tokens[token_hash("common")] == [messages // 2, messages - messages // 2]
    replayed = None
    for pending in spam_filter.collect_events():
        replayed = pending.mutate(replayed)
    assert replayed is not None and replayed.tokens == spam_filter.tokens


def test_tokens_come_from_subject_and_text_never_from_our_own_verdict_fields() -> None:
    raw = (b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=9.0 required=5.0\r\n"
           b"Received: from relayhostname by mx\r\nFrom: Bob <bob@Sender.test>\r\n"
           b"Subject: =?utf-8?q?Caf=C3=A9_offer?=\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Visit <a href='https://shop.test/x'>us</a>"
           b" &amp; save</p>\r\n--b--\r\n")
    tokens = plain_tokens(raw)
    assert tokens[:3] == ["subject:café", "subject:offer", "from-domain:sender.test"]
    assert {"part:text/html", "url:shop.test", "visit", "save"} <= set(tokens)
    assert not {"yes", "score", "required", "relayhostname", "href"} & set(tokens)
    assert message_tokens(raw) == [token_hash(t) for t in tokens]


@pytest.mark.parametrize(("source", "target", "verdict"), [
    (None, "\\Junk", "spam"), ("\\Archive", "\\Junk", "spam"), ("\\Junk", None, "ham"),
    ("\\Junk", "\\Archive", "ham"), ("\\Junk", "\\Trash", None), ("\\Junk", "\\Junk", None),
    (None, "\\Archive", None), (None, "\\Trash", None),
])
def test_filing_into_junk_is_spam_and_out_of_junk_but_not_to_trash_is_ham(
        source: str | None, target: str | None, verdict: str | None) -> None:
    assert filing_verdict(source, target) == verdict


# -- training by filing over IMAP -------------------------------------------------------


def test_imap_move_and_copy_into_junk_train_spam_and_moving_out_trains_ham(store: Container) -> None:
    app = store.app
    account_id = add_user(store, ALICE)
    spam, ham = corpus(3)
    for raw in (spam[0], spam[1], ham[0]):
        app.deliver([ALICE], raw)
    with running_imap(store) as imap:
        client = imaplib.IMAP4("127.0.0.1", imap.imap)
        try:
            assert client.login(ALICE, PASSWORD)[0] == "OK"
            assert client.select("INBOX")[0] == "OK"
            assert client.uid("MOVE", "1", "Junk")[0] == "OK"
            after_move = app.spam_filter_counts(account_id)
            assert client.uid("COPY", "2", "Junk")[0] == "OK"
            after_copy = app.spam_filter_counts(account_id)
            assert client.uid("COPY", "3", "Archive")[0] == "OK"  # not about Junk: no training
            after_archive = app.spam_filter_counts(account_id)
            assert client.select("Junk")[0] == "OK"
            assert client.uid("MOVE", "1", "INBOX")[0] == "OK"
            after_rescue = app.spam_filter_counts(account_id)
            assert client.uid("MOVE", "2", "Trash")[0] == "OK"  # deleting spam is no opinion
            after_trash = app.spam_filter_counts(account_id)
        finally:
            client.logout()
    assert (after_move, after_copy, after_archive, after_rescue, after_trash) == (
        (1, 0), (2, 0), (2, 0), (2, 1), (2, 1))
    store.catch_up()
    trained = [row.entry for row in store.audit_trail.rows(app.subject_pseudonym_for(ALICE))
               if row.entry.event_type == "SpamFilter.Trained"]
    assert len(trained) == 3
    assert {entry.purpose for entry in trained} == {TRAINING_PURPOSE}
    assert {entry.stream_id for entry in trained} == {str(spam_filter_id_for(account_id))}


def test_a_move_into_junk_succeeds_even_when_training_fails(store: Container) -> None:
    app = store.app
    account_id = add_user(store, ALICE)
    result = app.deliver([ALICE], corpus(1)[0][0])
    inbox_id = app.mailbox_id_of(account_id, "INBOX")
    copy = app.repository.get(result.copies[0].copy_id)
    app.ports.blobs.delete_many([copy.blob_id])  # the body is gone: training cannot read it

    pairs, _, _ = app.copy_messages(account_id, inbox_id, [1], "Junk", move=True)

    assert pairs == [(1, 1)]
    assert app.spam_filter_counts(account_id) == (0, 0)
    junk = app.repository.get(app.mailbox_id_of(account_id, "Junk"))
    assert len(app.live_copies(junk)) == 1


# -- filing new MX mail -----------------------------------------------------------------


def test_after_training_similar_spam_over_smtp_lands_in_that_users_junk_only(
        tmp_path: Path, backend: str) -> None:
    carol = "carol@example.test"
    spam, ham = corpus(52, seed=11)
    with scored_store(tmp_path, backend) as store:
        app = store.app
        with acting("admin:test", protocol="test", purpose="testing"):
            app.create_account(carol, PASSWORD)
            account_id = app.account_id_for(ALICE)
            app.train_spam_filter(account_id, "spam", messages=spam[:50])
            app.train_spam_filter(account_id, "ham", messages=ham[:50])
        with running_mx(store, FakeResolver(txt=CLEAN_ZONE)) as smtp:
            assert send(smtp.mx, "bob@sender.test", spam[50], recipients=(ALICE, carol))[0] == 250
            assert send(smtp.mx, "bob@sender.test", ham[50])[0] == 250
        alice_junk, alice_inbox = bodies(store, ALICE, "Junk"), bodies(store, ALICE, "INBOX")
        carol_junk, carol_inbox = bodies(store, carol, "Junk"), bodies(store, carol, "INBOX")
    assert [b.endswith(spam[50]) for b in alice_junk] == [True]
    assert [b.endswith(ham[50]) for b in alice_inbox] == [True]
    # Carol never trained a filter: the message scored clean for her.
    assert carol_junk == [] and [b.endswith(spam[50]) for b in carol_inbox] == [True]


def test_with_the_learning_weight_zero_trained_spam_stays_in_the_inbox(tmp_path: Path, backend: str) -> None:
    spam, ham = corpus(51, seed=11)
    with scored_store(tmp_path, backend, learning_weight=0.0) as store:
        app = store.app
        with acting("admin:test", protocol="test", purpose="testing"):
            account_id = app.account_id_for(ALICE)
            app.train_spam_filter(account_id, "spam", messages=spam[:50])
            app.train_spam_filter(account_id, "ham", messages=ham[:50])
        with running_mx(store, FakeResolver(txt=CLEAN_ZONE)) as smtp:
            assert send(smtp.mx, "bob@sender.test", spam[50])[0] == 250
        assert bodies(store, ALICE, "Junk") == [] and len(bodies(store, ALICE, "INBOX")) == 1


# -- erasure ----------------------------------------------------------------------------


def test_erasure_marks_the_filter_shreds_its_key_and_leaves_no_trained_token(store: Container) -> None:
    app = store.app
    account_id = app.create_account(ALICE, PASSWORD)
    canary = "zq" + UUID(int=random.Random(3).getrandbits(128)).hex[:12] + "canary"
    spam, ham = corpus(60)
    marked = [raw + canary.encode() + b"\r\n" for raw in spam]
    # Over 100 events: the filter is snapshotted, and the snapshot must be shredded too.
    app.train_spam_filter(account_id, "spam", messages=marked)
    app.train_spam_filter(account_id, "ham", messages=ham)
    filter_id = spam_filter_id_for(account_id)
    assert app.repository.get(filter_id).tokens[token_hash(canary)] == [60, 0]
    store.catch_up()
    for needle in (canary.encode(), token_hash(canary).encode()):
        assert everything_containing(store.settings, needle) == []  # sealed, never plain

    receipt = app.erase_subject(ALICE, "data subject request")

    request = app.repository.get(UUID(receipt["erasure_id"]))
    assert str(filter_id) in request.stream_ids
    assert receipt["verification"]["passed"] is True
    app.evict(filter_id)
    with pytest.raises(SubjectErased):
        app.repository.get(filter_id)
    assert app.spam_probability(account_id, spam[0]) is None
    assert app.spam_probabilities([ALICE], spam[0]) == {}
    store.catch_up()
    for needle in (canary.encode(), token_hash(canary).encode()):
        assert everything_containing(store.settings, needle) == []
