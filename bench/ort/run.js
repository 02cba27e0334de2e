#!/usr/bin/env node
// ONNX Runtime (CPU EP) reference runner for osseg benchmarks and parity checks.
//
//   node run.js MODEL.onnx [--repeat R] [--threads T] [--input X.npy]
//                          [--output Y.npy] [--ref REF.npy] [--warmup W] [--seed S]
//
// Creates one InferenceSession (graphOptimizationLevel 'all', intraOpNumThreads
// T, interOpNumThreads 1, executionMode 'sequential'), feeds either X.npy or a
// seeded random float32 tensor of the model's input shape (values k/255, like
// image/255), runs W warm-up runs (default 1), times R runs (default 5) and
// prints one JSON line:
//   {model, load_ms, median_ms, min_ms, mean_ms, cpu_median_ms, repeat,
//    peak_rss_mb, threads, ort_version, input_shape, output_shape
//    [, max_abs_diff, mask_agreement, ref_max_abs]}
// cpu_median_ms is the process CPU time (user+sys, all threads) per run: on a
// shared machine wall time / threads can be far above cpu time / threads.
// --output writes the (first) output as a float32 .npy; --ref compares it
// with a reference .npy (max |diff|, agreement of the masks logit > 0).
'use strict';

const fs = require('fs');
const path = require('path');

function usage(msg) {
  if (msg) process.stderr.write(`run.js: ${msg}\n`);
  process.stderr.write('usage: node run.js MODEL.onnx [--repeat R] [--threads T] ' +
    '[--input X.npy] [--output Y.npy] [--ref REF.npy] [--warmup W] [--seed S]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { repeat: 5, threads: 2, warmup: 1, seed: 1234 };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${k} needs a value`);
      return argv[++i];
    };
    switch (k) {
      case '--repeat': a.repeat = parseInt(val(), 10); break;
      case '--threads': a.threads = parseInt(val(), 10); break;
      case '--warmup': a.warmup = parseInt(val(), 10); break;
      case '--seed': a.seed = parseInt(val(), 10); break;
      case '--input': a.input = val(); break;
      case '--output': a.output = val(); break;
      case '--ref': a.ref = val(); break;
      case '-h': case '--help': usage(); break;
      default:
        if (k.startsWith('--')) usage(`unknown option ${k}`);
        pos.push(k);
    }
  }
  if (pos.length !== 1) usage('exactly one model path expected');
  a.model = pos[0];
  for (const k of ['repeat', 'threads', 'warmup', 'seed']) {
    if (!Number.isInteger(a[k]) || a[k] < 0) usage(`bad --${k}`);
  }
  if (a.repeat < 1 || a.threads < 1) usage('--repeat and --threads must be >= 1');
  return a;
}

// ---- minimal .npy (float32, C order, little endian) ------------------------

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') {
    throw new Error(`${file}: not an .npy file`);
  }
  const major = buf[6];
  let hlen, off;
  if (major === 1) { hlen = buf.readUInt16LE(8); off = 10; } else { hlen = buf.readUInt32LE(8); off = 12; }
  const header = buf.toString('latin1', off, off + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw new Error(`${file}: bad npy header`);
  if (descr[1] !== '<f4') throw new Error(`${file}: dtype ${descr[1]}, need <f4`);
  if (fortran[1] !== 'False') throw new Error(`${file}: fortran order unsupported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const n = dims.reduce((x, y) => x * y, 1);
  const start = off + hlen;
  if (buf.length - start !== n * 4) throw new Error(`${file}: size mismatch`);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = buf.readFloatLE(start + 4 * i);
  return { dims, data };
}

function writeNpy(file, dims, data) {
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i++) body.writeFloatLE(data[i], 4 * i);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

// ---- helpers ----------------------------------------------------------------

function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function peakRssMb() {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Math.round(parseInt(m[1], 10) / 1024 * 10) / 10 : null;
  } catch (e) {
    return null;
  }
}

function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const r3 = (x) => Math.round(x * 1000) / 1000;

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    process.stderr.write('run.js: onnxruntime-node missing; run ' +
      '`cd bench/ort && ONNXRUNTIME_NODE_INSTALL=skip npm ci`\n');
    process.exit(3);
  }
  const ortVersion = require('onnxruntime-node/package.json').version;

  const opts = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  };
  const t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(args.model, opts);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;

  const inName = session.inputNames[0];
  const outName = session.outputNames[0];
  let dims;
  let data;
  if (args.input) {
    ({ dims, data } = readNpy(args.input));
  } else {
    const meta = (session.inputMetadata || []).find((m) => m.name === inName);
    if (!meta || !meta.shape || meta.shape.some((d) => typeof d !== 'number' || d < 1)) {
      throw new Error(`input ${inName}: no static shape in the model; pass --input`);
    }
    dims = meta.shape.slice();
    const n = dims.reduce((x, y) => x * y, 1);
    data = new Float32Array(n);
    const rnd = mulberry32(args.seed);
    for (let i = 0; i < n; i++) data[i] = Math.floor(rnd() * 256) / 255;
  }
  const feeds = { [inName]: new ort.Tensor('float32', data, dims) };

  let out;
  for (let i = 0; i < args.warmup; i++) out = await session.run(feeds);
  const times = [];
  const cpu = [];
  for (let i = 0; i < args.repeat; i++) {
    const c = process.cpuUsage();
    const s = process.hrtime.bigint();
    out = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - s) / 1e6);
    const d = process.cpuUsage(c);
    cpu.push((d.user + d.system) / 1e3);
  }
  const y = out[outName];
  const res = {
    model: path.basename(args.model),
    load_ms: r3(loadMs),
    median_ms: r3(median(times)),
    min_ms: r3(Math.min(...times)),
    mean_ms: r3(times.reduce((a, b) => a + b, 0) / times.length),
    cpu_median_ms: r3(median(cpu)),
    repeat: args.repeat,
    peak_rss_mb: peakRssMb(),
    threads: args.threads,
    ort_version: ortVersion,
    input_shape: dims,
    output_shape: Array.from(y.dims),
  };
  if (args.output) writeNpy(args.output, Array.from(y.dims), y.data);
  if (args.ref) {
    const ref = readNpy(args.ref);
    if (ref.data.length !== y.data.length) {
      throw new Error(`--ref: ${ref.dims} vs output ${y.dims}`);
    }
    let maxd = 0;
    let maxr = 0;
    let agree = 0;
    for (let i = 0; i < y.data.length; i++) {
      const d = Math.abs(y.data[i] - ref.data[i]);
      if (!(d <= maxd)) maxd = d;            // propagates NaN
      maxr = Math.max(maxr, Math.abs(ref.data[i]));
      if ((y.data[i] > 0) === (ref.data[i] > 0)) agree++;
    }
    res.max_abs_diff = maxd;
    res.ref_max_abs = maxr;
    res.mask_agreement = agree / y.data.length;
  }
  process.stdout.write(JSON.stringify(res) + '\n');
}

main().catch((e) => {
  process.stderr.write(`run.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
