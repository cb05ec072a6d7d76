// Drives the seam console in Debian's headless Chromium through playwright-core (no browser
// download). Called by services/student-affairs/tests/console.rs, one phase per call:
//
//   node console.mjs <console-url> <screenshot-dir> in-sync <flows>
//       every flow (and graph edge) shows in sync; <flows> of them
//   node console.mjs <console-url> <screenshot-dir> redrive <consumer> <subject> <source>
//       the subject's dead letters show, its flow is parked; Redrive, confirm, and the first
//       letter's status turns redrive-failed (undecodable bytes never decode)
//
// Prints one JSON line with what it saw; exits non-zero with the reason otherwise.
import { chromium } from "playwright-core";

const [url, shots, phase, ...args] = process.argv.slice(2);
const executablePath = process.env.SEAM_TEST_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

async function shot(name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

try {
  await page.goto(url);
  await page.waitForSelector("body[data-updated]", { timeout: 60_000 });
  await page.waitForSelector('#live[data-live="live"]', { timeout: 10_000 });
  if (phase === "in-sync") {
    const flows = Number(args[0]);
    await page.waitForFunction((n) => {
      const rows = [...document.querySelectorAll("#flows tr[data-flow]")];
      const edges = [...document.querySelectorAll("#graph g.edge")];
      return rows.length === n && edges.length === n
        && rows.every((r) => r.dataset.state === "in-sync") && edges.every((e) => e.dataset.state === "in-sync");
    }, flows, { timeout: 90_000 });
    await page.waitForSelector("#plan-table, #plan p", { timeout: 30_000 });
    await shot("01-in-sync");
    const states = await page.$$eval("#flows tr[data-flow]", (rs) => rs.map((r) => [r.dataset.flow, r.dataset.state]));
    const partitions = await page.$$eval("#partitions tbody tr", (rs) => rs.length);
    console.log(JSON.stringify({ phase, states, partitions, errors }));
  } else if (phase === "redrive") {
    const [consumer, subject, source] = args;
    const row = `#letters tr[data-consumer="${consumer}"][data-subject="${subject}"]`;
    await page.waitForSelector(row, { timeout: 90_000 });
    await page.waitForSelector(`#flows tr[data-flow="${source}->${consumer}"][data-state="parked"]`, { timeout: 30_000 });
    await page.waitForSelector(`#graph g.edge[data-flow="${source}->${consumer}"][data-state="parked"]`, { timeout: 5_000 });
    const before = await page.$eval(row, (r) => ({ status: r.dataset.status, text: r.innerText }));
    await shot("02-parked");
    // The first screen, as the README shows it.
    await page.screenshot({ path: `${shots}/console.png` });
    await page.click(`${row} button.redrive`);
    await page.waitForSelector("#confirm[open]", { timeout: 5_000 });
    await shot("03-confirm");
    await page.click("#confirm-ok");
    await page.waitForSelector('#redrive-result[data-outcome="asked"]', { timeout: 30_000 });
    await page.waitForSelector(`${row}[data-status*="redrive-failed"]`, { timeout: 90_000 });
    const after = await page.$eval(row, (r) => ({ status: r.dataset.status, text: r.innerText }));
    await shot("04-redrive-failed");
    console.log(JSON.stringify({ phase, before, after, result: await page.$eval("#redrive-result", (e) => e.textContent), errors }));
  } else {
    throw new Error(`unknown phase ${phase}: in-sync or redrive`);
  }
  if (errors.length) throw new Error(`the page logged errors: ${errors.join("; ")}`);
} catch (e) {
  await shot(`failed-${phase}`).catch(() => {});
  console.error(`${phase}: ${e.message}`);
  console.error(`page errors: ${JSON.stringify(errors)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
