// Drive the built HTML book in headless Chromium, page by page, as a reader would, with no internet.
//
//   node tests/browser/check_book.mjs <html dir> <screenshot dir> <colab prefix> <plotly.min.js>
//
// For every page: no JavaScript error; math rendered by MathJax (no raw TeX left); every interactive
// figure responds to its slider; exercise solutions stay hidden until their toggle is clicked; the Colab
// launch link points at the page's notebook; a chapter's title (its H1) is on the first screen; no display
// equation is wider than its column, at 1280x900 and again at phone width (390x844). MathJax
// and plotly.js, which the published book loads from CDNs, are served from local package copies; any
// other outside request fails the page. Prints a JSON report and exits non-zero on any failure.
// Screenshots go to <screenshot dir>/<page>.png.
import { createServer } from "node:http";
import { readFile, readdir, mkdir, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, extname, relative, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [htmlDir, shotDir, colabPrefix, plotlyJs] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const mathjaxDir = join(here, "..", "..", "node_modules", "mathjax", "es5");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".woff": "font/woff", ".json": "application/json", ".ipynb": "application/json" };

async function listPages(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith("_")) out.push(...(await listPages(path)));
    else if (entry.name.endsWith(".html") && !["genindex.html", "search.html", "index.html"].includes(entry.name)) out.push(path);
  }
  return out;
}

function serve(root) {
  const server = createServer(async (req, res) => {
    const path = join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
    try {
      const body = await readFile((await stat(path)).isDirectory() ? join(path, "index.html") : path);
      res.writeHead(200, { "content-type": TYPES[extname(path)] || "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function routeOffline(page, blocked) {
  await page.route("**/*", async (route) => {
    const url = route.request().url();
    if (url.startsWith("http://127.0.0.1")) return route.continue();
    if (url.startsWith("https://cdn.plot.ly/")) return route.fulfill({ path: plotlyJs, contentType: "text/javascript" });
    const mj = url.match(/^https:\/\/cdn\.jsdelivr\.net\/npm\/mathjax@3\/es5\/(.*)$/);
    if (mj && existsSync(join(mathjaxDir, mj[1]))) return route.fulfill({ path: join(mathjaxDir, mj[1]) });
    blocked.push(url);
    return route.abort();
  });
}

async function checkMath(page, problems) {
  const expected = await page.locator(".math").count();
  if (!expected) return 0;
  await page.waitForFunction((n) => document.querySelectorAll("mjx-container").length >= n, expected, { timeout: 20000 }).catch(() => {});
  const rendered = await page.locator("mjx-container").count();
  if (rendered < expected) problems.push(`math: ${rendered} of ${expected} formulas rendered`);
  const raw = await page.evaluate(() => {
    const text = document.querySelector("main, article, body").innerText;
    return (text.match(/\$\$|\\\(|\\\[|\\frac|\\mathbb|\\log \\pi/g) || []).slice(0, 3);
  });
  if (raw.length) problems.push(`math: raw TeX left on the page: ${raw.join(" ")}`);
  return rendered;
}

async function checkFigures(page, problems) {
  const figures = page.locator(".kimi-interactive");
  const n = await figures.count();
  for (let i = 0; i < n; i++) {
    const fig = figures.nth(i);
    const id = await fig.getAttribute("id");
    await fig.scrollIntoViewIfNeeded();
    const ready = await page.waitForFunction((id) => { const gd = document.getElementById(id); return gd && gd._fullLayout && gd.querySelector(".slider-rail-touch-rect"); }, id, { timeout: 20000 }).then(() => true, () => false);
    if (!ready) { problems.push(`figure ${id}: not drawn`); continue; }
    const drawn = () => page.evaluate((id) => JSON.stringify([...document.getElementById(id).querySelectorAll(".cartesianlayer path, .scatterlayer path")].map((p) => p.getAttribute("d"))), id);
    const before = await drawn();
    const rail = fig.locator(".slider-rail-touch-rect");
    const box = await rail.boundingBox();
    const active = await page.evaluate((id) => document.getElementById(id).layout.sliders[0].active, id);
    const steps = await page.evaluate((id) => document.getElementById(id).layout.sliders[0].steps.length, id);
    const target = active < steps / 2 ? 0.97 : 0.03; // click far from the current step
    await page.mouse.click(box.x + box.width * target, box.y + box.height / 2);
    await page.waitForTimeout(400);
    const after = await drawn();
    if (before === after) problems.push(`figure ${id}: moving the slider did not change the drawing`);
    // Every slider position must show its data: some point of some trace inside the axes' ranges.
    for (let step = 0; step < steps; step++) {
      const visible = await page.evaluate(async ([id, step]) => {
        const gd = document.getElementById(id);
        await Plotly.animate(gd, [gd.layout.sliders[0].steps[step].args[0][0]], { mode: "immediate", frame: { duration: 0, redraw: true }, transition: { duration: 0 } });
        const [x0, x1] = gd._fullLayout.xaxis.range, [y0, y1] = gd._fullLayout.yaxis.range;
        const inside = (v, a, b) => typeof v === "number" && v >= Math.min(a, b) && v <= Math.max(a, b);
        return gd.data.some((t) => (t.y || []).some((y, j) => inside(y, y0, y1) && (typeof (t.x || [])[j] !== "number" || inside(t.x[j], x0, x1))));
      }, [id, step]);
      if (!visible) problems.push(`figure ${id}: slider step ${step} shows no data inside the axes`);
    }
  }
  return n;
}

// A display equation must fit its column: MathJax's drawing (mjx-math) no wider than the block that holds it.
async function checkEquations(page, width, problems) {
  const over = await page.evaluate(() => [...document.querySelectorAll('mjx-container[display="true"]')].flatMap((c) => {
    const math = c.querySelector("mjx-math") || c.firstElementChild;
    const column = c.parentElement.clientWidth;
    const w = math ? math.getBoundingClientRect().width : 0;
    return w > column + 2 ? [{ w: Math.round(w), column, tex: (c.closest(".math")?.id || "") + " " + (c.getAttribute("aria-label") || c.textContent).slice(0, 60) }] : [];
  }));
  for (const o of over) problems.push(`equation at ${width} px: ${o.w} px wide in a ${o.column} px column: ${o.tex}`);
  return over.length;
}

async function checkSolutions(page, problems) {
  const solutions = page.locator("div.solution");
  const n = await solutions.count();
  for (let i = 0; i < n; i++) {
    const sol = solutions.nth(i);
    const body = sol.locator(".solution-content, section").first();
    if (!(await sol.evaluate((el) => el.classList.contains("dropdown")))) { problems.push(`solution ${i}: not a dropdown`); continue; }
    if (await body.isVisible()) { problems.push(`solution ${i}: visible before it was opened`); continue; }
    await sol.locator("button.toggle-button").first().click();
    await page.waitForTimeout(300);
    if (!(await body.isVisible())) problems.push(`solution ${i}: still hidden after clicking its toggle`);
  }
  return n;
}

async function checkColab(page, rel, problems) {
  if (!rel.startsWith("chapters/")) return null;
  const expected = colabPrefix + rel.replace(/\.html$/, ".ipynb");
  const hrefs = await page.locator('a[href*="colab.research.google.com"]').evaluateAll((as) => as.map((a) => a.href));
  if (!hrefs.includes(expected)) problems.push(`colab: expected a link to ${expected}, found ${JSON.stringify(hrefs)}`);
  return hrefs[0] || null;
}

const server = await serve(htmlDir);
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
await mkdir(shotDir, { recursive: true });
const report = [];
let failed = 0;
for (const file of (await listPages(htmlDir)).sort()) {
  const rel = relative(htmlDir, file).split("\\").join("/");
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [], blocked = [];
  page.on("pageerror", (err) => problems.push(`javascript error: ${err.message}`));
  page.on("console", (msg) => { if (msg.type() === "error" && !msg.text().includes("net::ERR_FAILED")) problems.push(`console error: ${msg.text()}`); });
  await routeOffline(page, blocked);
  await page.goto(base + rel, { waitUntil: "load" });
  const math = await checkMath(page, problems);
  const figures = await checkFigures(page, problems);
  const solutions = await checkSolutions(page, problems);
  const wideEquations = await checkEquations(page, 1280, problems); // after the solutions are open
  const colab = await checkColab(page, rel, problems);
  const titleTop = await page.evaluate(() => {
    const h1 = [...document.querySelectorAll("h1")].find((h) => h.offsetParent !== null && h.textContent.trim());
    return h1 ? h1.getBoundingClientRect().top + window.scrollY : null; // from the top of the page
  });
  if (rel.startsWith("chapters/") && !(titleTop < 900)) problems.push(`title: the H1 starts at ${Math.round(titleTop)} px, below the first screen (900 px)`);
  if (blocked.length) problems.push(`requests outside the book: ${[...new Set(blocked)].slice(0, 5).join(", ")}`);
  await page.screenshot({ path: join(shotDir, rel.replace(/\//g, "__").replace(/\.html$/, ".png")), fullPage: true });
  await page.close();
  // Phone width (390x844): display equations only, no screenshot.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
  await routeOffline(phone, blocked);
  await phone.goto(base + rel, { waitUntil: "load" });
  await checkMath(phone, []);
  await checkSolutions(phone, []); // open them: equations in solutions must fit too
  const wideEquationsPhone = await checkEquations(phone, 390, problems);
  await phone.close();
  if (blocked.length && !problems.some((p) => p.startsWith("requests outside"))) problems.push(`requests outside the book (phone width): ${[...new Set(blocked)].slice(0, 5).join(", ")}`);
  report.push({ page: rel, math, figures, solutions, colab, titleTop, wideEquations, wideEquationsPhone, problems });
  failed += problems.length > 0;
}
await browser.close();
server.close();
console.log(JSON.stringify({ pages: report.length, failed, report }, null, 1));
process.exit(failed ? 1 : 0);
