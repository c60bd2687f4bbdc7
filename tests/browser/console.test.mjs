// The console in Debian's headless Chromium, driven by playwright-core, against the
// real server binary (VITRINE_BIN, built by .ci/run) on a free port. Screenshots of
// each page go to ARTIFACTS (target/browser-artifacts by default).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

const KEY = "browser-test-admin-key-0123456789";
const BIN = process.env.VITRINE_BIN ?? "target/debug/vitrine";
const ARTIFACTS = process.env.ARTIFACTS ?? "target/browser-artifacts";

let server, base, browser, dir;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function waitLive(url, child) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the server exited: ${child.exitCode}`);
    try {
      const r = await fetch(`${url}/livez`);
      if (r.ok) return;
    } catch (_) {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the server did not come up");
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "vitrine-browser-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ["serve"], {
    env: {
      ...process.env,
      VITRINE__SERVER__ADDR: `127.0.0.1:${port}`,
      VITRINE__STORAGE__PATH: join(dir, "vitrine.redb"),
      VITRINE__AUTH__ADMIN_KEYS: `ops:${KEY}`,
      VITRINE__DEMO__PRODUCTS: "400",
      VITRINE__DEMO__CUSTOMERS: "100",
      VITRINE__DEMO__EVENTS: "8000",
      VITRINE__LOG__LEVEL: "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  await waitLive(base, server);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

async function signedIn(page) {
  await page.goto(`${base}/console/overview`);
  assert.match(page.url(), /\/console\/sign-in\?next=\/console\/overview$/);
  await page.fill("#key", KEY);
  await Promise.all([page.waitForURL(`${base}/console/overview`), page.click("button[type=submit]")]);
}

test("signed-out pages go to sign-in, and an admin key signs in", async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${base}/console/overview`);
  assert.match(page.url(), /\/console\/sign-in/);
  await page.screenshot({ path: join(ARTIFACTS, "sign-in.png"), fullPage: true });
  // A wrong key is refused on the page.
  await page.fill("#key", "not-an-admin-key-at-all");
  await page.click("button[type=submit]");
  assert.match(await page.textContent("[role=alert]"), /not an admin key/);
  await page.goto(`${base}/console/overview`);
  await page.fill("#key", KEY);
  await Promise.all([page.waitForURL(`${base}/console/overview`), page.click("button[type=submit]")]);
  assert.match(await page.textContent("header .who"), /Signed in as\s+ops/);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "vitrine_console");
  assert.ok(session, "a session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  await context.close();
});

test("the overview refreshes its figures without a reload", async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const page = await context.newPage();
  await signedIn(page);
  const figure = page.locator("[data-figure=answers_per_s]");
  assert.equal((await figure.textContent()).trim(), "0.0");
  // Traffic arrives while the page stays open.
  for (let i = 0; i < 40; i++) {
    await fetch(`${base}/v1/recommend?session_id=b-${i}&placement=home`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
  }
  let marker = await page.evaluate(() => (window.__kept = "same page"));
  await page.waitForFunction(
    () => document.querySelector("[data-figure=answers_per_s]").textContent.trim() !== "0.0",
    null,
    { timeout: 8000 },
  );
  assert.equal(await page.evaluate(() => window.__kept), marker, "no reload");
  assert.notEqual((await page.textContent("[data-figure=p99_ms]")).trim(), "–");
  await page.screenshot({ path: join(ARTIFACTS, "overview.png"), fullPage: true });
  await context.close();
});

test("a form posted without its token is refused, and signing out ends the session", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signedIn(page);
  // A form with a forged token, as another site would post it.
  await page.evaluate(() => {
    document.querySelector("form[action='/console/sign-out'] input[name=csrf]").value = "forged";
  });
  await page.click("form[action='/console/sign-out'] button");
  assert.match(await page.textContent("[role=alert]"), /token is missing or wrong/);
  await page.screenshot({ path: join(ARTIFACTS, "csrf-refused.png"), fullPage: true });
  await page.goto(`${base}/console/overview`);
  assert.match(page.url(), /\/console\/overview$/, "still signed in");
  await Promise.all([
    page.waitForURL(/\/console\/sign-in/),
    page.click("form[action='/console/sign-out'] button"),
  ]);
  await page.goto(`${base}/console/overview`);
  assert.match(page.url(), /\/console\/sign-in/, "signed out");
  await context.close();
});

test("the review shows pairs with both products, and filters by product and outliers", async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  await signedIn(page);
  await page.click("header nav a[href='/console/review']");
  await page.waitForURL(`${base}/console/review`);
  const rows = page.locator("tr.pair");
  assert.ok((await rows.count()) >= 20, "pairs listed");
  // Each side shows the product: image, title, id, category and price.
  const first = rows.first();
  assert.equal(await first.locator("img").count(), 2);
  assert.match(await first.textContent(), /p\d{6}.*·.*·\s*\d+\.\d{2} [A-Z]{3}/s);
  await page.screenshot({ path: join(ARTIFACTS, "review.png"), fullPage: false });
  await page.fill("input[name=q]", "p000001");
  await Promise.all([page.waitForURL(/q=p000001/), page.click("form.filters button")]);
  const named = await page.locator("tr.pair").allTextContents();
  assert.ok(named.length > 0 && named.every((t) => t.includes("p000001")));
  await page.fill("input[name=q]", "");
  await page.check("input[name=outliers]");
  await Promise.all([page.waitForURL(/outliers=1/), page.click("form.filters button")]);
  const flagged = page.locator("tr.pair");
  assert.ok((await flagged.count()) > 0);
  assert.equal(await page.locator("tr.pair:not(.outlier)").count(), 0);
  await page.screenshot({ path: join(ARTIFACTS, "review-outliers.png"), fullPage: false });
  await context.close();
});

test("a decision is looked up and replayed", async () => {
  const answer = await (
    await fetch(`${base}/v1/recommend?session_id=browser-dc&placement=home`, {
      headers: { authorization: `Bearer ${KEY}` },
    })
  ).json();
  const id = answer.decision_id;
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`${base}/admin/v1/decisions/${id}`, { headers: { authorization: `Bearer ${KEY}` } });
    if (r.ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  await signedIn(page);
  await page.click("header nav a[href='/console/decisions']");
  await page.fill("input[name=id]", id);
  await Promise.all([page.waitForURL(/decisions\?id=/), page.click("form.filters button")]);
  assert.match(await page.textContent("pre.record"), new RegExp(id));
  await Promise.all([page.waitForURL(/decisions\/replay/), page.click("form[action='/console/decisions/replay'] button")]);
  assert.match(await page.textContent("[role=status]"), /identical to the record/);
  await page.screenshot({ path: join(ARTIFACTS, "decision-replay.png"), fullPage: false });
  await context.close();
});
