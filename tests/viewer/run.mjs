// The viewer (clients/viewer) in Debian's headless chromium, driven by
// playwright-core: the bundled samples and a generated 300-image CSV opened
// through the file input of the file:// page; toggles, modes, zoom, the Dice
// tables against `osseg dice --json`, canvas pixels against committed
// references, and the open time of the big CSV (printed, not asserted).
//
//   node run.mjs --osseg BIN/osseg --gen BIN/gen_predictions --work DIR
//   UPDATE_REFS=1 node run.mjs ...   rewrites refs/*.png and docs/viewer.png
//
// Exit status: 0 pass, 1 fail, 77 skipped (no chromium or no node_modules:
// `npm ci` in tests/viewer, see README).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import zlib from "node:zlib";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith("--") ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const SKIP = 77;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!fs.existsSync(chromiumPath)) {
  console.log(`SKIP: no ${chromiumPath} (apt-get install --no-install-recommends chromium)`);
  process.exit(SKIP);
}
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch {
  console.log("SKIP: no playwright-core (run `npm ci` in tests/viewer)");
  process.exit(SKIP);
}
const osseg = args.osseg, gen = args.gen;
const work = args.work || fs.mkdtempSync("/tmp/osseg-viewer-");
fs.mkdirSync(work, { recursive: true });
const update = !!process.env.UPDATE_REFS;
const t0 = Date.now();

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}
const run = (bin, a) => execFileSync(bin, a, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const diceJsonText = (pred, gt, extra = []) => run(osseg, ["dice", "--json", ...extra, pred, gt]);
// osseg dice --json, with the per-class numbers kept as printed (%.10g).
function diceJson(pred, gt, extra = []) {
  const out = diceJsonText(pred, gt, extra);
  const per = {};
  const obj = /"per_class":\{(.*)\},"images"/.exec(out)[1];
  for (const m of obj.matchAll(/"((?:[^"\\]|\\.)*)":([-0-9.e+]+)/g)) per[JSON.parse('"' + m[1] + '"')] = m[2];
  const mean = /"mean":([-0-9.e+]+)/.exec(out)[1];
  return { mean, per };
}

// ----------------------------------------------------------- inputs ---
const samples = path.join(root, "data/samples");
const images = fs.readdirSync(path.join(samples, "images")).filter((f) => f.endsWith(".png")).sort()
  .map((f) => path.join(samples, "images", f));
const labels = fs.readdirSync(path.join(samples, "labels")).sort().map((f) => path.join(samples, "labels", f));
const gtCsv = path.join(samples, "gt.csv");
const predCsv = path.join(work, "unetpp.csv");
run(osseg, ["predict", "--model", path.join(root, "data/models/unetpp_demo.onnx"), "--threads", "1",
            "-o", predCsv, ...images]);
const predB = path.join(work, "unetpp_copy.csv");
fs.copyFileSync(predCsv, predB);
const big = path.join(work, "big");
fs.mkdirSync(big, { recursive: true });
run(gen, ["--seed", "15", "--images", "300", "--models", "1", big]);
const bigGt = path.join(big, "gt.csv"), bigPred = path.join(big, "model1.csv");

// A 16-bit gray PNG (a diagonal ramp over the full 0..65535 range).
function png16(file, w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 255] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4), td = Buffer.concat([Buffer.from(type), data]), c = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 16; ihdr[9] = 0;
  const raw = Buffer.alloc(h * (1 + 2 * w));
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) raw.writeUInt16BE(Math.floor(((x + y) * 65535) / (w + h - 2)), y * (1 + 2 * w) + 1 + 2 * x);
  fs.writeFileSync(file, Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr),
                                        chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]));
}

// One image's rows of a CSV, for the per-image Dice of `osseg dice`.
function oneImage(csv, image, out) {
  const lines = fs.readFileSync(csv, "utf8").split("\n");
  fs.writeFileSync(out, [lines[0], ...lines.filter((l) => l.startsWith(image + ","))].join("\n") + "\n");
  return out;
}

// ---------------------------------------------------------- browser ---
const browser = await chromium.launch({
  executablePath: chromiumPath, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--force-color-profile=srgb", "--font-render-hinting=none"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, deviceScaleFactor: 1 });
const requests = [];
page.on("request", (r) => { if (!/^(file|blob|data):/.test(r.url())) requests.push(r.url()); });
page.on("pageerror", (e) => check(false, "page error: " + e.message));
page.on("console", (m) => { if (m.type() === "error") check(false, "console error: " + m.text()); });
// The page is opened at the URL osseg view prints, with a file whose name
// needs percent-encoding as the hint.
const spaced = path.join(work, "pred A#1.csv");
fs.copyFileSync(predCsv, spaced);
const viewOut = run(osseg, ["view", path.join(samples, "images"), spaced]);
const url = viewOut.split("\n")[0];
check(url === pathToFileURL(path.join(root, "clients/viewer/index.html")).href + "#" +
      path.join(samples, "images") + "|" + spaced.replace(/ /g, "%20").replace("#", "%23") &&
      viewOut.includes("\n  " + spaced + "\n"), `osseg view prints the page's URL with the files as a hint (${url})`);
await page.goto(url);
await page.waitForFunction(() => window.ossegViewer);
check((await page.textContent("#hint")) === "open: " + path.join(samples, "images") + ", " + spaced,
      "the page shows the hint");
try {
  run(osseg, ["view", path.join(work, "missing.csv")]);
  check(false, "osseg view fails on a missing file");
} catch (e) {
  check(e.status === 1 && /missing.csv: No such file/.test(e.stderr), "osseg view fails on a missing file (exit 1)");
}

const open = async (files) => {
  await page.evaluate(() => window.ossegViewer.fixSize(900, 840));
  await page.setInputFiles("#files", files);
  await page.waitForFunction(() => window.ossegViewer.state.busy === 0 && window.ossegViewer.state.lastOpenMs > 0);
  await page.evaluate(() => window.ossegViewer.idle());
};
const idle = () => page.evaluate(() => window.ossegViewer.idle());
const state = (f) => page.evaluate(f);
const tableOf = (id) => page.$$eval(`#${id} tr[data-cls]`, (trs) => Object.fromEntries(trs.map((t) => [t.dataset.cls, t.dataset.dice])));

// Compares the shown canvas with refs/NAME.png (decoded by the browser):
// at most 0.5% of the pixels may differ by more than 16 in a channel.
async function compareRef(name) {
  const ref = path.join(here, "refs", name + ".png");
  const canvasPng = async () => Buffer.from((await page.evaluate(() =>
    document.getElementById("view").toDataURL("image/png"))).split(",")[1], "base64");
  if (update || !fs.existsSync(ref)) {
    fs.mkdirSync(path.dirname(ref), { recursive: true });
    fs.writeFileSync(ref, await canvasPng());
    console.log(`     wrote ${path.relative(root, ref)}`);
    return;
  }
  const diff = await page.evaluate(async (b64) => {
    const c = document.getElementById("view"), w = c.width, h = c.height;
    const data = c.getContext("2d").getImageData(0, 0, w, h).data;
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    if (bmp.width !== w || bmp.height !== h) return { size: `${bmp.width}x${bmp.height} vs ${w}x${h}` };
    const o = new OffscreenCanvas(w, h), x = o.getContext("2d");
    x.drawImage(bmp, 0, 0);
    const r = x.getImageData(0, 0, w, h).data;
    let bad = 0;
    for (let i = 0; i < r.length; i += 4)
      if (Math.abs(r[i] - data[i]) > 16 || Math.abs(r[i + 1] - data[i + 1]) > 16 || Math.abs(r[i + 2] - data[i + 2]) > 16) bad++;
    return { bad, total: w * h };
  }, fs.readFileSync(ref).toString("base64"));
  if (diff.size) return check(false, `${name}: size ${diff.size}`);
  const frac = diff.bad / diff.total;
  check(frac <= 0.005, `${name}: ${(100 * frac).toFixed(3)}% pixels differ from refs/${name}.png (limit 0.5%)`);
  if (frac > 0.005) fs.writeFileSync(path.join(work, name + ".actual.png"), await canvasPng());
}

// Painted overlay pixels of each colour, and the counts expected from the
// shown image's run lists (computed here independently of paint()).
async function overlayCounts() {
  return page.evaluate(() => {
    const V = window.ossegViewer, S = V.state, cur = S.cur;
    const o = V.overlay.getContext("2d").getImageData(0, 0, cur.w, cur.h).data;
    let painted = 0;
    for (let i = 3; i < o.length; i += 4) if (o[i]) painted++;
    const n = cur.w * cur.h, gt = new Uint8Array(n), a = new Uint8Array(n);
    const on = (c) => S.on.get(c) !== false;
    for (const [c, r] of cur.gt) if (on(c)) for (let i = 0; i < r.length; i += 2) gt.fill(1, r[i], r[i] + r[i + 1]);
    for (const [c, r] of cur.a) if (on(c)) for (let i = 0; i < r.length; i += 2) a.fill(1, r[i], r[i] + r[i + 1]);
    let ng = 0, na = 0, union = 0;
    for (let i = 0; i < n; i++) { ng += gt[i]; na += a[i]; union += gt[i] | a[i]; }
    return { painted, gt: ng, pred: na, union };
  });
}

// ----------------------------------------------------------- samples ---
await open([...images, gtCsv, predCsv, predB]);
check(await state(() => window.ossegViewer.state.images.length) === 4, "4 sample images listed");
check(await state(() => window.ossegViewer.state.gt === "1" && window.ossegViewer.state.predA === "2"),
      "gt.csv taken as the label, the prediction as model A");
const first = path.basename(images[0]);
check(await state(() => window.ossegViewer.state.cur.name) === first, `${first} shown first`);

// Whole-CSV Dice against osseg dice --json, as printed.
await page.waitForFunction(() => window.ossegViewer.state.csvDice);
{
  const want = diceJson(predCsv, gtCsv);
  const got = await tableOf("diceCsv");
  const bad = Object.keys(want.per).filter((c) => got[c] !== want.per[c]);
  check(got.mean === want.mean && bad.length === 0 && Object.keys(got).length === Object.keys(want.per).length + 1,
        `samples: whole-CSV Dice table equals osseg dice --json (mean ${got.mean} vs ${want.mean}; ${bad.length} classes differ${bad.length ? ": " + bad.map((c) => `${c} ${got[c]} vs ${want.per[c]}`).join(", ") : ""})`);
}
// This image's Dice against osseg dice on the image's rows only.
{
  const want = diceJson(oneImage(predCsv, first, path.join(work, "pred1.csv")), oneImage(gtCsv, first, path.join(work, "gt1.csv")));
  const got = await tableOf("diceImage");
  const bad = Object.keys(want.per).filter((c) => got[c] !== want.per[c]);
  check(bad.length === 0 && got.mean === want.mean,
        `samples: this image's Dice equals osseg dice --json on its rows (mean ${got.mean} vs ${want.mean}, ${bad.length} classes differ)`);
}

// Label mode: every GT pixel of the enabled classes painted, nothing else.
let c = await overlayCounts();
check(c.painted === c.gt && c.gt > 0, `label mode paints the GT masks (${c.painted} of ${c.gt} pixels)`);
await compareRef("label");
// Groups: key 1 turns the fingers off, key 0 everything.
await page.keyboard.press("1");
check(await state(() => window.OSSEG.CLASSES.slice(0, 19).every((k) => !window.ossegViewer.state.on.get(k))) &&
      await state(() => window.ossegViewer.state.on.get("Radius")), "key 1 turns the 19 fingers off, not the rest");
const c2 = await overlayCounts();
check(c2.painted === c2.gt && c2.painted < c.painted, `fingers off: ${c2.painted} pixels painted (was ${c.painted})`);
await page.keyboard.press("1");
// One class checkbox.
await page.click('#classes input[data-cls="Radius"]');
check(await state(() => window.ossegViewer.state.on.get("Radius") === false), "Radius checkbox turns Radius off");
const c3 = await overlayCounts();
check(c3.painted === c3.gt && c3.painted < c.painted, `Radius off: ${c3.painted} pixels painted`);
await page.click('#classes input[data-cls="Radius"]');
// Opacity: 0 paints nothing visible.
await page.$eval("#allOpacity", (e) => { e.value = "0"; e.dispatchEvent(new Event("input")); });
check(await state(() => [...window.ossegViewer.state.opacity.values()].every((v) => v === 0)), "opacity slider sets every class");
await page.$eval("#allOpacity", (e) => { e.value = "0.5"; e.dispatchEvent(new Event("input")); });

// Modes: m cycles label -> pred -> diff -> ab.
await page.keyboard.press("m");
check(await state(() => window.ossegViewer.state.mode) === "pred", "m switches to image / prediction");
c = await overlayCounts();
check(c.painted === c.pred && c.pred > 0, `prediction mode paints the prediction (${c.painted} of ${c.pred})`);
await page.keyboard.press("m");
check(await state(() => window.ossegViewer.state.mode) === "diff", "m switches to prediction vs label");
{
  const k = await page.evaluate(() => {
    const V = window.ossegViewer, cur = V.state.cur;
    const o = V.overlay.getContext("2d").getImageData(0, 0, cur.w, cur.h).data;
    const n = { tp: 0, fp: 0, fn: 0 };
    for (let i = 0; i < o.length; i += 4) {
      if (!o[i + 3]) continue;
      const [r, g, b] = [o[i], o[i + 1], o[i + 2]]; /* alpha un-premultiplied: +-2 */
      if (r < 10 && g > 190 && b < 95) n.tp++; else if (r > 245 && g < 35 && b < 80) n.fp++; else if (r < 55 && b > 245) n.fn++;
    }
    /* expected, class by class on its own, the last class painted winning */
    const N = cur.w * cur.h, code = new Uint8Array(N), empty = new Uint32Array(0);
    for (const cls of window.OSSEG.CLASSES) {
      const g = cur.gt.get(cls) || empty, a = cur.a.get(cls) || empty, m = new Uint8Array(N);
      for (let i = 0; i < g.length; i += 2) m.fill(1, g[i], g[i] + g[i + 1]);
      for (let i = 0; i < a.length; i += 2) for (let p = a[i]; p < a[i] + a[i + 1]; p++) m[p] |= 2;
      for (let p = 0; p < N; p++) if (m[p]) code[p] = m[p];
    }
    const e = { tp: 0, fp: 0, fn: 0 };
    for (let p = 0; p < N; p++) if (code[p] === 3) e.tp++; else if (code[p] === 2) e.fp++; else if (code[p] === 1) e.fn++;
    return { n, e };
  });
  check(JSON.stringify(k.n) === JSON.stringify(k.e) && k.n.tp > 0 && k.n.fp > 0 && k.n.fn > 0,
        `diff mode colours TP/FP/FN (${JSON.stringify(k.n)}, expected ${JSON.stringify(k.e)})`);
}
await compareRef("diff");
await page.keyboard.press("m");
check(await state(() => window.ossegViewer.state.mode) === "ab", "m switches to model A vs model B");
// Model B: a copy of model A, so every painted pixel is "both".
await page.selectOption("#predB", "");
await page.waitForFunction(() => window.ossegViewer.state.cur.b.size === 0);
await page.selectOption("#predB", { label: path.basename(predB) });
await page.waitForFunction(() => window.ossegViewer.state.cur.b.size > 0);
await idle();
{
  const k = await page.evaluate(() => {
    const V = window.ossegViewer, cur = V.state.cur;
    const o = V.overlay.getContext("2d").getImageData(0, 0, cur.w, cur.h).data;
    let both = 0, other = 0;
    for (let i = 0; i < o.length; i += 4) if (o[i + 3]) { if (o[i] > 225 && o[i + 1] > 225 && o[i + 2] > 225) both++; else other++; }
    return { both, other };
  });
  const c = await overlayCounts();
  check(k.other === 0 && k.both === c.pred, `A vs B with B = A: ${k.both} pixels "both", ${k.other} others`);
}
await page.keyboard.press("m");
check(await state(() => window.ossegViewer.state.mode) === "label", "m cycles back to image / label");

// Zoom: + zooms 1.5x about the centre, the wheel about the cursor; full resolution when zoomed in.
const s0 = await state(() => window.ossegViewer.state.view.scale);
await page.keyboard.press("+");
const s1 = await state(() => window.ossegViewer.state.view.scale);
check(Math.abs(s1 / s0 - 1.5) < 1e-9, `+ zooms in 1.5x (${s0.toFixed(4)} -> ${s1.toFixed(4)})`);
await page.keyboard.press("-");
check(Math.abs(await state(() => window.ossegViewer.state.view.scale) - s0) < 1e-9, "- zooms back out");
const box = await page.$eval("#view", (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; });
await page.mouse.move(box[0] + box[2] * 0.5, box[1] + box[3] * 0.3);
for (let i = 0; i < 6; i++) await page.mouse.wheel(0, -300);
await page.waitForFunction((s) => window.ossegViewer.state.view.scale > 4 * s, s0);
const zoomed = await state(() => window.ossegViewer.state.view.scale);
check(zoomed > 1, `wheel zooms past full resolution (scale ${zoomed.toFixed(2)})`);
// drag pans
const before = await state(() => ({ ...window.ossegViewer.state.view }));
await page.mouse.down();
await page.mouse.move(box[0] + box[2] * 0.5 + 100, box[1] + box[3] * 0.3 + 50, { steps: 4 });
await page.mouse.up();
const after = await state(() => ({ ...window.ossegViewer.state.view }));
check(Math.abs(after.tx - before.tx - 100) < 1e-6 && Math.abs(after.ty - before.ty - 50) < 1e-6, "drag pans the view");
await page.evaluate(() => { const V = window.ossegViewer; V.fit(); V.zoomAt(3 / V.state.view.scale, 455, 545); });
await compareRef("zoom");
await page.keyboard.press("f");

// n/p: next / previous image.
await page.keyboard.press("n");
await idle();
check(await state(() => window.ossegViewer.state.cur.name) === path.basename(images[1]), "n shows the next image");
await page.keyboard.press("p");
await idle();
check(await state(() => window.ossegViewer.state.cur.name) === first, "p shows the previous image");

// Worst images of a class, one click away.
await page.click('#diceCsv tr[data-cls="Pisiform"]');
const worst = await page.$$eval("#worst button", (b) => b.map((x) => x.dataset.image));
check(worst.length === 4, `worst images of Pisiform listed (${worst.length})`);
await page.click(`#worst button[data-image="${worst[worst.length - 1]}"]`);
await idle();
check(await state(() => window.ossegViewer.state.cur.name) === worst[worst.length - 1], "clicking a worst image shows it");
// Sorting by Dice.
await page.click('#diceCsv th[data-sort="dice"]');
const sorted = await page.$$eval("#diceCsv tbody tr", (trs) => trs.map((t) => +t.dataset.dice));
check(sorted.every((v, i) => i === 0 || sorted[i - 1] <= v), "Dice table sorts by Dice");
await page.goto("about:blank"); // nothing to keep

// A 16-bit PNG with the 512x512 sample CSVs (data/samples/csv).
{
  await page.goto(pathToFileURL(path.join(root, "clients/viewer/index.html")).href);
  await page.waitForFunction(() => window.ossegViewer);
  const csvDir = path.join(samples, "csv");
  const name = fs.readFileSync(path.join(csvDir, "gt.csv"), "utf8").split("\n")[1].split(",")[0];
  const png = path.join(work, name);
  png16(png, 512, 512);
  await open([png, path.join(csvDir, "gt.csv"), path.join(csvDir, "model1.csv")]);
  const info = await page.evaluate(() => {
    const S = window.ossegViewer.state, c = new OffscreenCanvas(512, 512), x = c.getContext("2d");
    x.drawImage(S.cur.bitmap, 0, 0);
    const d = x.getImageData(0, 0, 512, 512).data;
    return { name: S.cur.name, w: S.cur.w, h: S.cur.h, first: d[0], mid: d[(256 * 512 + 256) * 4], last: d[d.length - 4] };
  });
  check(info.name === name && info.w === 512 && info.first === 0 && Math.abs(info.mid - 128) <= 1 && info.last === 255,
        `16-bit PNG decoded to 8 bits for display (${JSON.stringify(info)})`);
  await page.waitForFunction(() => window.ossegViewer.state.csvDice);
  const want = diceJson(path.join(csvDir, "model1.csv"), path.join(csvDir, "gt.csv"), ["--height", "512", "--width", "512"]);
  const got = await tableOf("diceCsv");
  const bad = Object.keys(want.per).filter((c) => got[c] !== want.per[c]);
  check(got.mean === want.mean && bad.length === 0, `data/samples/csv: whole-CSV Dice equals osseg dice --json (mean ${got.mean})`);
  const want1 = diceJson(oneImage(path.join(csvDir, "model1.csv"), name, path.join(work, "m1.csv")),
                         oneImage(path.join(csvDir, "gt.csv"), name, path.join(work, "g1.csv")), ["--height", "512", "--width", "512"]);
  const got1 = await tableOf("diceImage");
  check(Object.keys(want1.per).every((c) => got1[c] === want1.per[c]) && got1.mean === want1.mean,
        `data/samples/csv: ${name}'s Dice equals osseg dice --json on its rows`);
}

// Dropping a file on the page opens it like the file input.
{
  const text = fs.readFileSync(path.join(samples, "csv/model2.csv"), "utf8");
  const dt = await page.evaluateHandle((t) => {
    const d = new DataTransfer();
    d.items.add(new File([t], "model2.csv", { type: "text/csv" }));
    return d;
  }, text);
  await page.dispatchEvent("#viewport", "dragover", { dataTransfer: dt });
  await page.dispatchEvent("#viewport", "drop", { dataTransfer: dt });
  await page.waitForFunction(() => window.ossegViewer.state.csvs.some((c) => c.name === "model2.csv"));
  await idle();
  check(await state(() => window.ossegViewer.state.predB) !== "" &&
        await state(() => window.ossegViewer.state.csvs.length) === 3, "a dropped CSV opens (as model B)");
}

// A malformed CSV is reported with its file and line, and opens nothing.
{
  const bad = path.join(work, "broken_pred.csv");
  fs.writeFileSync(bad, "image_name,class,rle\na.png,finger-1,1 2\na.png,finger-2\n");
  await open([bad]);
  const errors = await state(() => window.ossegViewer.state.errors);
  check(errors.some((e) => e === "broken_pred.csv:3: expected 3 fields") &&
        await state(() => window.ossegViewer.state.csvs.length) === 3,
        `a malformed CSV is reported as FILE:LINE (${JSON.stringify(errors.slice(-1))})`);
  await page.evaluate(() => { window.ossegViewer.state.errors.length = 0; });
}

// The label JSONs as ground truth: drawn as cv2.fillPoly draws them, they
// equal gt.csv, so the image's Dice table is the same.
await page.goto(pathToFileURL(path.join(root, "clients/viewer/index.html")).href);
await page.waitForFunction(() => window.ossegViewer);
await open([images[0], ...labels, predCsv]);
check(await state(() => window.ossegViewer.state.gt) === "labels", "label JSONs taken as the label");
// "Open folder…" on a folder laid out like out/demo: its CSV is opened,
// the Dice JSON skipped with a message, the overlays/ subfolder ignored.
{
  const demo = path.join(work, "demo");
  fs.mkdirSync(path.join(demo, "overlays/unetpp"), { recursive: true });
  fs.copyFileSync(predCsv, path.join(demo, "segformer.csv"));
  fs.writeFileSync(path.join(demo, "dice_segformer.json"), diceJsonText(predCsv, gtCsv));
  fs.copyFileSync(images[1], path.join(demo, "overlays/unetpp", path.basename(images[1], ".png") + ".overlay.png"));
  const before = await state(() => window.ossegViewer.state.images.length);
  await page.setInputFiles("#folder", demo);
  await page.waitForFunction(() => window.ossegViewer.state.csvs.length === 2);
  await idle();
  const st = await state(() => ({ n: window.ossegViewer.state.images.length, errors: window.ossegViewer.state.errors,
                                   b: window.ossegViewer.state.predB }));
  check(st.n === before && st.b === "2" && st.errors.length === 1 && /dice_segformer.json: not a label JSON/.test(st.errors[0]),
        `Open folder…: CSV opened as model B, Dice JSON skipped, overlays/ ignored (${JSON.stringify(st)})`);
}
{
  const want = diceJson(oneImage(predCsv, first, path.join(work, "pred1.csv")), oneImage(gtCsv, first, path.join(work, "gt1.csv")));
  const got = await tableOf("diceImage");
  const bad = Object.keys(want.per).filter((c) => got[c] !== want.per[c]);
  check(bad.length === 0, `label JSON: this image's Dice equals osseg dice against gt.csv (${bad.length} classes differ)`);
}
await page.setViewportSize({ width: 1400, height: 900 });

// ------------------------------------------------------- 300 images ---
await page.goto(pathToFileURL(path.join(root, "clients/viewer/index.html")).href);
await page.waitForFunction(() => window.ossegViewer);
await page.$eval("#width", (e) => { e.value = "2048"; });
const tOpen = Date.now();
await open([bigGt, bigPred]);
const openWall = Date.now() - tOpen;
const openMs = await state(() => window.ossegViewer.state.lastOpenMs);
check(await state(() => window.ossegViewer.state.images.length) === 300, "300 images listed");
console.log(`TIMING open 300 images x 29 classes (2 CSVs, ${((fs.statSync(bigGt).size + fs.statSync(bigPred).size) / 1e6).toFixed(0)} MB): ` +
            `${openMs.toFixed(0)} ms in the page (files read, indexed, first image decoded and drawn), ${openWall} ms wall`);
await page.waitForFunction(() => window.ossegViewer.state.csvDice, null, { timeout: 60000 });
console.log(`TIMING whole-CSV Dice of 300 x 29 rows in the worker (after the open, in the background): ` +
            `${(await state(() => window.ossegViewer.state.csvDiceMs)).toFixed(0)} ms`);
{
  const want = diceJson(bigPred, bigGt);
  const got = await tableOf("diceCsv");
  const bad = Object.keys(want.per).filter((c) => got[c] !== want.per[c]);
  check(got.mean === want.mean && bad.length === 0,
        `300 images: whole-CSV Dice table equals osseg dice --json (mean ${got.mean} vs ${want.mean}; ${bad.length} of ${Object.keys(want.per).length} classes differ)`);
}

// ------------------------------------------------------ over http ---
// The same page from a static server (a tiny read-only one here, on
// 127.0.0.1): the samples open and the Dice table is the same.
{
  const dir = path.join(root, "clients/viewer");
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
  const server = http.createServer((req, res) => {
    const name = path.basename(new URL(req.url, "http://x").pathname) || "index.html";
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { "Content-Type": types[path.extname(name)] || "application/octet-stream" });
    res.end(fs.readFileSync(file));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}/`;
  await page.goto(base + "index.html");
  await page.waitForFunction(() => window.ossegViewer);
  await open([...images, gtCsv, predCsv]);
  await page.waitForFunction(() => window.ossegViewer.state.csvDice);
  const want = diceJson(predCsv, gtCsv);
  const got = await tableOf("diceCsv");
  check(got.mean === want.mean && Object.keys(want.per).every((c) => got[c] === want.per[c]),
        `over http: samples open, Dice table equals osseg dice --json (mean ${got.mean})`);
  await page.goto("about:blank");
  server.close();
  for (let i = requests.length - 1; i >= 0; i--) if (requests[i].startsWith(base)) requests.splice(i, 1);
}

// ------------------------------------------------------- screenshot ---
if (update) {
  await page.goto(pathToFileURL(path.join(root, "clients/viewer/index.html")).href);
  await page.waitForFunction(() => window.ossegViewer);
  await page.setViewportSize({ width: 1500, height: 900 });
  await open([...images, gtCsv, predCsv]);
  await page.waitForFunction(() => window.ossegViewer.state.csvDice);
  await page.evaluate(() => window.ossegViewer.fixSize(0));
  await page.click('#diceCsv tr[data-cls="Pisiform"]');
  await page.evaluate(() => { document.getElementById("right").scrollTop = 0; });
  await idle();
  await page.screenshot({ path: path.join(root, "docs/viewer.png") });
  console.log("     wrote docs/viewer.png");
}

check(requests.length === 0, `no network requests (${requests.length}${requests.length ? ": " + requests[0] : ""})`);
await browser.close();
console.log(`${failures ? "FAILED" : "passed"}: ${failures} failure(s), ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(failures ? 1 : 0);
