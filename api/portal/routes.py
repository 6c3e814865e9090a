"""The person's pages (issue 7): log in with the mail password, see what is held and the
processing history, toggle consents, download an export, erase the account; and (issue 8)
teach the spam filter by moving messages into or out of Junk.

Every page that shows personal data records the read in the person's access ledger
(``record_data_access``, purpose ``portal``) before answering, as the API does. Routes
call use cases and read views only (DESIGN §1).
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse

from api.erasure import ErasureRunner
from api.portal import junk as junk_listing
from api.portal.jobs import ExportJobs
from api.portal.sessions import PortalSession
from api.portal.web import PORTAL_PURPOSE, LoginLocked, Portal, as_person
from api.subjects import subject_summary
from api.v1 import _catch_up
from domain.application.spam_learning import TRAINING_PURPOSE
from domain.model.account import Account
from domain.model.errors import DomainError, LegalHoldActive, SubjectErased
from domain.model.values import normalize_address
from projections.audit_trail.view import AuditQuery

#: Processing-history rows per page.
HISTORY_PAGE = 50
#: The reason an erasure requested here carries into its receipt (no personal data).
ERASURE_REASON = "requested by the person through the privacy portal"
#: Longest address and password a form may carry (RFC 5321 §4.5.3.1: 64 + 1 + 255).
MAX_ADDRESS, MAX_PASSWORD = 320, 1024

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")

FormText = Annotated[str, Form()]


def build_subject_router(portal: Portal) -> APIRouter:
    router = APIRouter()
    store = portal.store
    exports = ExportJobs(store)
    erasures = ErasureRunner(store)

    def logged_in(request: Request) -> tuple[PortalSession, Account] | None:
        session = portal.person(request)
        if session is None:
            return None
        account = portal.account_of(session)
        return None if account is None else (session, account)

    def record_read(account: Account, what: str) -> None:
        """The access ledger first, then the answer (DESIGN §2)."""
        try:
            with as_person(account.id):
                store.app.record_data_access(account.id, what, PORTAL_PURPOSE)
        except SubjectErased:
            raise HTTPException(status_code=404, detail="This account no longer exists.") from None

    # -- log in and out ---------------------------------------------------------------------

    @router.get("/login")
    def login_page(request: Request) -> Response:
        """The login form (it needs a session for its CSRF token: login CSRF)."""
        if logged_in(request) is not None:
            return portal.redirect("/")
        session = portal.session_of(request) or portal.sessions.new()
        response = portal.render(request, "login.html", session)
        portal.set_cookie(response, session)
        return response

    @router.post("/login")
    def login(request: Request, address: FormText = "", password: FormText = "",
              csrf_token: FormText = "") -> Response:
        """Check the mail password through the shared throttle; a new session id on success."""
        session = portal.form_session(request, csrf_token)
        failure = "The address or password is not right."
        if not address or len(address) > MAX_ADDRESS or len(password) > MAX_PASSWORD:
            return portal.render(request, "login.html", session, 401, error=failure)
        try:
            account_id = portal.attempt(portal.client_ip(request), address,
                                        lambda: store.app.authenticate(address, password))
        except LoginLocked:
            return portal.render(request, "login.html", session, 429,
                                 error="Too many failed logins. Try again later.")
        if account_id is None:
            return portal.render(request, "login.html", session, 401, error=failure)
        session.admin_token_id = None
        session.account_id = account_id
        portal.sessions.rotate(session)
        response = portal.redirect("/")
        portal.set_cookie(response, session)
        return response

    @router.post("/logout")
    def logout(request: Request, csrf_token: FormText = "") -> Response:
        """End the session on the server and forget the cookie."""
        session = portal.form_session(request, csrf_token)
        portal.sessions.drop(session)
        response = portal.redirect("/login")
        portal.clear_cookie(response)
        return response

    # -- what is held -----------------------------------------------------------------------

    @router.get("/")
    def overview(request: Request) -> Response:
        """What is held: addresses, mailboxes with counts and sizes, storage, consents, hold."""
        current = logged_in(request)
        if current is None:
            return portal.redirect("/login")
        session, account = current
        _catch_up(store)
        record_read(account, "subject summary")
        return portal.render(request, "overview.html", session, summary=subject_summary(store, account),
                             holds=store.app.legal_holds(account.address))

    @router.get("/history")
    def history(request: Request,
                before: Annotated[int | None, Query(ge=1)] = None) -> Response:
        """The person's processing history, newest first, ``HISTORY_PAGE`` at a time; the
        cursor is an audit position (a number, nothing personal)."""
        current = logged_in(request)
        if current is None:
            return portal.redirect("/login")
        session, account = current
        _catch_up(store)
        record_read(account, "processing history")
        _catch_up(store)  # so the page shows this read too
        pseudonym = store.app.pseudonym_of(account.subject_id)
        rows = store.audit_trail.query(AuditQuery(subject=pseudonym, before_position=before,
                                                  newest_first=True, limit=HISTORY_PAGE + 1))
        page = rows[:HISTORY_PAGE]
        older = page[-1].position if len(rows) > HISTORY_PAGE else None
        return portal.render(request, "history.html", session, entries=page, older=older,
                             first_page=before is None)

    # -- consents ---------------------------------------------------------------------------

    @router.get("/consents")
    def consents(request: Request) -> Response:
        """Each purpose the person ever named, with a form to give or withdraw it."""
        current = logged_in(request)
        if current is None:
            return portal.redirect("/login")
        session, account = current
        record_read(account, "consents")
        return portal.render(request, "consents.html", session,
                             consents=store.app.consents_of(account.address))

    @router.post("/consents")
    def change_consent(request: Request, purpose: FormText = "", action: FormText = "",
                       csrf_token: FormText = "") -> Response:
        """Give or withdraw consent to ``purpose`` (source ``portal``, basis ``consent``)."""
        session = portal.form_session(request, csrf_token)
        account = portal.account_of(session)
        if account is None:
            return portal.redirect("/login")
        if action not in ("give", "withdraw"):
            raise HTTPException(status_code=422, detail="Choose to give or to withdraw consent.")
        try:
            with as_person(account.id, purpose="consent"):
                if action == "give":
                    store.app.give_consent(account.address, purpose, basis="consent",
                                           source=PORTAL_PURPOSE)
                else:
                    store.app.withdraw_consent(account.address, purpose, source=PORTAL_PURPOSE)
        except (DomainError, ValueError):
            raise HTTPException(status_code=422, detail="That is not a purpose this server knows.") from None
        return portal.redirect("/consents")

    # -- spam and junk (issue 8) ------------------------------------------------------------

    @router.get("/junk")
    def junk(request: Request) -> Response:
        """The newest messages of Junk and of INBOX, each with a button that files it the
        other way (training the person's filter), and the last filing's outcome."""
        current = logged_in(request)
        if current is None:
            return portal.redirect("/login")
        session, account = current
        _catch_up(store)
        record_read(account, "junk listing")
        view = store.mailbox_view
        inbox, junk_box = junk_listing.person_mailboxes(view, account.id)
        notice, session.notice = session.notice, None
        return portal.render(request, "junk.html", session, notice=notice,
                             inbox=junk_listing.newest(view, inbox) if inbox else None,
                             junk=junk_listing.newest(view, junk_box) if junk_box else None)

    @router.post("/junk")
    def file_message(request: Request, mailbox: FormText = "", uid: FormText = "",
                     verdict: FormText = "", csrf_token: FormText = "") -> Response:
        """The "Spam" button moves a message from INBOX to Junk, "Not spam" from Junk to INBOX, by
        ``copy_messages(move=True)`` — IMAP MOVE's use case, whose hook trains the filter —
        acting as the person. The posted mailbox must be that person's INBOX or Junk
        (as the verdict says); anything else is a 404 and nothing moves."""
        session = portal.form_session(request, csrf_token)
        account = portal.account_of(session)
        if account is None:
            return portal.redirect("/login")
        if verdict not in ("spam", "ham"):
            raise HTTPException(status_code=422, detail="Choose Spam or Not spam.")
        source_id = junk_listing.parse_mailbox_id(mailbox)
        number = junk_listing.parse_uid(uid)
        inbox, junk_box = junk_listing.person_mailboxes(store.mailbox_view, account.id)
        source, target = (inbox, junk_box) if verdict == "spam" else (junk_box, inbox)
        if source_id is None or number is None or source is None or source.mailbox_id != source_id:
            raise HTTPException(status_code=404, detail="There is no such message in your mailboxes.")
        if target is None:
            raise HTTPException(status_code=409, detail=(
                "You have no Junk mailbox to move it to. Create one in your mail program "
                "(marked as Junk) and try again."))
        try:
            with as_person(account.id, purpose=TRAINING_PURPOSE):
                pairs, _uidvalidity, _position = store.app.copy_messages(
                    account.id, source.mailbox_id, [number], target.name, move=True)
        except SubjectErased:
            raise HTTPException(status_code=404, detail="This account no longer exists.") from None
        except DomainError:
            # The mailbox was renamed or deleted since the page was shown.
            session.notice = "Nothing was moved: your mailboxes changed. Try again below."
            return portal.redirect("/junk")
        if not pairs:
            session.notice = "Nothing was moved: that message is no longer there."
        elif verdict == "spam":
            session.notice = f"Moved to {target.name} as spam; your spam filter learned from it."
        else:
            session.notice = f"Moved to {target.name} as not spam; your spam filter learned from it."
        return portal.redirect("/junk")

    # -- download my data -------------------------------------------------------------------

    @router.get("/export")
    def export_page(request: Request) -> Response:
        """The exports this session asked for, with their state, and the button."""
        current = logged_in(request)
        if current is None:
            return portal.redirect("/login")
        session, account = current
        jobs = [job for job in (exports.of(i, account.id) for i in reversed(session.exports)) if job]
        return portal.render(request, "export.html", session, jobs=jobs,
                             running=any(job.status == "running" for job in jobs))

    @router.post("/export")
    def start_export(request: Request, csrf_token: FormText = "") -> Response:
        """Start building the person's export zip (Art. 15/20) in the background."""
        session = portal.form_session(request, csrf_token)
        account = portal.account_of(session)
        if account is None:
            return portal.redirect("/login")
        export_id = exports.start(account.id, account.address)
        if export_id not in session.exports:
            session.exports.append(export_id)
        return portal.redirect("/export")

    @router.get("/export/{export_id}/download")
    def download(request: Request, export_id: str) -> Response:
        """The zip, to the person it belongs to only (anyone else: 404)."""
        current = logged_in(request)
        if current is None:
            return portal.redirect("/login")
        _session, account = current
        job = exports.of(export_id, account.id) if _ID.match(export_id) else None
        if job is None or job.status != "done" or not job.path.exists():
            raise HTTPException(status_code=404, detail="There is no such download.")
        return FileResponse(job.path, media_type="application/zip",
                            filename=f"ledgermail-export-{export_id[:8]}.zip")

    # -- erase my account -------------------------------------------------------------------

    @router.get("/erase")
    def erase_page(request: Request) -> Response:
        """What erasure means, and the confirmation form (password and the address typed)."""
        current = logged_in(request)
        if current is None:
            return portal.redirect("/login")
        return portal.render(request, "erase.html", current[0])

    @router.post("/erase")
    def erase(request: Request, password: FormText = "", confirm_address: FormText = "",
              csrf_token: FormText = "") -> Response:
        """Check the confirmation, record the erasure request, run it in the background and
        show the receipt page; the person is logged out (the account is going)."""
        session = portal.form_session(request, csrf_token)
        account = portal.account_of(session)
        if account is None:
            return portal.redirect("/login")
        try:
            typed = normalize_address(confirm_address.strip()) if confirm_address.strip() else ""
        except (DomainError, ValueError):
            typed = ""
        if typed != account.address:
            return portal.render(request, "erase.html", session, 422,
                                 error="Type your account's address exactly to confirm.")
        try:
            confirmed = portal.attempt(portal.client_ip(request), account.address,
                                       lambda: store.app.authenticate(account.address, password))
        except LoginLocked:
            return portal.render(request, "erase.html", session, 429,
                                 error="Too many failed logins. Try again later.")
        if confirmed != account.id:
            return portal.render(request, "erase.html", session, 401, error="The password is not right.")
        try:
            with as_person(account.id, purpose="erasure"):
                request_id, _step = store.app.request_erasure(account.address, ERASURE_REASON)
        except LegalHoldActive:
            return portal.render(request, "erase.html", session, 409, error=(
                "Your data is under a legal hold, so it cannot be erased now. Your request was "
                "recorded; the operator will contact you."))
        if request_id not in session.receipts:
            session.receipts.append(request_id)
        session.account_id = None
        erasures.run(request_id, lambda: as_person(account.id, purpose="erasure"))
        return portal.redirect(f"/erasure/{request_id}")

    @router.get("/erasure/{request_id}")
    def receipt(request: Request, request_id: str) -> Response:
        """The erasure's progress and, once completed, its receipt: for the browser that
        asked (the account is gone, so no login) and for an administrator. The receipt
        holds no personal data: ids, times, a pseudonym, key ids."""
        session = portal.session_of(request)
        allowed = session is not None and (request_id in session.receipts
                                           or session.admin_token_id is not None)
        if not allowed or not _ID.match(request_id):
            raise HTTPException(status_code=404, detail="There is no such erasure request.")
        try:
            status = store.app.erasure_status(request_id)
        except (DomainError, ValueError):
            raise HTTPException(status_code=404, detail="There is no such erasure request.") from None
        receipt_json = (json.dumps(status["receipt"], indent=2, sort_keys=True)
                        if status["receipt"] is not None else None)
        return portal.render(request, "receipt.html", session, status=status["status"],
                             request_id=status["request_id"], receipt_json=receipt_json)

    return router

