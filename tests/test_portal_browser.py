"""The privacy portal in a real browser (issue 7): headless Chromium (Debian's
``chromium``, driven by Playwright) against a real ``ledgermail serve`` process on both
backends. A person logs in, toggles a consent, downloads the export, erases the account
and sees the receipt; an administrator opens the console. Each page is saved as a
screenshot under ``test-artifacts/portal/`` for review.

Without ``/usr/bin/chromium`` the test skips loudly, except under ``CI=true``, where it
fails (``.ci/run`` installs it), as the PostgreSQL tests do (tests/conftest.py).
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.config import Settings
from tests.conftest import IN_CI
from tests.test_cli import LEDGERMAIL, command_env, free_port, ledgermail, wait_for_health

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "portal"
ALICE, PASSWORD = "alice@example.test", "a long secret"
MESSAGE = (b"From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Hello\r\n\r\n"
           b"Hi Alice, from the browser test!\r\n")
#: Milliseconds Playwright waits for a page state (the export and erasure pages reload
#: themselves every 2 s while their work runs in the background).
WAIT_MS = 30_000


def require_chromium() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[test]')"
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{problem}, and CI=true makes the browser test mandatory")
    pytest.skip(f"SKIPPING THE BROWSER TEST: {problem}")


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[str, str]]:
    """``serve`` on a fresh data dir with only the HTTP listener, one person with mail and
    a consent, and an admin token: (base URL, token)."""
    for args, stdin in ((("domain", "add", "example.test"), b""),
                        (("user", "add", ALICE, "--password-stdin"), PASSWORD.encode() + b"\n"),
                        (("deliver", ALICE), MESSAGE),
                        (("consent", "give", ALICE, "--purpose", "newsletter"), b"")):
        result = ledgermail(settings, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
    created = ledgermail(settings, "token", "create", "--scope", "admin", "--name", "console")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()

    port = free_port()
    env = command_env(settings)
    env["LEDGERMAIL_LISTEN__HTTP"] = f"127.0.0.1:{port}"
    for name in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"):
        env[f"LEDGERMAIL_LISTEN__{name.upper()}"] = ""
    process = subprocess.Popen([str(LEDGERMAIL), "serve"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        wait_for_health(port, process)
        # localhost, not 127.0.0.1: Chromium counts it as a secure context, so it keeps
        # the portal's Secure cookie over plain http (a real deployment uses https).
        yield f"http://localhost:{port}", token
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert b"Traceback" not in err, err
    assert ALICE.encode() not in err, "an address was logged"


def test_a_person_logs_in_toggles_a_consent_downloads_the_export_and_erases_in_chromium(
        server: tuple[str, str], settings: Settings) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    base, token = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    urls: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(accept_downloads=True)
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            page.on("request", lambda request: urls.append(request.url))
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text)
                    if message.type == "error" else None)

            def shot(name: str) -> None:
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

            # Log in.
            page.goto(f"{base}/portal/")
            expect(page).to_have_url(f"{base}/portal/login")
            shot("login")
            page.get_by_label("E-mail address").fill(ALICE)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{base}/portal/")
            expect(page.get_by_role("heading", name="What we hold about you")).to_be_visible()
            expect(page.get_by_role("row", name=re.compile(r"INBOX 1"))).to_be_visible()
            shot("overview")
            page.get_by_role("link", name="Processing history").click()
            expect(page.get_by_text("MessageCopy.Created").first).to_be_visible()
            shot("history")

            # Toggle a consent off.
            page.get_by_role("link", name="Consents").click()
            page.get_by_role("button", name="Withdraw consent").click()
            expect(page.get_by_role("button", name="Give consent")).to_be_visible()
            expect(page.locator(".state-withdrawn")).to_have_text("withdrawn")
            shot("consents")
            listed = ledgermail(settings, "consent", "list", ALICE)
            assert "withdrawn" in listed.stdout, listed

            # Download my data.
            page.get_by_role("link", name="Download my data").click()
            page.get_by_role("button", name="Prepare my data").click()
            link = page.get_by_role("link", name="Download the zip")
            expect(link).to_be_visible()
            shot("export")
            with page.expect_download() as download_info:
                link.click()
            archive = Path(download_info.value.path()).read_bytes()
            assert archive.startswith(b"PK")
            with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
                assert b"Hi Alice, from the browser test!" in zipped.read("mailboxes/INBOX.mbox")

            # Erase, confirming in the dialog, and see the receipt.
            page.get_by_role("link", name="Erase my account").click()
            page.get_by_label("Type your e-mail address to confirm").fill(ALICE)
            page.get_by_label("Your password").fill(PASSWORD)
            shot("erase")
            dialogs: list[str] = []
            page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
            page.get_by_role("button", name="Erase my account").click()
            expect(page).to_have_url(re.compile(r"/portal/erasure/[0-9a-f-]{36}$"))
            assert dialogs and "cannot be undone" in dialogs[0]
            expect(page.locator("#erasure-status")).to_have_text("completed")
            expect(page.locator("#receipt")).to_contain_text('"passed": true')
            shot("receipt")
            request_id = page.url.rsplit("/", 1)[1]

            # The account is gone: its password opens nothing any more.
            page.goto(f"{base}/portal/login")
            page.get_by_label("E-mail address").fill(ALICE)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("alert")).to_have_text("The address or password is not right.")

            # The administrator's console, in a separate browser context.
            admin = browser.new_context().new_page()
            admin.on("request", lambda request: urls.append(request.url))
            admin.goto(f"{base}/portal/admin")
            admin.screenshot(path=str(ARTIFACTS / "admin-login.png"), full_page=True)
            admin.get_by_label("Admin token").fill(token)
            admin.get_by_role("button", name="Open the console").click()
            expect(admin.locator("#audit-chain")).to_contain_text("Intact")
            expect(admin.locator("#closed-requests")).to_contain_text(request_id)
            admin.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)
            # The strict CSP blocked nothing (no inline script, style or handler). Failed
            # loads are expected: the 401 of the refused login, the browser's favicon.ico.
            assert [e for e in errors if not e.startswith("Failed to load resource")] == []
        finally:
            browser.close()

    # The account is erased, and no address ever went into a URL.
    assert ALICE not in ledgermail(settings, "user", "list").stdout
    assert urls and not [url for url in urls if "alice" in url or "example.test" in url]
    for name in ("login", "overview", "history", "consents", "export", "erase", "receipt",
                 "admin-login", "admin"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 1000, name
