/* osseg viewer: the page. A classic script (see core.js for why); all
 * state lives in one object, exposed as window.ossegViewer for the tests.
 * Nothing here makes a network request: files come from the file input or
 * drag and drop, and are read with File.text() / createImageBitmap. */
"use strict";

(function () {
  const C = {};
  ossegCore(C);
  window.OSSEG = C;

  const GROUPS = {
    fingers: C.CLASSES.slice(0, 19),
    carpals: ["Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum", "Pisiform"],
    "radius/ulna": ["Radius", "Ulna"],
  };
  const MODES = ["label", "pred", "diff", "ab"];
  const MODE_NAMES = { label: "image / label", pred: "image / prediction",
                       diff: "prediction vs label", ab: "model A vs model B" };
  /* diff: true positive, false positive, false negative; ab: A only, B only, both. */
  const DIFF_RGB = { tp: [0, 200, 0], fp: [255, 0, 0], fn: [0, 96, 255] }; // osseg overlay --mode diff's
  const AB_RGB = { a: [255, 140, 0], b: [0, 200, 255], both: [235, 235, 235] };

  /* ------------------------------------------------------------ worker --- */
  const workerSrc = "\"use strict\";\n" + ossegCore.toString() + "\n" + ossegWorker.toString() +
                    "\nossegWorker(self);\n";
  const worker = new Worker(URL.createObjectURL(new Blob([workerSrc], { type: "text/javascript" })));
  const pending = new Map();
  let nextReply = 1;
  worker.onmessage = (ev) => {
    const m = ev.data, p = pending.get(m.reply);
    if (!p) return;
    pending.delete(m.reply);
    if (m.error) p.reject(new Error(m.error)); else p.resolve(m);
  };
  function ask(msg) {
    return new Promise((resolve, reject) => {
      msg.reply = nextReply++;
      pending.set(msg.reply, { resolve, reject });
      worker.postMessage(msg);
    });
  }

  /* ------------------------------------------------------------- state --- */
  const S = {
    pngs: new Map(),   /* image name -> File */
    labels: new Map(), /* image name (X.png for X.json) -> File */
    csvs: [],          /* {id, name, images: Set, classes, rows} */
    images: [],        /* sorted names */
    index: -1,
    gt: "",            /* "" none, "labels", or csv id */
    predA: "", predB: "",
    mode: "label",
    on: new Map(C.CLASSES.map((c) => [c, true])),
    opacity: new Map(C.CLASSES.map((c) => [c, 0.5])),
    cur: null,         /* {name, bitmap, w, h, gt: Map, a: Map, b: Map} */
    imageDice: [],     /* [{cls, dice}] */
    csvDice: null,     /* worker diceTable */
    sort: { image: ["cls", 1], csv: ["cls", 1] },
    view: { scale: 1, tx: 0, ty: 0 },
    lastOpenMs: 0,
    busy: 0,
    errors: [],
  };
  let nextCsvId = 1, showToken = 0;

  const $ = (id) => document.getElementById(id);
  const canvas = $("view"), ctx = canvas.getContext("2d");
  const overlay = document.createElement("canvas");
  const octx = overlay.getContext("2d");

  function classIndex(cls) {
    const i = C.CLASSES.indexOf(cls);
    return i >= 0 ? i : 0;
  }
  function rgba32(rgb, alpha) {
    return ((Math.round(alpha * 255) << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]) >>> 0;
  }
  function status(text) { $("status").textContent = text; }
  function error(text) {
    S.errors.push(text);
    const li = document.createElement("li");
    li.textContent = text;
    $("errors").appendChild(li);
  }

  /* ------------------------------------------------------------- files --- */
  async function openFiles(files) {
    const t0 = performance.now();
    S.busy++;
    status("opening " + files.length + " file(s)…");
    try {
      const loads = [];
      for (const f of files) {
        const lower = f.name.toLowerCase();
        if (lower.endsWith(".png")) S.pngs.set(f.name, f);
        else if (lower.endsWith(".json")) {
          /* Label JSONs have an "annotations" key; other JSONs (osseg dice
           * --json's tables in out/demo) are skipped. Only the key is looked
           * for here; the file is parsed when its image is shown. */
          if (/"annotations"\s*:/.test(await f.text())) S.labels.set(f.name.replace(/\.json$/i, ".png"), f);
          else error(f.name + ": not a label JSON (no \"annotations\"); ignored");
        } else if (lower.endsWith(".csv")) loads.push(openCsv(f));
        else error(f.name + ": not a .png, .json or .csv file; ignored");
      }
      /* Roles, in the order the files were given (loads finish in any
       * order): a name that says ground truth is the label, the others
       * predictions A and B. */
      for (const e of await Promise.all(loads)) {
        if (!e) continue;
        S.csvs.push(e);
        if (!S.gt && /(^|[^a-z])(gt|truth|ground|labels?)([^a-z]|$)/i.test(e.name)) S.gt = e.id;
        else if (!S.predA) S.predA = e.id;
        else if (!S.predB) S.predB = e.id;
      }
      if (!S.gt && S.labels.size) S.gt = "labels";
      rebuildImages();
      refreshSelects();
      if (S.index < 0 && S.images.length) S.index = 0;
      await show();
    } catch (e) {
      error(String(e.message || e));
    } finally {
      S.busy--;
    }
    S.lastOpenMs = performance.now() - t0;
    status("opened " + files.length + " file(s) in " + S.lastOpenMs.toFixed(0) + " ms");
    requestCsvDice();
  }

  async function openCsv(file) {
    const id = String(nextCsvId++);
    try {
      const m = await ask({ op: "load", id: id, file: file });
      return { id: id, name: file.name, images: new Set(m.images), classes: m.classes, rows: m.rows };
    } catch (e) {
      error(String(e.message || e));
      return null;
    }
  }

  function rebuildImages() {
    const set = new Set([...S.pngs.keys(), ...S.labels.keys()]);
    for (const c of S.csvs) for (const i of c.images) set.add(i);
    const cur = S.images[S.index];
    S.images = Array.from(set).sort();
    S.index = cur ? S.images.indexOf(cur) : S.index;
    const sel = $("image");
    sel.textContent = "";
    for (const name of S.images) sel.add(new Option(name, name));
    if (S.index >= 0) sel.value = S.images[S.index];
  }

  function refreshSelects() {
    const fill = (sel, value, extra) => {
      sel.textContent = "";
      sel.add(new Option("(none)", ""));
      for (const [v, t] of extra) sel.add(new Option(t, v));
      for (const c of S.csvs) sel.add(new Option(c.name, c.id));
      sel.value = value;
    };
    fill($("gt"), S.gt, S.labels.size ? [["labels", "label JSONs (" + S.labels.size + ")"]] : []);
    fill($("predA"), S.predA, []);
    fill($("predB"), S.predB, []);
    $("mode").value = S.mode;
  }

  function csvById(id) { return S.csvs.find((c) => c.id === id); }

  /* ------------------------------------------------------- shown image --- */
  async function masksOf(src, name, w, h) {
    if (!src) return new Map();
    if (src === "labels") {
      const f = S.labels.get(name);
      if (!f) return new Map();
      const m = await ask({ op: "label", file: f, w: w, h: h });
      return new Map(Object.entries(m.runs));
    }
    const c = csvById(src);
    if (!c || !c.images.has(name)) return new Map();
    const m = await ask({ op: "masks", id: src, image: name, npixels: w * h });
    return new Map(Object.entries(m.runs));
  }

  async function show() {
    const token = ++showToken;
    const name = S.images[S.index];
    if (!name) { S.cur = null; draw(); return; }
    $("image").value = name;
    S.busy++;
    try {
      let bitmap = null, w = +$("width").value || 2048, h = +$("height").value || 2048;
      const f = S.pngs.get(name);
      if (f) {
        bitmap = await createImageBitmap(f);
        w = bitmap.width;
        h = bitmap.height;
      }
      const [gt, a, b] = await Promise.all([masksOf(S.gt, name, w, h), masksOf(S.predA, name, w, h),
                                            masksOf(S.predB, name, w, h)]);
      if (token !== showToken) { if (bitmap) bitmap.close(); return; }
      const resized = !S.cur || S.cur.w !== w || S.cur.h !== h;
      if (S.cur && S.cur.bitmap) S.cur.bitmap.close();
      S.cur = { name: name, bitmap: bitmap, w: w, h: h, gt: gt, a: a, b: b };
      if (resized) fit();
      computeImageDice();
      paint();
    } catch (e) {
      error(name + ": " + (e.message || e));
    } finally {
      S.busy--;
    }
  }

  /* Per-class Dice of the shown image, prediction A against the GT: the GT's
   * classes for this image (every class for label JSONs), a class missing
   * from the prediction scored as an empty mask, as osseg dice does. */
  function computeImageDice() {
    S.imageDice = [];
    const cur = S.cur;
    if (!cur || !S.gt || !S.predA) return renderDice();
    const empty = new Uint32Array(0);
    const classes = S.gt === "labels" ? C.CLASSES : Array.from(cur.gt.keys());
    if (S.gt === "labels" ? !S.labels.has(cur.name) : !csvById(S.gt).images.has(cur.name)) return renderDice();
    for (const cls of classes) {
      const d = C.diceRuns(cur.a.get(cls) || empty, cur.gt.get(cls) || empty);
      S.imageDice.push({ cls: cls, dice: d });
    }
    renderDice();
  }

  async function requestCsvDice() {
    S.csvDice = null;
    renderDice();
    const gt = csvById(S.gt), p = csvById(S.predA);
    if (!gt || !p) return;
    const key = gt.id + "/" + p.id;
    S.csvDiceKey = key;
    try {
      const t0 = performance.now();
      const m = await ask({ op: "dice", gt: gt.id, pred: p.id, npixels: 0 });
      if (S.csvDiceKey !== key) return;
      S.csvDice = m.table;
      S.csvDiceMs = performance.now() - t0;
      renderDice();
    } catch (e) {
      error(String(e.message || e));
    }
  }

  /* ------------------------------------------------------------ overlay --- */
  /* Paints the masks of the enabled classes into the overlay canvas at full
   * resolution, one Uint32 fill per run. */
  function paint() {
    const cur = S.cur;
    if (!cur) return draw();
    const { w, h } = cur;
    if (overlay.width !== w || overlay.height !== h) {
      overlay.width = w;
      overlay.height = h;
    }
    const img = octx.createImageData(w, h);
    const px = new Uint32Array(img.data.buffer);
    const order = C.CLASSES.concat([...new Set([...cur.gt.keys(), ...cur.a.keys(), ...cur.b.keys()])]
      .filter((c) => !C.CLASSES.includes(c)));
    const fillRuns = (runs, col) => {
      for (let i = 0; i < runs.length; i += 2) px.fill(col, runs[i], runs[i] + runs[i + 1]);
    };
    let code = null;
    const two = (x, y, cols) => { /* cols[code]: 1 x only, 2 y only, 3 both */
      if (!code) code = new Uint8Array(w * h);
      for (let i = 0; i < x.length; i += 2) code.fill(1, x[i], x[i] + x[i + 1]);
      for (let i = 0; i < y.length; i += 2)
        for (let p = y[i], e = y[i] + y[i + 1]; p < e; p++) code[p] |= 2;
      for (const r of [x, y])
        for (let i = 0; i < r.length; i += 2)
          for (let p = r[i], e = r[i] + r[i + 1]; p < e; p++)
            if (code[p]) { px[p] = cols[code[p]]; code[p] = 0; }
    };
    const empty = new Uint32Array(0);
    for (const cls of order) {
      if (S.on.get(cls) === false) continue;
      const alpha = S.opacity.has(cls) ? S.opacity.get(cls) : 0.5;
      const g = cur.gt.get(cls) || empty, a = cur.a.get(cls) || empty, b = cur.b.get(cls) || empty;
      const col = rgba32(C.PALETTE[classIndex(cls) % 29], alpha);
      if (S.mode === "label") fillRuns(g, col);
      else if (S.mode === "pred") fillRuns(a, col);
      else if (S.mode === "diff")
        two(g, a, [0, rgba32(DIFF_RGB.fn, alpha), rgba32(DIFF_RGB.fp, alpha), rgba32(DIFF_RGB.tp, alpha)]);
      else two(a, b, [0, rgba32(AB_RGB.a, alpha), rgba32(AB_RGB.b, alpha), rgba32(AB_RGB.both, alpha)]);
    }
    octx.putImageData(img, 0, 0);
    draw();
  }

  /* ------------------------------------------------------ view, zoom ---- */
  function resizeCanvas() {
    if (S.fixedSize) {
      [canvas.width, canvas.height] = S.fixedSize;
      return;
    }
    const r = canvas.parentElement.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(r.width * dpr));
    canvas.height = Math.max(1, Math.round(r.height * dpr));
  }
  function fit() {
    resizeCanvas();
    const cur = S.cur;
    if (!cur) return;
    const s = Math.min(canvas.width / cur.w, canvas.height / cur.h);
    S.view = { scale: s, tx: (canvas.width - cur.w * s) / 2, ty: (canvas.height - cur.h * s) / 2 };
  }
  function zoomAt(factor, cx, cy) {
    const v = S.view, cur = S.cur;
    if (!cur) return;
    const fitScale = Math.min(canvas.width / cur.w, canvas.height / cur.h);
    const s = Math.min(32, Math.max(fitScale / 4, v.scale * factor));
    v.tx = cx - ((cx - v.tx) * s) / v.scale;
    v.ty = cy - ((cy - v.ty) * s) / v.scale;
    v.scale = s;
    draw();
  }
  function draw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const cur = S.cur;
    $("zoom").textContent = cur ? Math.round(S.view.scale * 100) + "%" : "";
    $("modeName").textContent = MODE_NAMES[S.mode];
    if (!cur) return;
    const v = S.view;
    ctx.setTransform(v.scale, 0, 0, v.scale, v.tx, v.ty);
    /* Pixels stay square when zoomed in, to see single-pixel borders. */
    ctx.imageSmoothingEnabled = v.scale < 1;
    if (cur.bitmap) ctx.drawImage(cur.bitmap, 0, 0);
    else {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, cur.w, cur.h);
    }
    ctx.drawImage(overlay, 0, 0);
    $("title").textContent = cur.name + " (" + (S.index + 1) + "/" + S.images.length + ", " +
                             cur.w + "x" + cur.h + ")";
  }

  /* ------------------------------------------------------------ classes --- */
  function buildClassList() {
    const ul = $("classes");
    ul.textContent = "";
    C.CLASSES.forEach((cls, i) => {
      const li = document.createElement("li");
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.checked = S.on.get(cls);
      cb.dataset.cls = cls;
      cb.addEventListener("change", () => { S.on.set(cls, cb.checked); paint(); });
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = "rgb(" + C.PALETTE[i].join(",") + ")";
      const label = document.createElement("label");
      label.append(cb, sw, " " + cls);
      const op = document.createElement("input");
      op.type = "range";
      op.min = 0; op.max = 1; op.step = 0.05;
      op.value = S.opacity.get(cls);
      op.dataset.opacity = cls;
      op.title = "opacity of " + cls;
      op.addEventListener("input", () => { S.opacity.set(cls, +op.value); paint(); });
      li.append(label, op);
      ul.appendChild(li);
    });
  }
  function syncClassList() {
    for (const cb of document.querySelectorAll("#classes input[type=checkbox]")) cb.checked = S.on.get(cb.dataset.cls);
    for (const op of document.querySelectorAll("#classes input[type=range]")) op.value = S.opacity.get(op.dataset.opacity);
  }
  /* Toggles a group: all on unless all already are. */
  function toggleGroup(names) {
    const allOn = names.every((c) => S.on.get(c));
    for (const c of names) S.on.set(c, !allOn);
    syncClassList();
    paint();
  }

  /* --------------------------------------------------------- Dice table --- */
  function sortRows(rows, key) {
    const [col, dir] = S.sort[key];
    const order = (r) => (C.CLASSES.includes(r.cls) ? C.CLASSES.indexOf(r.cls) : 1000);
    return rows.slice().sort((x, y) =>
      dir * (col === "dice" ? x.dice - y.dice : order(x) - order(y) || (x.cls < y.cls ? -1 : x.cls > y.cls ? 1 : 0)));
  }
  function table(id, rows, key, mean, onClass) {
    const t = $(id);
    t.textContent = "";
    const head = t.createTHead().insertRow();
    for (const [col, text] of [["cls", "class"], ["dice", "Dice"]]) {
      const th = document.createElement("th");
      const [c, d] = S.sort[key];
      th.textContent = text + (c === col ? (d > 0 ? " ▲" : " ▼") : "");
      th.dataset.sort = col;
      th.addEventListener("click", () => {
        S.sort[key] = [col, c === col ? -d : 1];
        renderDice();
      });
      head.appendChild(th);
    }
    const body = t.createTBody();
    for (const r of sortRows(rows, key)) {
      const tr = body.insertRow();
      tr.dataset.cls = r.cls;
      tr.dataset.dice = C.formatG10(r.dice);
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = "rgb(" + C.PALETTE[classIndex(r.cls) % 29].join(",") + ")";
      const c0 = tr.insertCell();
      c0.append(sw, " " + r.cls);
      const c1 = tr.insertCell();
      c1.textContent = r.dice.toFixed(4);
      c1.title = tr.dataset.dice;
      if (onClass) {
        tr.classList.add("clickable");
        tr.addEventListener("click", () => onClass(r.cls));
      }
    }
    if (rows.length) {
      const tf = t.createTFoot().insertRow();
      tf.dataset.cls = "mean";
      tf.dataset.dice = C.formatG10(mean);
      tf.insertCell().textContent = "mean";
      const c = tf.insertCell();
      c.textContent = mean.toFixed(4);
      c.title = tf.dataset.dice;
    }
  }
  function renderDice() {
    const rows = S.imageDice;
    let mean = 0;
    for (const r of rows) mean += r.dice;
    mean /= rows.length || 1;
    table("diceImage", rows, "image", mean, null);
    const t = S.csvDice;
    $("diceCsvNote").textContent = t
      ? t.images + " images" + (t.missing ? ", " + t.missing + " GT rows missing from the prediction (scored empty)" : "")
      : S.gt && S.predA && csvById(S.gt) ? "computing…" : "needs a GT CSV and a prediction CSV";
    table("diceCsv", t ? t.classes.map((c) => ({ cls: c, dice: t.perClass[c] })) : [], "csv", t ? t.mean : 0,
          showWorst);
    if (!t) $("worst").textContent = "";
  }
  function showWorst(cls) {
    const t = S.csvDice, ul = $("worst");
    ul.textContent = "";
    const h = document.createElement("li");
    h.className = "head";
    h.textContent = "worst images for " + cls + ":";
    ul.appendChild(h);
    for (const [image, d] of t.worst[cls]) {
      const li = document.createElement("li");
      const a = document.createElement("button");
      a.textContent = image + "  " + d.toFixed(4);
      a.dataset.image = image;
      a.addEventListener("click", () => goTo(image));
      li.appendChild(a);
      ul.appendChild(li);
    }
  }
  function goTo(image) {
    const i = S.images.indexOf(image);
    if (i < 0) return Promise.resolve();
    S.index = i;
    return show();
  }

  /* ------------------------------------------------------------- events --- */
  function step(d) {
    if (!S.images.length) return Promise.resolve();
    S.index = (S.index + d + S.images.length) % S.images.length;
    return show();
  }
  function setMode(m) {
    S.mode = m;
    $("mode").value = m;
    paint();
  }

  $("files").addEventListener("change", (e) => { openFiles(Array.from(e.target.files)); e.target.value = ""; });
  /* A folder: the PNGs, JSONs and CSVs directly in it (not in subfolders,
   * such as out/demo/overlays/; other files are skipped silently). */
  $("folder").addEventListener("change", (e) => {
    openFiles(Array.from(e.target.files).filter((f) =>
      /\.(png|json|csv)$/i.test(f.name) && f.webkitRelativePath.split("/").length === 2));
    e.target.value = "";
  });
  const drop = $("viewport");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    openFiles(Array.from(e.dataTransfer.files));
  });
  $("image").addEventListener("change", (e) => goTo(e.target.value));
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("mode").addEventListener("change", (e) => setMode(e.target.value));
  for (const [id, key] of [["gt", "gt"], ["predA", "predA"], ["predB", "predB"]])
    $(id).addEventListener("change", (e) => { S[key] = e.target.value; show(); requestCsvDice(); });
  for (const id of ["width", "height"]) $(id).addEventListener("change", () => show());
  $("zoomIn").addEventListener("click", () => zoomAt(1.5, canvas.width / 2, canvas.height / 2));
  $("zoomOut").addEventListener("click", () => zoomAt(1 / 1.5, canvas.width / 2, canvas.height / 2));
  $("fit").addEventListener("click", () => { fit(); draw(); });
  $("allOpacity").addEventListener("input", (e) => {
    for (const c of C.CLASSES) S.opacity.set(c, +e.target.value);
    syncClassList();
    paint();
  });
  for (const b of document.querySelectorAll("[data-group]"))
    b.addEventListener("click", () => toggleGroup(b.dataset.group === "all" ? C.CLASSES : GROUPS[b.dataset.group]));

  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect(), dpr = canvas.width / r.width;
    zoomAt(Math.pow(1.0015, -e.deltaY), (e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr);
  }, { passive: false });
  let dragFrom = null;
  canvas.addEventListener("pointerdown", (e) => {
    dragFrom = [e.clientX, e.clientY];
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!dragFrom) return;
    const r = canvas.getBoundingClientRect(), dpr = canvas.width / r.width;
    S.view.tx += (e.clientX - dragFrom[0]) * dpr;
    S.view.ty += (e.clientY - dragFrom[1]) * dpr;
    dragFrom = [e.clientX, e.clientY];
    draw();
  });
  canvas.addEventListener("pointerup", () => { dragFrom = null; });
  window.addEventListener("resize", () => { fit(); draw(); });
  /* After a choice in a selector, the keys go to the page again. */
  for (const sel of document.querySelectorAll("header select"))
    sel.addEventListener("change", () => sel.blur());

  /* n/p next/previous image, 1 fingers, 2 carpals, 3 radius/ulna, 0 all
   * classes, m next mode, +/- zoom, f fit. */
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || (e.target.tagName === "INPUT" && e.target.type !== "checkbox" &&
        e.target.type !== "range") || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key;
    if (k === "n") step(1);
    else if (k === "p") step(-1);
    else if (k === "m") setMode(MODES[(MODES.indexOf(S.mode) + 1) % MODES.length]);
    else if (k === "+" || k === "=") zoomAt(1.5, canvas.width / 2, canvas.height / 2);
    else if (k === "-") zoomAt(1 / 1.5, canvas.width / 2, canvas.height / 2);
    else if (k === "f") { fit(); draw(); }
    else if (k === "1") toggleGroup(GROUPS.fingers);
    else if (k === "2") toggleGroup(GROUPS.carpals);
    else if (k === "3") toggleGroup(GROUPS["radius/ulna"]);
    else if (k === "0") toggleGroup(C.CLASSES);
    else return;
    e.preventDefault();
  });

  buildClassList();
  resizeCanvas();
  draw();
  renderDice();
  const hint = decodeURIComponent(location.hash.slice(1));
  if (hint) $("hint").textContent = "open: " + hint.split("|").join(", ");

  /* For the tests (tests/viewer/run.mjs) and the console. */
  window.ossegViewer = {
    state: S, overlay: overlay, open: openFiles, show: show, step: step, goTo: goTo, setMode: setMode,
    toggleGroup: toggleGroup, zoomAt: zoomAt, fit: () => { fit(); draw(); }, paint: paint,
    /* A canvas of w x h pixels whatever the layout (the tests' references). */
    fixSize: (w, h) => { S.fixedSize = w ? [w, h] : null; fit(); draw(); },
    idle: async () => { while (S.busy || pending.size) await new Promise((r) => setTimeout(r, 10)); },
  };
})();
