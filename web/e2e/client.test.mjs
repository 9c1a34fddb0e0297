// End-to-end: the web client in headless Chromium (Debian's), against the
// running stack behind the gateway. Run by `./dev test`; alone:
//   BASE_URL=http://127.0.0.1:8080 npm --prefix web run e2e
// (registering two users per run: raise REGISTER_PER_HOUR_PER_IP for
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

test("two people chat in real time, MFA sign-in works, text stays text, the CSP holds", async () => {
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

  // Alice turns on MFA with a code computed from the shown secret.
  await alice.page.getByRole("button", { name: "Settings" }).click();
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
