/* osseg viewer: the pure functions (CSV indexing, RLE, Dice, polygons).
 *
 * A classic script, not an ES module: Chromium refuses module imports and
 * worker scripts on file:// pages (origin 'null'), and the viewer must open
 * from file://. ossegCore installs its functions on the object it is given;
 * the page calls it on window.OSSEG, and the Web Worker gets the same source
 * through a Blob (viewer.js: ossegCore.toString()), so both sides run the
 * same code. */
"use strict";

function ossegCore(g) {
  /* The 29 classes in canonical order (pipeline/, bench/gen_predictions.c). */
  g.CLASSES = [
    "finger-1", "finger-2", "finger-3", "finger-4", "finger-5", "finger-6",
    "finger-7", "finger-8", "finger-9", "finger-10", "finger-11", "finger-12",
    "finger-13", "finger-14", "finger-15", "finger-16", "finger-17", "finger-18",
    "finger-19", "Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid",
    "Lunate", "Triquetrum", "Pisiform", "Radius", "Ulna"];

  /* imaging/overlay.c's palette (osseg_overlay_class_color), class i -> i % 29. */
  g.PALETTE = [
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
    [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [255, 99, 71],
    [46, 139, 87], [218, 165, 32], [65, 105, 225], [255, 140, 0], [186, 85, 211],
    [0, 206, 209], [255, 20, 147], [154, 205, 50], [100, 149, 237]];

  /* Indexes a competition CSV (image_name,class,rle) without parsing any
   * RLE: for each row the image, the class and the RLE's offsets in text.
   * Rows keep file order (osseg dice sums in GT order). Throws
   * "NAME:LINE: problem" on a malformed row. */
  g.indexCsv = function (text, name) {
    const rows = [];
    const images = new Map(); /* image -> [row indices] */
    let pos = 0, line = 1;
    const n = text.length;
    if (text.charCodeAt(0) === 0xfeff) pos = 1;
    let nl = text.indexOf("\n", pos);
    if (nl < 0) nl = n;
    const header = text.slice(pos, nl).replace(/\r$/, "");
    if (!/^image_name,class,rle$/i.test(header.trim()))
      throw new Error(name + ":1: header is '" + header.slice(0, 60) + "', expected image_name,class,rle");
    pos = nl + 1;
    while (pos < n) {
      line++;
      nl = text.indexOf("\n", pos);
      if (nl < 0) nl = n;
      let end = nl;
      if (end > pos && text.charCodeAt(end - 1) === 13) end--;
      if (end > pos) {
        const c1 = text.indexOf(",", pos);
        const c2 = c1 < 0 || c1 >= end ? -1 : text.indexOf(",", c1 + 1);
        if (c2 < 0 || c2 >= end) throw new Error(name + ":" + line + ": expected 3 fields");
        const image = text.slice(pos, c1), cls = text.slice(c1 + 1, c2);
        const r = rows.length;
        rows.push({ image: image, cls: cls, a: c2 + 1, b: end, line: line });
        let list = images.get(image);
        if (!list) images.set(image, (list = []));
        list.push(r);
      }
      pos = nl + 1;
    }
    return { rows: rows, images: images };
  };

  /* RLE text (1-based starts, row-major, "start length ...") to a run list
   * Uint32Array [start0, len0, start1, len1, ...] of 0-based starts,
   * canonical (sorted, overlaps merged, empty runs dropped) like
   * osseg_rle_parse. npixels bounds the runs (0: unchecked). */
  g.parseRle = function (text, a, b, npixels, where) {
    const out = [];
    let num = -1, count = 0, start = 0, prevEnd = -1, noncanon = false;
    for (let i = a; i <= b; i++) {
      const c = i < b ? text.charCodeAt(i) : 32;
      if (c >= 48 && c <= 57) {
        num = (num < 0 ? 0 : num * 10) + (c - 48);
      } else if (c === 32 || c === 9) {
        if (num < 0) continue;
        if ((count & 1) === 0) {
          if (num < 1) throw new Error(where + ": run start 0 (starts are 1-based)");
          start = num - 1;
        } else if (num > 0) {
          if (npixels && start + num > npixels)
            throw new Error(where + ": run '" + (start + 1) + " " + num + "' ends past the image end (" + npixels + " pixels)");
          if (start <= prevEnd) noncanon = true;
          prevEnd = start + num;
          out.push(start, num);
        }
        count++;
        num = -1;
      } else {
        throw new Error(where + ": unexpected character '" + text[i] + "' in the RLE");
      }
    }
    if (count & 1) throw new Error(where + ": odd number of numbers in the RLE");
    if (!noncanon) return Uint32Array.from(out);
    const idx = [];
    for (let i = 0; i < out.length; i += 2) idx.push([out[i], out[i] + out[i + 1]]);
    idx.sort((x, y) => x[0] - y[0]);
    const m = [];
    for (const [s, e] of idx) {
      if (m.length && s <= m[m.length - 1][1]) {
        if (e > m[m.length - 1][1]) m[m.length - 1][1] = e;
      } else m.push([s, e]);
    }
    const r = new Uint32Array(m.length * 2);
    m.forEach(([s, e], i) => { r[2 * i] = s; r[2 * i + 1] = e - s; });
    return r;
  };

  g.runsArea = function (r) {
    let s = 0;
    for (let i = 1; i < r.length; i += 2) s += r[i];
    return s;
  };

  g.runsIntersection = function (a, b) {
    let i = 0, j = 0, s = 0;
    while (i < a.length && j < b.length) {
      const a0 = a[i], a1 = a0 + a[i + 1], b0 = b[j], b1 = b0 + b[j + 1];
      const lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
      if (hi > lo) s += hi - lo;
      if (a1 < b1) i += 2; else j += 2;
    }
    return s;
  };

  /* kernels/dice.c: (2|A&B| + 1e-4) / (|A| + |B| + 1e-4), in doubles. */
  g.diceRuns = function (a, b) {
    return (2.0 * g.runsIntersection(a, b) + 1e-4) / (g.runsArea(a) + g.runsArea(b) + 1e-4);
  };

  /* printf("%.10g", x), the precision of osseg dice --json. */
  g.formatG10 = function (x) {
    if (!isFinite(x)) return String(x);
    if (x === 0) return "0";
    const e = x.toExponential(9); /* d.ddddddddde[+-]X */
    const exp = parseInt(e.slice(e.indexOf("e") + 1), 10);
    const strip = (s) => (s.indexOf(".") >= 0 ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
    if (exp < -4 || exp >= 10) {
      const [m, ex] = e.split("e");
      const en = Math.abs(exp);
      return strip(m) + "e" + (exp < 0 ? "-" : "+") + (en < 10 ? "0" : "") + en;
    }
    return strip(x.toFixed(9 - exp));
  };

  /* Mean Dice over a GT and a prediction index, as osseg dice computes it:
   * each GT row scored against the same (image, class) of the prediction
   * (missing: empty), averaged over images per class (GT order), then over
   * classes (in the order they first appear in GT). Also returns every
   * row's score for the worst-images lists. */
  g.diceTable = function (gtText, gtIx, predText, predIx, npixels, gtName, predName) {
    const pmap = new Map();
    predIx.rows.forEach((r, i) => pmap.set(r.image + "\u0000" + r.cls, i));
    const classes = [], stat = new Map(), perRow = [];
    const empty = new Uint32Array(0);
    let missing = 0;
    for (const r of gtIx.rows) {
      const a = g.parseRle(gtText, r.a, r.b, npixels, gtName + ":" + r.line);
      const p = pmap.get(r.image + "\u0000" + r.cls);
      let b = empty;
      if (p === undefined) missing++;
      else {
        const pr = predIx.rows[p];
        b = g.parseRle(predText, pr.a, pr.b, npixels, predName + ":" + pr.line);
      }
      const d = g.diceRuns(b, a);
      let st = stat.get(r.cls);
      if (!st) {
        st = { sum: 0, n: 0, images: [] };
        stat.set(r.cls, st);
        classes.push(r.cls);
      }
      st.sum += d;
      st.n++;
      st.images.push([r.image, d]);
    }
    let mean = 0;
    const per = {};
    for (const c of classes) {
      const st = stat.get(c);
      per[c] = st.sum / st.n;
      mean += st.sum / st.n;
      st.images.sort((x, y) => x[1] - y[1]);
    }
    mean /= classes.length;
    const worst = {};
    for (const c of classes) worst[c] = stat.get(c).images.slice(0, 10);
    return { mean: mean, classes: classes, perClass: per, worst: worst,
             images: gtIx.images.size, missing: missing };
  };

  /* ------------------------------------------------------------------
   * Polygons, as kernels/polygon.c draws them (cv2.fillPoly, LINE_8,
   * OpenCV 4.6): Bresenham edges, then an even-odd scanline fill in 16.16
   * fixed point. mask: Uint8Array(w*h), set to 1. */
  const ONE = 65536;
  function clipLine(w, h, p) {
    const right = w - 1, bottom = h - 1;
    let [x1, y1, x2, y2] = p;
    let c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8;
    let c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8;
    if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
      let a;
      if (c1 & 12) {
        a = c1 < 8 ? 0 : bottom;
        x1 += Math.trunc(((a - y1) * (x2 - x1)) / (y2 - y1));
        y1 = a;
        c1 = (x1 < 0) + (x1 > right) * 2;
      }
      if (c2 & 12) {
        a = c2 < 8 ? 0 : bottom;
        x2 += Math.trunc(((a - y2) * (x2 - x1)) / (y2 - y1));
        y2 = a;
        c2 = (x2 < 0) + (x2 > right) * 2;
      }
      if ((c1 & c2) === 0 && (c1 | c2) !== 0) {
        if (c1) {
          a = c1 === 1 ? 0 : right;
          y1 += Math.trunc(((a - x1) * (y2 - y1)) / (x2 - x1));
          x1 = a;
          c1 = 0;
        }
        if (c2) {
          a = c2 === 1 ? 0 : right;
          y2 += Math.trunc(((a - x2) * (y2 - y1)) / (x2 - x1));
          x2 = a;
          c2 = 0;
        }
      }
    }
    p[0] = x1; p[1] = y1; p[2] = x2; p[3] = y2;
    return (c1 | c2) === 0;
  }
  function drawLine(m, w, h, xa, ya, xb, yb) {
    const out = (x, y) => x < 0 || y < 0 || x >= w || y >= h;
    if (out(xa, ya) || out(xb, yb)) {
      const p = [xa, ya, xb, yb];
      if (!clipLine(w, h, p)) return;
      [xa, ya, xb, yb] = p;
    }
    let dx = xb - xa, dy = yb - ya, sx = 1, sy = 1, x = xa, y = ya;
    if (dx < 0) { dx = -dx; dy = -dy; x = xb; y = yb; }
    if (dy < 0) { dy = -dy; sy = -1; }
    const vert = dy > dx;
    const major = vert ? dy : dx, minor = vert ? dx : dy;
    let err = major - 2 * minor;
    for (let i = 0; i <= major; i++) {
      m[y * w + x] = 1;
      const step = err < 0;
      err += -2 * minor + (step ? 2 * major : 0);
      if (vert) { y += sy; if (step) x += sx; } else { x += sx; if (step) y += sy; }
    }
  }
  g.fillPolygon = function (m, w, h, pts) {
    const n = pts.length;
    if (!n) return;
    const edges = [];
    let p0x = pts[n - 1][0], p0y = pts[n - 1][1];
    for (let i = 0; i < n; i++) {
      const p1x = pts[i][0], p1y = pts[i][1];
      drawLine(m, w, h, p0x, p0y, p1x, p1y);
      if (p0y !== p1y) {
        const dx = Math.trunc(((p1x - p0x) * ONE) / (p1y - p0y));
        if (p0y < p1y) edges.push({ y0: p0y, y1: p1y, x: p0x * ONE, dx: dx });
        else edges.push({ y0: p1y, y1: p0y, x: p1x * ONE, dx: dx });
      }
      p0x = p1x; p0y = p1y;
    }
    if (edges.length < 2) return;
    let ymin = Infinity, ymax = -Infinity;
    for (const e of edges) { ymin = Math.min(ymin, e.y0); ymax = Math.max(ymax, e.y1); }
    edges.sort((a, b) => a.y0 - b.y0);
    const y0 = Math.max(ymin, 0), y1 = Math.min(ymax, h);
    let active = [], next = 0;
    for (let y = y0; y < y1; y++) {
      active = active.filter((e) => e.y1 > y);
      while (next < edges.length && edges[next].y0 <= y) {
        if (edges[next].y1 > y) active.push(edges[next]);
        next++;
      }
      const xs = active.map((e) => e.x + (y - e.y0) * e.dx).sort((a, b) => a - b);
      for (let i = 0; i + 1 < xs.length; i += 2) {
        let xl = Math.floor((xs[i] + ONE - 1) / ONE), xr = Math.floor(xs[i + 1] / ONE);
        if (xl < w && xr >= 0) {
          if (xl < 0) xl = 0;
          if (xr >= w) xr = w - 1;
          if (xl <= xr) m.fill(1, y * w + xl, y * w + xr + 1);
        }
      }
    }
  };

  /* A 0/1 mask to a canonical run list. */
  g.maskToRuns = function (m) {
    const out = [];
    const n = m.length;
    let i = m.indexOf(1);
    while (i >= 0 && i < n) {
      let j = i;
      while (j < n && m[j]) j++;
      out.push(i, j - i);
      i = m.indexOf(1, j);
    }
    return Uint32Array.from(out);
  };

  /* The dataset's label JSON ({"annotations":[{"label", "points"}]}) drawn
   * at w x h: class name -> run list, every polygon of a class filled into
   * the class's mask (one w x h buffer, reused class after class). */
  g.labelRuns = function (json, w, h, name) {
    let doc;
    try { doc = JSON.parse(json); } catch (e) { throw new Error(name + ": not JSON: " + e.message); }
    if (!doc || !Array.isArray(doc.annotations)) throw new Error(name + ": no 'annotations' array");
    const byClass = new Map();
    doc.annotations.forEach((an, i) => {
      if (!an || typeof an.label !== "string" || !Array.isArray(an.points) ||
          !an.points.every((p) => Array.isArray(p) && p.length >= 2 && isFinite(p[0]) && isFinite(p[1])))
        throw new Error(name + ": annotations[" + i + "] needs 'label' and 'points' [[x, y], ...]");
      if (!byClass.has(an.label)) byClass.set(an.label, []);
      byClass.get(an.label).push(an.points.map((p) => [Math.trunc(p[0]), Math.trunc(p[1])]));
    });
    const out = new Map(), m = new Uint8Array(w * h);
    for (const [cls, polys] of byClass) {
      for (const pts of polys) g.fillPolygon(m, w, h, pts);
      const r = g.maskToRuns(m);
      out.set(cls, r);
      for (let i = 0; i < r.length; i += 2) m.fill(0, r[i], r[i] + r[i + 1]);
    }
    return out;
  };
}

/* The Web Worker: keeps each CSV's text and index, answers with run lists
 * for one image at a time (transferred, not copied) and with whole-CSV Dice
 * tables. */
function ossegWorker(self) {
  const csvs = new Map();
  const C = {};
  ossegCore(C);
  self.onmessage = async (ev) => {
    const q = ev.data;
    try {
      if (q.op === "load") {
        const text = await q.file.text();
        const t0 = performance.now();
        const ix = C.indexCsv(text, q.file.name);
        csvs.set(q.id, { text: text, ix: ix, name: q.file.name });
        const classes = [];
        const seen = new Set();
        for (const r of ix.rows) if (!seen.has(r.cls)) { seen.add(r.cls); classes.push(r.cls); }
        self.postMessage({ id: q.id, reply: q.reply, images: Array.from(ix.images.keys()),
                           classes: classes, rows: ix.rows.length, indexMs: performance.now() - t0 });
      } else if (q.op === "masks") {
        const c = csvs.get(q.id);
        const runs = {}, transfer = [];
        for (const ri of c.ix.images.get(q.image) || []) {
          const r = c.ix.rows[ri];
          const v = C.parseRle(c.text, r.a, r.b, q.npixels, c.name + ":" + r.line);
          runs[r.cls] = v;
          transfer.push(v.buffer);
        }
        self.postMessage({ reply: q.reply, runs: runs }, transfer);
      } else if (q.op === "label") {
        const runs = {}, transfer = [];
        for (const [cls, v] of C.labelRuns(await q.file.text(), q.w, q.h, q.file.name)) {
          runs[cls] = v;
          transfer.push(v.buffer);
        }
        self.postMessage({ reply: q.reply, runs: runs }, transfer);
      } else if (q.op === "dice") {
        const g = csvs.get(q.gt), p = csvs.get(q.pred);
        const t = C.diceTable(g.text, g.ix, p.text, p.ix, q.npixels, g.name, p.name);
        self.postMessage({ reply: q.reply, table: t });
      } else if (q.op === "drop") {
        csvs.delete(q.id);
      }
    } catch (e) {
      self.postMessage({ reply: q.reply, error: String(e.message || e) });
    }
  };
}
