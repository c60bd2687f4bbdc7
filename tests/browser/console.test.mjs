// The console in Debian's headless Chromium, driven by playwright-core, against the
// real server binary (VITRINE_BIN, built by .ci/run): two replicas on a private
// redis-server, each on a free port. Screenshots of each page go to ARTIFACTS
// (target/browser-artifacts by default). The tests run in order, each on the state the
// ones before left.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

const KEY = "browser-test-admin-key-0123456789";
const BIN = process.env.VITRINE_BIN ?? "target/debug/vitrine";
const ARTIFACTS = process.env.ARTIFACTS ?? "target/browser-artifacts";

let server, second, redis, redisUrl, base, other, browser, dir;

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

async function waitPort(port) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const open = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => { c.end(); resolve(true); });
      c.on("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

function replica(port) {
  // Each replica's own directory (its event journal).
  const own = join(dir, `replica-${port}`);
  mkdirSync(own);
  return spawn(BIN, ["serve"], {
    env: {
      ...process.env,
      VITRINE__SERVER__ADDR: `127.0.0.1:${port}`,
      VITRINE__STORAGE__BACKEND: "redis",
      VITRINE__REDIS__URL: redisUrl,
      VITRINE__STORAGE__PATH: join(own, "vitrine.redb"),
      VITRINE__AUTH__ADMIN_KEYS: `ops:${KEY}`,
      VITRINE__DEMO__PRODUCTS: "400",
      VITRINE__DEMO__CUSTOMERS: "100",
      VITRINE__DEMO__EVENTS: "8000",
      VITRINE__DEMO__RULESET: "false",
      VITRINE__LOG__LEVEL: "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
}

// The command line on the shared Redis: what it printed, or why it failed.
function vitrine(args) {
  const out = spawnSync(BIN, [...args, "--redis", redisUrl], { encoding: "utf8" });
  assert.equal(out.status, 0, `vitrine ${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

async function admin(path, init = {}) {
  const r = await fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", ...(init.headers ?? {}) },
  });
  const body = await r.json();
  assert.ok(r.ok, `${path}: ${JSON.stringify(body)}`);
  return body;
}

const publish = (doc) => admin("/admin/v1/ruleset", { method: "PUT", body: JSON.stringify(doc) });
const liveVersion = async () => (await admin("/admin/v1/ruleset")).version;

// Two replicas of the demo shop on one Redis: the console on the first, the storefront
// reading the second.
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "vitrine-browser-"));
  const redisPort = await freePort();
  redisUrl = `redis://127.0.0.1:${redisPort}/0`;
  redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitPort(redisPort);
  const [a, b] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${a}`;
  other = `http://127.0.0.1:${b}`;
  server = replica(a);
  await waitLive(base, server);
  second = replica(b);
  await waitLive(other, second);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  second?.kill("SIGTERM");
  redis?.kill("SIGTERM");
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
  await snap(page, "sign-in.png", true);
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
  await snap(page, "overview.png", true);
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
  await snap(page, "csrf-refused.png", true);
  await page.goto(`${base}/console/overview`);
  assert.match(page.url(), /\/console\/overview$/, "still signed in");
  const kept = (await context.cookies()).find((c) => c.name === "vitrine_console");
  await Promise.all([
    page.waitForURL(/\/console\/sign-in/),
    page.click("form[action='/console/sign-out'] button"),
  ]);
  await page.goto(`${base}/console/overview`);
  assert.match(page.url(), /\/console\/sign-in/, "signed out");
  // A copy of the cookie taken before signing out signs no one in, on either replica.
  for (const replica of [base, other]) {
    await context.addCookies([{ ...kept, domain: "127.0.0.1", url: undefined }]);
    const r = await page.goto(`${replica}/console/overview`);
    assert.match(page.url(), /\/console\/sign-in/, `revoked on ${replica}`);
    assert.equal(r.status(), 200);
  }
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
  await snap(page, "review.png", false);
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
  await snap(page, "review-outliers.png", false);
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
  await snap(page, "decision-replay.png", false);
  await context.close();
});

// Screenshots are the run's evidence, not its assertions: one taken while the page is
// between frames is retried, and one that cannot be taken fails no test.
async function snap(page, name, fullPage) {
  for (let tries = 1; ; tries++) {
    try {
      await page.screenshot({ path: join(ARTIFACTS, name), fullPage });
      return;
    } catch (e) {
      if (tries === 3) {
        console.warn(`screenshot ${name} not taken: ${e.message}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

// A contract price for company acme on every demo product, and a first-order offer.
function b2bFirstOrderRules() {
  const entries = [];
  for (let n = 1; n <= 400; n++) entries.push({ product_id: `p${String(n).padStart(6, "0")}`, amount: 1999 });
  const first = { or: [{ eq: ["customer.orders_count", 0] }, { not: { exists: "customer.orders_count" } }] };
  return {
    price_lists: [{ id: "acme-contract", kind: "contract", currency: "GBP",
      scope: { eq: ["customer.company_id", "acme"] }, entries }],
    promotions: [{ id: "first-order", title: "10% off your first order", class: "order",
      eligibility: first, value: { percent_bps: 1000 } }],
  };
}

// Every item priced from acme's contract: 19.99 GBP, or more where the margin floor
// lifts it over the product's cost.
async function contractPriced(section) {
  const lists = await section.locator("li.item .price-list").allTextContents();
  assert.ok(lists.length > 0 && lists.every((l) => /acme-contract/.test(l)), `price lists: ${lists}`);
  const amounts = (await section.locator("li.item .amount").allTextContents()).map((a) => a.trim());
  assert.equal(amounts.length, lists.length);
  assert.ok(amounts.includes("19.99 GBP"), `amounts: ${amounts}`);
  for (const a of amounts) {
    const m = /^(\d+)\.(\d\d) GBP$/.exec(a);
    assert.ok(m && Number(m[1]) * 100 + Number(m[2]) >= 1999, `never under the contract: ${a}`);
  }
}

test("the preview shows a B2B customer's contract price and a first-order offer", async () => {
  await publish(b2bFirstOrderRules());
  // A buyer at acme, imported with their company, who has not ordered yet.
  const customers = join(dir, "customers.csv");
  writeFileSync(customers, "customer_id,segments,loyalty_tier,company_id,personalization,marketing\nacme-buyer,,,acme,true,true\n");
  assert.match(vitrine(["import", "customers", customers]), /1 applied/);
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  await signedIn(page);
  await page.click("header nav a[href='/console/preview']");
  await page.check("input[name=who][value=customer]");
  await page.fill("input[name=customer_id]", "acme-buyer");
  await page.selectOption("select[name=placement]", "product");
  await page.fill("input[name=product_id]", "p000001");
  await Promise.all([page.waitForURL(`${base}/console/preview`), page.click("form.preview > button[type=submit]")]);
  assert.match(await page.textContent("p.visitor"), /customer acme-buyer: their stored profile/);
  const live = page.locator("section.live");
  assert.ok((await live.locator("li.item").count()) > 0, "products");
  await contractPriced(live);
  assert.match(await live.locator("ul.offers").textContent(), /10% off your first order/);
  await snap(page, "preview.png", true);
  // Beside a draft without the offer: validated, never published.
  const version = await liveVersion();
  const draft = b2bFirstOrderRules();
  delete draft.promotions;
  await page.click("form.preview details summary");
  await page.fill("textarea[name=draft]", JSON.stringify(draft));
  await Promise.all([page.waitForURL(`${base}/console/preview`), page.click("form.preview > button[type=submit]")]);
  assert.match(await page.locator("section.live ul.offers").textContent(), /first order/);
  assert.doesNotMatch(await page.locator("section.draft ul.offers").textContent(), /first order/);
  await contractPriced(page.locator("section.draft"));
  assert.equal(await liveVersion(), version, "the draft was not published");
  await snap(page, "preview-draft.png", true);
  await context.close();
});

test("a draft with an error shows it at its path and is not published; publish, then roll back", async () => {
  const before = await liveVersion();
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  await signedIn(page);
  await page.click("header nav a[href='/console/rulesets']");
  await page.click("a[href='/console/rulesets/draft']");
  const live = JSON.parse(await page.inputValue("textarea[name=draft]"));
  assert.ok(live.price_lists, "the draft starts from the live ruleset");
  const broken = { ...live, promotions: [{ ...live.promotions[0], value: { percent_bps: 20000 } }] };
  await page.fill("textarea[name=draft]", JSON.stringify(broken, null, 2));
  await page.click("button[value=validate]");
  assert.match(await page.textContent("ul.draft-errors"), /\$\.promotions\[0\]\.value\.percent_bps/);
  await page.click("button[value=publish]");
  assert.match(await page.textContent("ul.draft-errors"), /\$\.promotions\[0\]\.value\.percent_bps/);
  await snap(page, "draft-error.png", false);
  assert.equal(await liveVersion(), before, "not published");
  // Fixed: published, and the versions page shows it live with its diff.
  const fixed = { ...live, promotions: [{ ...live.promotions[0], value: { percent_bps: 1500 } }] };
  await page.fill("textarea[name=draft]", JSON.stringify(fixed, null, 2));
  await Promise.all([page.waitForURL(/\/console\/rulesets\?published=/), page.click("button[value=publish]")]);
  const published = await liveVersion();
  assert.notEqual(published, before);
  assert.match(await page.textContent("[role=status]"), new RegExp(published));
  assert.match(await page.textContent("pre.diff"), /\+\s+"percent_bps": 1500/);
  assert.match(await page.textContent("pre.diff"), /-\s+"percent_bps": 1000/);
  await snap(page, "rulesets-diff.png", false);
  // Rolled back: the version before is live again, on the other replica too.
  await Promise.all([page.waitForURL(/published=/), page.click("form.rollback-previous button")]);
  assert.equal(await liveVersion(), before);
  const deadline = Date.now() + 2000;
  let seen;
  do {
    seen = (await (await fetch(`${other}/v1/recommend?session_id=rb&placement=home`, { headers: { authorization: `Bearer ${KEY}` } })).json()).ruleset_version;
  } while (seen !== before && Date.now() < deadline);
  assert.equal(seen, before);
  await context.close();
});

test("an experiment's results page draws its chart, and it is stopped from there", async () => {
  await publish({ experiments: [{ id: "home-recs", status: "running", placements: ["home"],
    hash_attribute: "session_id", seed: "home-recs", variants: [
      { id: "control", weight: 0.5, policy: { baseline: "popularity" } },
      { id: "personalized", weight: 0.5, policy: {} }] }] });
  const headers = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
  for (let n = 0; n < 300; n++) {
    const session = `xp-${n}`;
    const answer = await (await fetch(`${base}/v1/recommend?session_id=${session}&placement=home`, { headers })).json();
    const arm = answer.experiments[0].variant;
    const product = answer.recommendations[0].product_id;
    const events = [{ event_id: `i-${n}`, type: "impression", session_id: session, product_id: product, decision_id: answer.decision_id }];
    if (n % (arm === "control" ? 5 : 3) === 0) {
      events.push({ event_id: `c-${n}`, type: "click", session_id: session, product_id: product, decision_id: answer.decision_id });
    }
    const r = await fetch(`${base}/v1/events`, { method: "POST", headers, body: JSON.stringify(events) });
    assert.equal(r.status, 202);
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await admin("/admin/v1/experiments/home-recs/results");
    if (r.arms.reduce((n, a) => n + a.clicks, 0) >= 70) break;
    assert.ok(Date.now() < deadline, "the clicks were counted");
    await new Promise((r) => setTimeout(r, 200));
  }
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  await signedIn(page);
  await page.click("header nav a[href='/console/experiments']");
  await snap(page, "experiments.png", false);
  await page.click("a[href='/console/experiments/home-recs']");
  const chart = page.locator("svg.ci");
  assert.equal(await chart.count(), 1);
  assert.ok((await chart.locator("line.interval").count()) >= 1, "an interval drawn");
  assert.ok((await chart.locator("circle.estimate").count()) >= 1, "an estimate drawn");
  const box = await chart.boundingBox();
  assert.ok(box.width > 300 && box.height > 40, "the chart is visible");
  assert.match(await page.textContent("svg.ci"), /personalized vs control · click_through/);
  await snap(page, "experiment-results.png", true);
  await Promise.all([page.waitForURL(/home-recs$/), page.click("form input[value=stop] ~ button")]);
  const live = await admin("/admin/v1/ruleset");
  assert.equal(live.ruleset.experiments[0].status, "stopped");
  await context.close();
});

test("blocking a pair removes it on another replica within a second, and it stays out after vitrine train", async () => {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  await signedIn(page);
  await page.goto(`${base}/console/review?kind=bought_together`);
  // The first pair whose B the other replica shows on A's page.
  const rows = page.locator("tr.pair");
  const count = await rows.count();
  let row, a, b;
  const onA = async (a) => (await (await fetch(`${other}/v1/recommend?session_id=block&placement=product&product_id=${a}`, {
    headers: { authorization: `Bearer ${KEY}` },
  })).json()).recommendations.map((r) => r.product_id);
  for (let i = 0; i < count && !row; i++) {
    const ids = await rows.nth(i).locator("form.block input[type=hidden]").evaluateAll((els) =>
      Object.fromEntries(els.map((e) => [e.name, e.value])));
    if (ids.a && (await onA(ids.a)).includes(ids.b)) [row, a, b] = [rows.nth(i), ids.a, ids.b];
  }
  assert.ok(row, "a pair the other replica shows");
  await Promise.all([page.waitForURL(/\/console\/review/), row.locator("form.block button").click()]);
  const blockedAt = Date.now();
  let gone = false;
  while (Date.now() - blockedAt < 1000) {
    if (!(await onA(a)).includes(b)) { gone = true; break; }
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(gone, `${b} left ${a}'s page on the other replica within a second`);
  assert.ok(Date.now() - blockedAt < 1000);
  await snap(page, "review-blocked.png", false);
  // The overrides page lists it, and the change log says who did it.
  await page.click("header nav a[href='/console/overrides']");
  assert.match(await page.textContent("#blocked"), new RegExp(`${a}[\\s\\S]*${b}`));
  assert.match(await page.textContent("#changes"), new RegExp(`ops\\s*blocked ${a} with ${b}`));
  await snap(page, "overrides.png", false);
  // The pair bought again and again, then the models trained on that history: it stays out.
  // (From a file: the demo's models come from its generated history, not from the event log.)
  const interactions = (out) => Number(/trained on (\d+) interactions/.exec(out)?.[1] ?? -1);
  const history = join(dir, "bought-together.ndjson");
  const now = Math.floor(Date.now() / 1000);
  const lines = [];
  for (let n = 0; n < 20; n++) {
    for (const p of [a, b]) {
      lines.push(JSON.stringify({ event_id: `t-${n}-${p}`, type: "purchase", session_id: `t-${n}`, product_id: p, order_id: `t-${n}`, timestamp: now - 600 + n }));
    }
  }
  writeFileSync(history, lines.join("\n") + "\n");
  const trained = vitrine(["train", "--events", history]);
  assert.equal(interactions(trained), 40, trained);
  const headers = { authorization: `Bearer ${KEY}` };
  const version = trained.split(":")[0];
  const deadline = Date.now() + 10_000;
  let answer;
  do {
    answer = await (await fetch(`${other}/v1/recommend?session_id=block&placement=product&product_id=${a}`, { headers })).json();
  } while (answer.model_version !== version && Date.now() < deadline);
  assert.equal(answer.model_version, version, "the new models on the other replica");
  assert.ok(!answer.recommendations.some((r) => r.product_id === b), `${b} stays out after training`);
  // Nor did training learn the pair: the product's page lists no such neighbour, once
  // this replica serves the new models too (each replica swaps them in on its own).
  let mine;
  do {
    mine = await (await fetch(`${base}/v1/recommend?session_id=block&placement=product&product_id=${a}`, { headers })).json();
  } while (mine.model_version !== version && Date.now() < deadline + 10_000);
  assert.equal(mine.model_version, version, "the new models on this replica");
  await page.goto(`${base}/console/product?id=${a}`);
  assert.equal(await page.locator(`#bought:has-text("${b}")`).count(), 0);
  await snap(page, "product-why.png", false);
  await context.close();
});
