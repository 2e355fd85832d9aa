// Drive the built HTML book in headless Chromium, page by page, as a reader would, with no internet.
//
//   node tests/browser/check_book.mjs <html dir> <screenshot dir> <colab prefix> <plotly.min.js>
//
// For every page: no JavaScript error; math rendered by MathJax (no raw TeX left); every interactive
// figure responds to its slider; exercise solutions stay hidden until their toggle is clicked; the Colab
// launch link points at the page's notebook; a chapter's title (its H1) is on the first screen; no display
// equation is wider than its column, at 1280x900 and again at phone width (390x844); at both widths it
// also counts tables wider than the text column and code/output blocks that overflow it by more than 16 px
// (the Python test holds budgets for these counts), figures without a caption or alt text (an <img> in a
// <figure> needs a <figcaption> and alt text, an interactive plotly figure a caption and an aria-label),
// and checks that each interactive figure fills the phone's column and responds to its control there.
// Dark mode (data-theme=dark) gets one screenshot per chapter at the end. MathJax
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

// Plotly figures from kimi_mini.viz: a slider (plotly's own) or a row of HTML buttons (categorical choices).
const drawnOf = (page, id) => page.evaluate((id) => JSON.stringify([...document.getElementById(id).querySelectorAll(".cartesianlayer path, .scatterlayer path")].map((p) => p.getAttribute("d"))), id);

async function figureReady(page, id) {
  return page.waitForFunction((id) => { const gd = document.getElementById(id); return gd && gd._fullLayout && gd._transitionData && gd._transitionData._frames.length > 0 && gd.querySelector(".scatterlayer, .barlayer"); }, id, { timeout: 20000 }).then(() => true, () => false);
}

// Move the figure's control far from where it is (slider) or press another button; true if the drawing changed.
async function moveControl(page, fig, id) {
  const before = await drawnOf(page, id);
  const buttons = fig.locator("xpath=..").locator(".kimi-buttons button");
  if (await buttons.count()) {
    const n = await buttons.count();
    let target = 0;
    for (let i = 0; i < n; i++) if ((await buttons.nth(i).getAttribute("aria-pressed")) !== "true") { target = i; break; }
    await buttons.nth(target).click();
    await page.waitForTimeout(400);
    const pressed = await buttons.nth(target).getAttribute("aria-pressed");
    return { changed: before !== (await drawnOf(page, id)) && pressed === "true", kind: "buttons" };
  }
  const rail = fig.locator(".slider-rail-touch-rect");
  if (!(await rail.count())) return { changed: false, kind: "none" };
  const box = await rail.boundingBox();
  const active = await page.evaluate((id) => document.getElementById(id).layout.sliders[0].active, id);
  const steps = await page.evaluate((id) => document.getElementById(id).layout.sliders[0].steps.length, id);
  const target = active < steps / 2 ? 0.97 : 0.03; // click far from the current step
  await page.mouse.click(box.x + box.width * target, box.y + box.height / 2);
  await page.waitForTimeout(400);
  return { changed: before !== (await drawnOf(page, id)), kind: "slider" };
}

async function checkFigures(page, problems) {
  const figures = page.locator(".kimi-interactive");
  const n = await figures.count();
  for (let i = 0; i < n; i++) {
    const fig = figures.nth(i);
    const id = await fig.getAttribute("id");
    await fig.scrollIntoViewIfNeeded();
    if (!(await figureReady(page, id))) { problems.push(`figure ${id}: not drawn`); continue; }
    const moved = await moveControl(page, fig, id);
    if (!moved.changed) problems.push(`figure ${id}: using its ${moved.kind} did not change the drawing`);
    // Every frame must show its data: some point of some trace inside the axes' ranges.
    const frames = await page.evaluate((id) => document.getElementById(id)._transitionData._frames.map((f) => f.name), id);
    for (const [step, name] of frames.entries()) {
      const visible = await page.evaluate(async ([id, name]) => {
        const gd = document.getElementById(id);
        await Plotly.animate(gd, [name], { mode: "immediate", frame: { duration: 0, redraw: true }, transition: { duration: 0 } });
        const [x0, x1] = gd._fullLayout.xaxis.range, [y0, y1] = gd._fullLayout.yaxis.range;
        const inside = (v, a, b) => typeof v === "number" && v >= Math.min(a, b) && v <= Math.max(a, b);
        return gd.data.some((t) => (t.y || []).some((y, j) => inside(y, y0, y1) && (typeof (t.x || [])[j] !== "number" || inside(t.x[j], x0, x1))));
      }, [id, name]);
      if (!visible) problems.push(`figure ${id}: frame ${step} (${name}) shows no data inside the axes`);
    }
  }
  return n;
}

// At phone width: each interactive figure is as wide as the column, its plot area is not squeezed, and its
// control still changes the drawing.
async function checkFiguresPhone(page, problems) {
  const figures = page.locator(".kimi-interactive");
  const n = await figures.count();
  const sizes = [];
  for (let i = 0; i < n; i++) {
    const fig = figures.nth(i);
    const id = await fig.getAttribute("id");
    await fig.scrollIntoViewIfNeeded();
    if (!(await figureReady(page, id))) { problems.push(`figure ${id} at 390 px: not drawn`); continue; }
    const size = await page.evaluate((id) => {
      const gd = document.getElementById(id);
      return { id, width: Math.round(gd.getBoundingClientRect().width), column: Math.round(gd.parentElement.clientWidth), plot: Math.round(gd._fullLayout._size.w) };
    }, id);
    sizes.push(size);
    if (size.width < size.column - 2) problems.push(`figure ${id} at 390 px: ${size.width} px wide in a ${size.column} px column`);
    if (size.plot < 0.6 * size.width) problems.push(`figure ${id} at 390 px: its plot area is ${size.plot} px of ${size.width} px`);
    const moved = await moveControl(page, fig, id);
    if (!moved.changed) problems.push(`figure ${id} at 390 px: using its ${moved.kind} did not change the drawing`);
  }
  return sizes;
}

// Tables wider than the text column, and code or output blocks whose content overflows their box by more than
// `margin` px (they scroll sideways); `examples` keeps a few for the report.
async function checkBlocks(page) {
  return page.evaluate(() => {
    const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
    const style = getComputedStyle(article);
    const column = article.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const tables = [...article.querySelectorAll("table")].filter((t) => t.checkVisibility() && t.getBoundingClientRect().width > column + 2)
      .map((t) => ({ w: Math.round(t.getBoundingClientRect().width), text: t.innerText.slice(0, 50) }));
    const margin = 16;
    const code = [...article.querySelectorAll("pre")].filter((p) => p.checkVisibility() && p.closest("table") === null)
      .filter((p) => p.scrollWidth - p.clientWidth > margin || p.getBoundingClientRect().width > column + 2)
      .map((p) => ({ over: p.scrollWidth - p.clientWidth, text: p.innerText.split("\n").sort((a, b) => b.length - a.length)[0].slice(0, 60) }));
    return { column: Math.round(column), tables, code };
  });
}

// Every figure is captioned and described: an <img> in a <figure> has a <figcaption> and alt text (> 20
// characters); an output image outside a figure, or an interactive figure outside a captioned <figure> or
// without an aria-label, is a problem.
async function checkCaptions(page, problems) {
  const missing = await page.evaluate(() => {
    const article = document.querySelector("article.bd-article") || document.body;
    const out = [];
    for (const img of article.querySelectorAll("figure img, .cell_output img")) {
      const fig = img.closest("figure");
      const name = (img.getAttribute("src") || "").split("/").pop();
      if (!fig || !fig.querySelector("figcaption")) out.push(`image ${name}: no caption`);
      if ((img.getAttribute("alt") || "").length <= 20) out.push(`image ${name}: no alt text`);
    }
    for (const div of article.querySelectorAll(".kimi-interactive")) {
      const fig = div.closest("figure");
      if (!fig || !fig.querySelector("figcaption")) out.push(`interactive figure ${div.id}: no caption`);
      if ((div.getAttribute("aria-label") || "").length <= 20) out.push(`interactive figure ${div.id}: no aria-label`);
    }
    return out;
  });
  for (const m of missing) problems.push(`figure: ${m}`);
  return missing.length;
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
for (const sub of ["", "dark", "phone"]) await mkdir(join(shotDir, sub), { recursive: true });
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
  const uncaptioned = await checkCaptions(page, problems);
  const blocks = await checkBlocks(page);
  if (blocked.length) problems.push(`requests outside the book: ${[...new Set(blocked)].slice(0, 5).join(", ")}`);
  const shot = rel.replace(/\//g, "__").replace(/\.html$/, "");
  await page.screenshot({ path: join(shotDir, shot + ".png"), fullPage: true });
  if (rel.startsWith("chapters/")) { // the same page in the theme's dark mode
    await page.evaluate(() => { document.documentElement.dataset.theme = "dark"; document.documentElement.dataset.mode = "dark"; });
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(shotDir, "dark", shot + ".png"), fullPage: true });
  }
  await page.close();
  // Phone width (390x844): equations, tables, code blocks and interactive figures.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
  phone.on("pageerror", (err) => problems.push(`javascript error at 390 px: ${err.message}`));
  await routeOffline(phone, blocked);
  await phone.goto(base + rel, { waitUntil: "load" });
  await checkMath(phone, []);
  await checkSolutions(phone, []); // open them: equations in solutions must fit too
  const wideEquationsPhone = await checkEquations(phone, 390, problems);
  const phoneFigures = await checkFiguresPhone(phone, problems);
  const blocksPhone = await checkBlocks(phone);
  await phone.screenshot({ path: join(shotDir, "phone", shot + ".png"), fullPage: true });
  await phone.close();
  if (blocked.length && !problems.some((p) => p.startsWith("requests outside"))) problems.push(`requests outside the book (phone width): ${[...new Set(blocked)].slice(0, 5).join(", ")}`);
  report.push({
    page: rel, math, figures, solutions, colab, titleTop, wideEquations, wideEquationsPhone, uncaptioned,
    column: blocks.column, wideTables: blocks.tables.length, wideTablesPhone: blocksPhone.tables.length,
    wideCode: blocks.code.length, wideCodePhone: blocksPhone.code.length, phoneFigures,
    examples: { tables: blocks.tables.slice(0, 3), code: blocks.code.slice(0, 5), codePhone: blocksPhone.code.slice(0, 3) },
    problems,
  });
  failed += problems.length > 0;
}
await browser.close();
server.close();
const total = (key) => report.reduce((n, page) => n + page[key], 0);
const totals = Object.fromEntries(["wideEquations", "wideEquationsPhone", "wideTables", "wideTablesPhone", "wideCode", "wideCodePhone", "uncaptioned", "figures"].map((k) => [k, total(k)]));
console.log(JSON.stringify({ pages: report.length, failed, totals, report }, null, 1));
process.exit(failed ? 1 : 0);
