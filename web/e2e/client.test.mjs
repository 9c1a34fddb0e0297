// End-to-end: the web client in headless Chromium (Debian's), against the
// running stack behind the gateway. Run by `./dev test`; alone:
//   BASE_URL=http://127.0.0.1:8080 npm --prefix web run e2e
// (registering three users per run: raise REGISTER_PER_HOUR_PER_IP for
// repeated runs against one stack).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.BASE_URL ?? "http://127.0.0.1:8080";
// Screenshots of the main screens: into docs/ with UPDATE_SCREENSHOTS=1
// (they are committed), else into test-results/.
const SHOTS = process.env.UPDATE_SCREENSHOTS === "1"
  ? new URL("../../docs/screenshots/", import.meta.url).pathname
  : new URL("../test-results/", import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// The dev stack's SMTP sink writes a Maildir here (the email-verification test reads it).
const MAIL_DIR = process.env.MAIL_DIR ?? new URL("../../.dev/mail/", import.meta.url).pathname;
const tag = crypto.randomBytes(3).toString("hex");
const PASSWORD = `violet harbor lantern ${tag}`;

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
after(() => browser.close());
fs.mkdirSync(SHOTS, { recursive: true });

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) for a base32 secret. */
function totp(secret, step) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}
const stepNow = () => Math.floor(Date.now() / 30_000);

/** A browser context of its own (a person), watching for CSP violations and dialogs. */
async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
  const page = await context.newPage();
  const problems = [];
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on("dialog", (d) => { problems.push(`dialog: ${d.message()}`); void d.dismiss(); });
  page.on("console", (m) => { if (m.type() === "error" && /Content Security Policy/i.test(m.text())) problems.push(m.text()); });
  return { name, username: `${name}${tag}`, context, page, problems };
}

async function cspViolations(p) {
  return [...(await p.page.evaluate(() => window.__csp ?? [])), ...p.problems];
}

async function signUp(p) {
  await p.page.goto(BASE);
  await p.page.getByRole("link", { name: "Create an account" }).click();
  await p.page.getByLabel("Username").fill(p.username);
  await p.page.getByLabel("Email").fill(`${p.username}@example.com`);
  await p.page.getByLabel("Password").fill(PASSWORD);
  await p.page.getByRole("button", { name: "Create account" }).click();
  await p.page.getByText("Connected").waitFor();
}

async function signIn(p) {
  await p.page.getByLabel("Username or email").fill(p.username);
  await p.page.getByLabel("Password").fill(PASSWORD);
  await p.page.getByRole("button", { name: "Sign in" }).click();
}

test("two people chat in real time, blocking refuses and unblocking restores, MFA set-up asks for the password, MFA sign-in works, text stays text, the CSP holds", async () => {
  const alice = await person("alice");
  const bob = await person("bob");
  try {
    await scenario(alice, bob);
  } catch (e) {
    // What each person saw when it failed, for the CI log reader.
    fs.mkdirSync("test-results", { recursive: true });
    for (const p of [alice, bob]) await p.page.screenshot({ path: `test-results/${p.name}-failure.png` }).catch(() => {});
    throw e;
  }
});

async function scenario(alice, bob) {

  await alice.page.goto(BASE);
  await alice.page.getByRole("heading", { name: "Sign in" }).waitFor();
  await alice.page.screenshot({ path: `${SHOTS}sign-in.png` });
  await signUp(alice);
  await signUp(bob);

  // Alice finds Bob and starts a 1:1 chat.
  await alice.page.getByLabel("Find people").fill(bob.username);
  await alice.page.getByRole("button", { name: new RegExp(bob.username) }).click();
  await alice.page.getByLabel("Message", { exact: true }).fill("Hello Bob");
  await alice.page.keyboard.press("Enter");
  await alice.page.locator(".messages").getByText("Hello Bob").waitFor();

  // Bob sees the chat appear and opens it.
  await bob.page.locator(".chats .title", { hasText: alice.username }).waitFor({ timeout: 10_000 });
  await bob.page.locator(".chats button").first().click();
  await bob.page.locator(".messages").getByText("Hello Bob").waitFor();

  // Typing shows on the other side, live.
  await bob.page.getByLabel("Message", { exact: true }).pressSequentially("Hi Al", { delay: 30 });
  await alice.page.getByText(/is typing/).waitFor({ timeout: 10_000 });
  await bob.page.getByLabel("Message", { exact: true }).pressSequentially("ice");
  await bob.page.keyboard.press("Enter");
  await alice.page.locator(".messages").getByText("Hi Alice").waitFor({ timeout: 10_000 });

  // Markup in a message is shown as the characters it is.
  const xss = "<img src=x onerror=alert(1)>";
  await alice.page.getByLabel("Message", { exact: true }).fill(xss);
  await alice.page.keyboard.press("Enter");
  const shown = bob.page.locator(".messages .content", { hasText: "onerror" });
  await shown.waitFor({ timeout: 10_000 });
  assert.equal(await shown.textContent(), xss);
  assert.equal(await bob.page.locator(".messages img").count(), 0, "the message became an element");
  await bob.page.screenshot({ path: `${SHOTS}chat.png` });

  // Bob's notifications (from notify-svc) for Alice's messages.
  await bob.page.getByRole("button", { name: "Notifications" }).click();
  await bob.page.locator(".notifications .notification").first().waitFor({ timeout: 15_000 });
  await bob.page.screenshot({ path: `${SHOTS}notifications.png` });

  await blocking(alice, bob);

  // Alice turns on MFA with a code computed from the shown secret, after
  // giving her password again (a wrong one is named as the field's error).
  await alice.page.getByRole("button", { name: "Settings" }).click();
  await alice.page.getByLabel("Your password").fill(`${PASSWORD} wrong`);
  await alice.page.getByRole("button", { name: "Set up" }).click();
  await alice.page.locator(".field-error").waitFor();
  assert.equal(await alice.page.locator("#mfa-secret").count(), 0, "set-up went ahead with a wrong password");
  await alice.page.getByLabel("Your password").fill(PASSWORD);
  await alice.page.getByRole("button", { name: "Set up" }).click();
  const secret = (await alice.page.locator("#mfa-secret").textContent()).trim();
  await alice.page.locator("img.qr").waitFor();
  await alice.page.screenshot({ path: `${SHOTS}settings-mfa.png` });
  const enabledAt = stepNow();
  await alice.page.getByLabel("Code from the app").fill(totp(secret, enabledAt));
  await alice.page.getByRole("button", { name: "Turn on", exact: true }).click();
  const codes = alice.page.locator(".recovery-codes li");
  await codes.first().waitFor();
  assert.equal(await codes.count(), 10);
  const recoveryCode = (await codes.nth(3).textContent()).trim();
  await alice.page.getByRole("button", { name: "Done" }).click();

  // Sign out, back in with a TOTP code (a later time step: codes are single use).
  await alice.page.getByRole("button", { name: "Sign out" }).click();
  await signIn(alice);
  await alice.page.getByRole("heading", { name: "Two-factor authentication" }).waitFor();
  while (stepNow() <= enabledAt) await new Promise((r) => setTimeout(r, 500));
  await alice.page.getByLabel("Code from your authenticator app").fill(totp(secret, stepNow()));
  await alice.page.getByRole("button", { name: "Verify" }).click();
  await alice.page.getByText("Connected").waitFor();

  // And with a recovery code.
  await alice.page.getByRole("button", { name: "Sign out" }).click();
  await signIn(alice);
  await alice.page.getByRole("link", { name: "Use a recovery code instead" }).click();
  await alice.page.getByLabel("Recovery code").fill(recoveryCode);
  await alice.page.getByRole("button", { name: "Verify" }).click();
  await alice.page.getByText("Connected").waitFor();
  await alice.page.locator(".chats .title", { hasText: bob.username }).waitFor();

  assert.deepEqual(await cspViolations(alice), []);
  assert.deepEqual(await cspViolations(bob), []);
}

/** Bob blocks Alice: her messages and group adds are refused (403, shown), then he unblocks her. */
async function blocking(alice, bob) {
  // Bob blocks Alice from their 1:1 chat's header.
  await bob.page.locator(".chats button", { hasText: alice.username }).click();
  await bob.page.getByRole("button", { name: `Block ${alice.username}`, exact: true }).click();
  await bob.page.getByRole("button", { name: `Unblock ${alice.username}`, exact: true }).waitFor();

  // Alice's message is refused, and the refusal is shown.
  await alice.page.locator(".chats button", { hasText: bob.username }).click();
  await alice.page.getByLabel("Message", { exact: true }).fill("Are you there?");
  await alice.page.keyboard.press("Enter");
  const refused = alice.page.locator(".composer [role=alert]");
  await refused.waitFor({ timeout: 10_000 });
  assert.ok((await refused.textContent()).trim().length > 0);
  assert.equal(await alice.page.locator(".messages .content", { hasText: "Are you there?" }).count(), 0);

  // Bob sees Alice in his blocked list and lets nobody add him to groups.
  await bob.page.getByRole("button", { name: "Settings" }).click();
  await bob.page.locator(".blocks li", { hasText: alice.username }).waitFor();
  await bob.page.getByLabel("Nobody", { exact: true }).check();
  await bob.page.getByRole("button", { name: "Save privacy" }).click();
  await bob.page.locator("section[aria-label=Privacy] .notice").getByText("Saved.").waitFor();

  // Alice cannot put Bob in a group.
  await alice.page.getByRole("button", { name: "New group" }).click();
  await alice.page.getByLabel("Name", { exact: true }).fill(`Plans ${tag}`);
  await alice.page.getByLabel("Members (usernames, separated by commas)").fill(bob.username);
  await alice.page.getByRole("button", { name: "Create group" }).click();
  await alice.page.locator("form [role=alert]").waitFor({ timeout: 10_000 });
  assert.equal(await alice.page.locator(".chats .title", { hasText: `Plans ${tag}` }).count(), 0);

  // Bob unblocks her from the settings and allows group adds again.
  await bob.page.locator(".blocks").getByRole("button", { name: `Unblock ${alice.username}`, exact: true }).click();
  await bob.page.locator("section[aria-label='Blocked people']").getByText("Nobody.", { exact: false }).waitFor();
  await bob.page.getByLabel("Everyone", { exact: true }).check();
  await bob.page.getByRole("button", { name: "Save privacy" }).click();
  await bob.page.locator("section[aria-label=Privacy] .notice").getByText("Saved.").waitFor();

  // Now her message goes through, live.
  await alice.page.locator(".chats button", { hasText: bob.username }).click();
  await alice.page.getByLabel("Message", { exact: true }).fill("Are you there?");
  await alice.page.keyboard.press("Enter");
  await alice.page.locator(".messages .content", { hasText: "Are you there?" }).waitFor({ timeout: 10_000 });
  await bob.page.locator(".chats button", { hasText: alice.username }).click();
  await bob.page.locator(".messages .content", { hasText: "Are you there?" }).waitFor({ timeout: 10_000 });
}

/** The newest verification link mailed to `address`, after `count` such mails have arrived. */
async function verificationLink(address, count = 1, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = [];
    for (const sub of ["new", "cur"]) {
      const dir = `${MAIL_DIR}${sub}/`;
      if (!fs.existsSync(dir)) continue;
      for (const name of fs.readdirSync(dir)) {
        const path = dir + name;
        const raw = fs.readFileSync(path, "latin1");
        if (!raw.toLowerCase().includes(address.toLowerCase())) continue;
        // Quoted-printable soft breaks and =3D, and base64 parts, decoded enough to find the link.
        const texts = [raw, raw.replace(/=\r?\n/g, "").replace(/=3D/gi, "=")];
        for (const b64 of raw.match(/(?:^[A-Za-z0-9+/=]{16,}\r?\n)+/gm) ?? []) {
          texts.push(Buffer.from(b64.replace(/\s+/g, ""), "base64").toString("utf8"));
        }
        for (const t of texts) {
          const m = t.match(/verify-email\?token=([^\s"'<>&]+)/);
          if (m) { found.push({ token: decodeURIComponent(m[1].replace(/[.,;:!)\]]+$/, "")), at: fs.statSync(path).mtimeMs }); break; }
        }
      }
    }
    if (found.length >= count) return found.sort((a, b) => b.at - a.at)[0].token;
    if (Date.now() > deadline) throw new Error(`no verification email for ${address} in ${MAIL_DIR} (found ${found.length} of ${count})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test("the mailed link verifies the address once and leaves the address bar", { skip: fs.existsSync(MAIL_DIR) ? false : `no Maildir at ${MAIL_DIR}` }, async () => {
  const carol = await person("carol");
  try {
    await signUp(carol);
    const email = `${carol.username}@example.com`;
    await carol.page.getByRole("button", { name: "Settings" }).click();
    await carol.page.locator("#email-status", { hasText: "not verified" }).waitFor();
    // The registration mail, then a second one asked for from the settings.
    await verificationLink(email, 1);
    await carol.page.getByRole("button", { name: "Resend the verification email" }).click();
    await carol.page.getByText("Sent. Open the link").waitFor({ timeout: 10_000 });
    const token = await verificationLink(email, 2);

    await carol.page.goto(`${BASE}/verify-email?token=${encodeURIComponent(token)}`);
    await carol.page.getByText("Your email address is verified.").waitFor({ timeout: 10_000 });
    assert.equal(new URL(carol.page.url()).pathname, "/");
    assert.equal(new URL(carol.page.url()).search, "", "the token stayed in the address bar");
    await carol.page.getByRole("button", { name: "Settings" }).click();
    await carol.page.locator("#email-status", { hasText: /^verified$/ }).waitFor();

    // Single use: the same link again is refused, and says so.
    await carol.page.goto(`${BASE}/verify-email?token=${encodeURIComponent(token)}`);
    await carol.page.getByText("invalid, used or expired").waitFor({ timeout: 10_000 });
    assert.deepEqual(await cspViolations(carol), []);
  } catch (e) {
    fs.mkdirSync("test-results", { recursive: true });
    await carol.page.screenshot({ path: "test-results/carol-failure.png" }).catch(() => {});
    throw e;
  } finally {
    await carol.context.close();
  }
});
