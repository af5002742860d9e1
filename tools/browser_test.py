"""Browser test of the payd console (Playwright for Python driving Debian's Chromium).

Run by tools/browser.sh (`make browser-test`) against a live payd. Scenarios:
  1. a cardholder signs up, verifies the e-mail (code from the development mailbox), signs in, issues a
     card (number and CVV shown once), tops up, and pays another person by card number through the
     confirmation step; a double click on "Pay" and a resubmitted top-up form move money once;
  2. the cardholder opening another person's card page gets the API's 404 and sees no data, and an
     admin page the API's 403; signing out revokes the session (the old cookie is refused);
  3. CSRF: a cookie-authenticated change without the token, or with a wrong one, is refused 403; tokens
     are not visible to scripts (HttpOnly cookies, nothing in Web Storage); the CSP header is strict and
     no page breaks it;
  4. a merchant applies and uploads documents, an admin reviews them and approves the merchant, the
     merchant creates an API key, a payment made with it over HTTP shows in the merchant's list and is
     refunded through the confirmation form; a webhook endpoint is added (signing secret shown once)
     and its delivery log opened; the key is rotated (new secret once) and revoked (then refused).
`--screenshots DIR` also saves the main pages at 1280 and 390 pixels wide.
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["PAYD_BASE"]
ADMIN = (os.environ["PAYD_ADMIN_EMAIL"], os.environ["PAYD_ADMIN_PASSWORD"])
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "user-pass-123"
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
SHOTS = sys.argv[sys.argv.index("--screenshots") + 1] if "--screenshots" in sys.argv else None
checks = 0


def ok(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)
    print(f"  ok: {what}")


def call(method, path, token=None, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, json.loads(text) if text else None


def login(email, password):
    s, b = call("POST", "/api/v1/auth/login", body={"email": email, "password": password})
    assert s == 200, (s, b)
    return b["access_token"]


def mailbox_code(admin, email):
    for _ in range(100):
        s, b = call("GET", f"/api/v1/admin/mailbox?to={email}&limit=1", admin)
        if s == 200 and b["items"]:
            m = re.search(r"\b(\d{6})\b", b["items"][0]["text"])
            if m:
                return m.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no verification e-mail to {email}")


def verified_user(admin, email):
    s, b = call("POST", "/api/v1/users", admin, {"first_name": "Made", "last_name": "Bagus", "email": email,
                                                  "password": PASSWORD, "email_verified": True})
    assert s == 201, (s, b)
    return b["id"], login(email, PASSWORD)


def card_balance(token, card):
    s, b = call("GET", f"/api/v1/cards/{card}/balance", token)
    assert s == 200, (s, b)
    return b["balance"]


def shot(page, name):
    if not SHOTS:
        return
    os.makedirs(SHOTS, exist_ok=True)
    size = page.viewport_size
    for width, suffix in ((1280, "desktop"), (390, "phone")):
        page.set_viewport_size({"width": width, "height": 800 if width > 500 else 844})
        page.wait_for_timeout(150)
        page.screenshot(path=os.path.join(SHOTS, f"{name}-{suffix}.png"))
    page.set_viewport_size(size)


def sign_in(page, email, password):
    # A hash-only goto is a same-document navigation: the console renders the sign-in view on the
    # hashchange that follows, so wait for it before filling in (the previous view may have its own
    # E-mail field).
    page.goto(f"{BASE}/console#/signin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    # A debug build hashes with the production argon2 cost: give it time on a loaded machine, and
    # name the console's error if the sign-in was refused.
    try:
        expect(page.get_by_role("heading", level=1)).not_to_have_text("Sign in", timeout=20000)
    except AssertionError:
        alerts = page.get_by_role("alert").all_inner_texts()
        raise AssertionError(f"sign-in as {email} did not leave the sign-in page; console says: {alerts}")


def new_page(browser, violations):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text or m.type == "error" and "Refused" in m.text else None)
    page.on("pageerror", lambda e: violations.append(f"page error: {e}"))
    return ctx, page


def cardholder(browser, admin, violations):
    print("scenario: cardholder signs up, verifies, issues a card, tops up, pays a person")
    email = f"ayu.{uuid.uuid4().hex[:8]}@example.com"
    ctx, page = new_page(browser, violations)
    resp = page.goto(f"{BASE}/console#/signup")
    csp = resp.headers.get("content-security-policy", "")
    ok("script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp,
       f"strict CSP on /console: {csp}")
    ok(resp.headers.get("x-content-type-options") == "nosniff", "nosniff on /console")
    page.get_by_label("First name").fill("Ayu")
    page.get_by_label("Last name").fill("Lestari")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    shot(page, "signup")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Verify your e-mail")).to_be_visible()
    page.get_by_label("Code").fill(mailbox_code(admin, email))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("Your e-mail is verified")).to_be_visible()
    ok(True, "e-mail verified through the console")

    sign_in(page, email, PASSWORD)
    expect(page.get_by_role("heading", name="Your cards")).to_be_visible()
    ok(page.evaluate("document.cookie") == "", "no session cookie is visible to scripts (HttpOnly)")
    page.get_by_role("button", name="Issue a card").click()
    expect(page.get_by_test_id("issued-number")).to_be_visible()
    number = page.get_by_test_id("issued-number").inner_text().strip()
    cvv = page.get_by_test_id("issued-cvv").inner_text().strip()
    ok(re.fullmatch(r"\d{16}", number) and re.fullmatch(r"\d{3}", cvv), "card number and CVV shown once with a warning")
    expect(page.get_by_text("shown only once")).to_be_visible()
    page.get_by_role("button", name="I have saved them, hide").click()
    expect(page.get_by_test_id("issued-number")).to_have_count(0)

    me = login(email, PASSWORD)
    s, cards = call("GET", "/api/v1/cards", me)
    card = cards["items"][0]
    ok(card["last4"] == number[-4:], "the issued card is the user's")

    # Top-up; the same form submitted again replays the first answer (its idempotency key).
    page.goto(f"{BASE}/console#/topup")
    page.get_by_label("Amount").fill("10000.00")
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_text("Top-up:")).to_be_visible()
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_text("Top-up:")).to_be_visible()
    ok(card_balance(me, card["id"]) == 1000000, "a resubmitted top-up form credits once (1000000)")
    # A reload keeps the form's key (it is in the address): submitting again after it replays too.
    ok("?k=" in page.url, "the top-up form's key is in the page address")
    page.reload()
    page.get_by_label("Amount").fill("10000.00")
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_text("Top-up:")).to_be_visible()
    ok(card_balance(me, card["id"]) == 1000000, "submitting the form again after a reload credits once")

    # The payee: another person with a card.
    _, bob = verified_user(admin, f"bob.{uuid.uuid4().hex[:8]}@example.com")
    s, issued = call("POST", "/api/v1/cards", bob, {"card_type": "debit", "brand": "visa"})
    assert s == 201, issued
    bob_card, bob_number = issued["card"]["id"], issued["card_number"]

    page.goto(f"{BASE}/console#/pay")
    page.get_by_label("Recipient card number").fill(" ".join(bob_number[i:i + 4] for i in range(0, 16, 4)))
    page.get_by_label("Amount").fill("2500.00")
    page.get_by_role("button", name="Continue").click()
    preview = page.get_by_test_id("pay-preview")
    expect(preview).to_contain_text("Made B.")
    expect(preview).to_contain_text(f"**** **** **** {bob_number[-4:]}")
    ok(bob_number not in preview.inner_text(), "the confirmation shows the recipient masked, by name")
    shot(page, "pay-confirm")
    page.get_by_role("button", name=re.compile(r"^Pay ")).dblclick()
    expect(page.get_by_text("Paid Made B.")).to_be_visible()
    page.wait_for_timeout(500)
    ok(card_balance(me, card["id"]) == 750000 and card_balance(bob, bob_card) == 250000,
       "a double click on Pay pays once (750000 / 250000)")
    s, transfers = call("GET", "/api/v1/transfers", me)
    ok(s == 200 and len(transfers["items"]) == 1, "one transfer booked")

    page.goto(f"{BASE}/console#/cards/{card['id']}")
    expect(page.get_by_test_id("balance")).to_have_text(re.compile(r"7,?500\.00"))
    expect(page.get_by_role("cell", name=re.compile("transfer"))).to_have_count(1)
    shot(page, "card")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    csv = open(download.value.path(), encoding="utf-8").read().splitlines()
    ok(csv[0].startswith('"date","kind","amount_minor"') and len(csv) == 3 and '"-250000"' in csv[1],
       f"the statement exports as CSV ({len(csv) - 1} rows)")
    page.goto(f"{BASE}/console#/stats")
    expect(page.locator("figure.chart").first).to_be_visible()
    shot(page, "figures")

    # Someone else's card: the API's 404, no data on the page.
    page.goto(f"{BASE}/console#/cards/{bob_card}")
    expect(page.get_by_role("alert").first).to_contain_text("not found")
    ok(page.get_by_test_id("balance").count() == 0 and bob_number[-4:] not in page.inner_text("main"),
       "another person's card page shows the API's error and no data")

    # CSRF: the session cookie alone does not change anything.
    for headers, what in (({}, "without a CSRF token"), ({"X-CSRF-Token": "0" * 64}, "with a wrong CSRF token")):
        r = page.evaluate("""async (h) => {
            const r = await fetch('/api/v1/cards', {method: 'POST', credentials: 'same-origin',
              headers: Object.assign({'Content-Type': 'application/json'}, h), body: JSON.stringify({card_type: 'debit', brand: 'visa'})});
            return [r.status, (await r.json()).error.code];
        }""", headers)
        ok(r == [403, "csrf_failed"], f"a cookie-authenticated change {what} is refused 403 ({r})")
    ok(page.evaluate("localStorage.length + sessionStorage.length") == 0, "nothing in Web Storage")
    s, cards = call("GET", "/api/v1/cards", me)
    ok(len(cards["items"]) == 1, "the refused requests issued no card")

    # An admin page: the API's 403, no data.
    page.goto(f"{BASE}/console#/admin/users")
    expect(page.get_by_role("alert").first).to_contain_text("requires role admin")
    ok(page.get_by_role("table").count() == 0, "a cardholder on an admin page sees the API's 403 and no data")

    # Signing out revokes the session: the old cookie no longer authenticates.
    old = {c["name"]: c for c in ctx.cookies()}
    ok(old["payd_at"]["httpOnly"] and old["payd_at"]["sameSite"] == "Strict" and old["payd_rt"]["path"] == "/console/session",
       "session cookies are HttpOnly, SameSite=Strict, refresh cookie path-limited")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    s, b = call("GET", "/api/v1/auth/me", headers={"Cookie": f"payd_at={old['payd_at']['value']}"})
    ok(s == 401 and b["error"]["code"] == "session_revoked", f"sign-out revoked the session ({s})")
    ctx.close()
    return {"number": number, "cvv": cvv, "month": card["expiry_month"], "year": card["expiry_year"], "token": me, "id": card["id"]}


def merchant(browser, admin, payer, violations):
    print("scenario: merchant onboarding, admin approval, API key, payment in the list")
    email = f"shop.{uuid.uuid4().hex[:8]}@example.com"
    verified_user(admin, email)
    ctx, page = new_page(browser, violations)
    sign_in(page, email, PASSWORD)
    page.goto(f"{BASE}/console#/merchants")
    page.get_by_label("Business name").fill("Toko Makmur")
    page.get_by_label("Contact e-mail").fill(email)
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"#/merchants/\d+$"))
    merchant_id = int(page.url.rsplit("/", 1)[1])
    for doc_type in ("business_licence", "owner_identity"):
        page.get_by_label("Document", exact=True).select_option(doc_type)
        page.get_by_label("File (PDF, PNG or JPEG)").set_input_files({"name": f"{doc_type}.pdf", "mimeType": "application/pdf", "buffer": PDF})
        page.get_by_role("button", name="Upload").click()
        expect(page.get_by_text("Uploaded; it waits for review.")).to_be_visible()
        expect(page.get_by_role("cell", name=doc_type.replace("_", " "), exact=True)).to_be_visible()
    shot(page, "merchant")

    actx, apage = new_page(browser, violations)
    sign_in(apage, *ADMIN)
    apage.goto(f"{BASE}/console#/admin/review")
    expect(apage.get_by_role("link", name=f"#{merchant_id}").first).to_be_visible()
    shot(apage, "admin-review")
    apage.goto(f"{BASE}/console#/admin/merchants/{merchant_id}")
    apage.get_by_role("button", name="Preview").first.click()
    expect(apage.locator("iframe.preview-frame")).to_be_visible()
    approve = apage.get_by_role("button", name="Approve", exact=True)
    expect(approve).to_have_count(2)
    for left in (1, 0):
        approve.first.click()
        expect(approve).to_have_count(left)
    apage.get_by_role("button", name="Approve merchant").click()
    expect(apage.get_by_test_id("merchant-status")).to_have_text("active")
    ok(True, "the admin approved both documents and the merchant in the console")
    apage.goto(f"{BASE}/console#/admin")
    expect(apage.locator("figure.chart").first).to_be_visible()
    shot(apage, "admin-dashboard")
    for path, heading in (("users", "Users"), ("events", "Events")):
        apage.goto(f"{BASE}/console#/admin/{path}")
        expect(apage.get_by_role("heading", name=heading, level=1)).to_be_visible()
        expect(apage.get_by_role("alert")).to_have_count(0)
    actx.close()

    page.reload()  # the same page as before the approval: load it again
    expect(page.get_by_test_id("merchant-status")).to_have_text("active")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("api-key-secret").inner_text().strip()
    ok(key.startswith("pk_"), "the API key is shown once")
    order = f"order-{uuid.uuid4().hex[:6]}"
    s, p = call("POST", "/api/v1/payments", body={"card_number": payer["number"], "expiry_month": payer["month"],
                                                  "expiry_year": payer["year"], "cvv": payer["cvv"], "amount": 123450,
                                                  "method": "visa", "order_ref": order},
                headers={"X-Api-Key": key, "Idempotency-Key": uuid.uuid4().hex})
    ok(s == 201 and p["status"] == "success", f"a payment with the new key succeeds ({s})")
    page.goto(f"{BASE}/console#/merchants/{merchant_id}/payments")
    page.get_by_label("Order reference").fill(order)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("cell", name=order)).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile(r"1,?234\.50"))).to_be_visible()
    ok(True, "the payment appears in the merchant's console list")
    shot(page, "merchant-payments")

    # Refund with confirmation (refunds are made with a merchant key, as the API requires).
    page.get_by_role("button", name="Refund…").click()
    page.get_by_label("Amount to refund").fill("200.00")
    page.get_by_label("Your API key").fill(key)
    page.get_by_role("button", name="Confirm refund").click()
    expect(page.get_by_text("Refunded IDR")).to_be_visible()
    ok(card_balance(payer["token"], payer["id"]) == 750000 - 123450 + 20000, "the refund reached the payer's card")

    # Webhook endpoint: the signing secret is shown once.
    page.goto(f"{BASE}/console#/merchants/{merchant_id}/webhooks")
    page.get_by_label("URL").fill("https://shop.example.com/payd/webhooks")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_test_id("webhook-secret")).to_be_visible()
    expect(page.get_by_role("cell", name="https://shop.example.com/payd/webhooks")).to_be_visible()
    ok(True, "a webhook endpoint was added and its signing secret shown")
    page.get_by_role("button", name="Delivery log").click()
    expect(page.get_by_role("heading", name=re.compile("Deliveries to"))).to_be_visible()

    # Key rotation (a new secret, shown once) and revocation: the old key stops working.
    page.goto(f"{BASE}/console#/merchants/{merchant_id}")
    page.get_by_role("button", name="Rotate").click()
    expect(page.get_by_test_id("api-key-secret")).not_to_have_text(key)
    rotated = page.get_by_test_id("api-key-secret").inner_text().strip()
    s, _ = call("GET", "/api/v1/merchant/payments", headers={"X-Api-Key": rotated})
    ok(rotated.startswith("pk_") and rotated != key and s == 200, "a rotated key is shown once and works")
    row = page.get_by_role("row").filter(has_text=rotated.split("_")[1])  # pk_<key id>_<secret>
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    for _ in range(50):  # other instances' key caches learn of a revocation within auth.revocation_staleness_ms
        s, _ = call("GET", "/api/v1/merchant/payments", headers={"X-Api-Key": rotated})
        if s == 401:
            break
        time.sleep(0.2)
    ok(s == 401, f"a revoked key is refused ({s})")
    ctx.close()


def main():
    admin = login(*ADMIN)
    violations = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            payer = cardholder(browser, admin, violations)
            merchant(browser, admin, payer, violations)
        finally:
            browser.close()
    ok(not violations, f"no CSP violations or page errors ({violations[:3]})")
    print(f"browser: {checks} checks passed")


if __name__ == "__main__":
    main()
