// Inference worker: owns the wasm Session (WebGPU or wasm CPU), every explained result's
// evidence and the open slide, so the page never freezes and never loads WebAssembly itself.
// Protocol: every request is {id, type, ...}; every reply is {id, ok, result} or
// {id, ok: false, message, fatal}. `fatal` means the wasm instance crashed (for example a lost
// GPU device): the page replaces this worker with a CPU one.

import init, { Session, SlideJob, page_facts } from '../pkg/celnet.js';
import { bench, jpeg2000Bench } from './worker-bench.js';

let session = null;
let wasm = null; // the instance's exports (its linear memory, for the bench page)
let queue = Promise.resolve();
const explained = new Map(); // handle number -> Explained (evidence kept in wasm memory)
let nextHandle = 1;
let slide = null; // the open SlideJob: a large image or slide file, read from its File

// The default weights, fetched beside the wasm while it compiles (they are not inside it).
const defaultWeights = fetch(new URL('../weights/celnet-pcam.bpk', import.meta.url))
  .then((response) => {
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.arrayBuffer();
  })
  .then((buffer) => new Uint8Array(buffer))
  .catch((e) => {
    throw new Error(`could not load the default weights (weights/celnet-pcam.bpk): ${e.message}`);
  });
defaultWeights.catch(() => {}); // reported when start() awaits it

// A module of one function using f32x4.relaxed_madd: it validates only where the browser has
// relaxed SIMD.
const V128_ZERO = [0xfd, 0x0c, ...new Array(16).fill(0)];
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // one type: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x3d, 0x01, 0x3b, 0x00, // its code, no locals:
  ...V128_ZERO, ...V128_ZERO, ...V128_ZERO, 0xfd, 0x85, 0x02, 0x0b, // relaxed_madd(0, 0, 0), end
]);

// Which build of the crate to run: the one with relaxed SIMD (its CPU kernels use fused
// multiply-add) where the browser validates it, else the one for every browser with SIMD.
// `?simd=simd128` on the page (passed on to this worker) forces the second.
function chooseBuild() {
  const forced = new URL(self.location.href).searchParams.get('simd');
  if (forced === 'simd128') return { simd: 'simd128', file: 'celnet_bg.wasm' };
  if (WebAssembly.validate(RELAXED_SIMD_PROBE)) {
    return { simd: 'relaxed-simd', file: 'celnet_relaxed_bg.wasm' };
  }
  return { simd: 'simd128', file: 'celnet_bg.wasm' };
}
const build = chooseBuild();

async function load() {
  wasm ??= await init({ module_or_path: new URL(`../pkg/${build.file}`, import.meta.url) });
}

// Picks a backend. `requested` is 'webgpu', 'cpu' or 'auto'. Automatic choice takes WebGPU only
// on a hardware adapter: a software fallback adapter (SwiftShader) is ~20x slower than wasm CPU.
async function chooseBackend(requested) {
  if (requested === 'cpu') return { backend: 'cpu', reason: 'CPU requested' };
  if (!('gpu' in navigator)) return { backend: 'cpu', reason: 'this browser has no WebGPU' };
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { backend: 'cpu', reason: `WebGPU adapter request failed: ${e.message}` };
  }
  if (!adapter) return { backend: 'cpu', reason: 'no WebGPU adapter' };
  const info = adapter.info || {};
  const software = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
  if (software && requested !== 'webgpu') {
    return { backend: 'cpu', reason: `the WebGPU adapter (${name || 'software'}) is a software fallback; CPU is faster` };
  }
  return { backend: 'webgpu', adapter: name || 'unknown adapter', reason: '' };
}

// A grey glimpse: compiles kernels and shaders before the first real image.
function warmupImage() {
  // A mid-grey 24-bit BMP the size of the facts' window, built by hand so no file is fetched.
  const side = page_facts().window_side;
  const row = side * 3, size = 54 + row * side;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  bytes.set([0x42, 0x4d]);
  view.setUint32(2, size, true);
  view.setUint32(10, 54, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, side, true);
  view.setInt32(22, side, true);
  view.setUint16(26, 1, true);
  view.setUint16(28, 24, true);
  view.setUint32(34, row * side, true);
  bytes.fill(170, 54);
  return bytes;
}

// Loads the wasm module and answers with what the page shows that the crate decides.
async function facts() {
  await load();
  return page_facts();
}

async function start({ backend: requested }) {
  await load();
  const choice = await chooseBackend(requested);
  const weights = await defaultWeights;
  let reason = choice.reason;
  try {
    session = await Session.create(choice.backend, weights);
  } catch (e) {
    if (choice.backend !== 'webgpu') throw e;
    reason = `WebGPU failed to start (${e.message}); using CPU`;
    session = await Session.create('cpu', weights);
  }
  const t0 = performance.now();
  (await session.explain(warmupImage())).free();
  return {
    backend: session.backend,
    reason,
    adapter: session.backend === 'webgpu' ? choice.adapter : '',
    weights: session.weights,
    simd: build.simd,
    warmup_ms: performance.now() - t0,
  };
}

// Keeps an explained result's evidence and returns {handle, summary, input, rendered}.
function keep(result, params) {
  const handle = nextHandle++;
  explained.set(handle, result);
  return { handle, summary: result.summary(), input: result.input_rgba(), rendered: result.render(params) };
}

// A rendering of a kept result: {params, regions, timings_ms, celm, layers}.
function render({ handle, params }) {
  const result = explained.get(handle);
  if (!result) throw new Error('this result is no longer in the engine; explain the image again');
  return result.render(params);
}

function release({ handle }) {
  const result = explained.get(handle);
  if (result) result.free();
  explained.delete(handle);
  return {};
}

// Opens a dropped file, or the files of one DICOM slide (`files`). Glimpses (the crate decides which) are closed again: the page explains
// their bytes. Larger images and slides stay open here: {glimpse, info}.
function slideOpen({ file, files }) {
  const job = files ? SlideJob.open_files(files) : SlideJob.open(file);
  const info = job.info();
  if (info.glimpse) {
    job.free();
    return { glimpse: true, info };
  }
  if (slide) slide.free();
  slide = job;
  return { glimpse: false, info };
}

function openSlide() {
  if (!slide) throw new Error('no image is open in the slide view');
  return slide;
}

// Scores tile `index` of the open slide here: {windows, pixels, probabilities} (`pixels`: the
// tile's share of the plan's work).
async function slideScore({ index }) {
  const job = openSlide();
  const windows = await job.score_tile(session, index);
  return { windows, pixels: job.tile_pixels(index), probabilities: job.probabilities() };
}

// Keeps logits another worker computed for tile `index`: {windows, pixels, probabilities}.
function slideAccept({ index, logits }) {
  const job = openSlide();
  const windows = job.accept(index, new Float32Array(logits));
  return { windows, pixels: job.tile_pixels(index), probabilities: job.probabilities() };
}

// CELM of the window around (x, y) of the open slide, kept like `explain`'s results.
async function slideExplain({ x, y, params }) {
  const window = openSlide().window(x, y);
  const bounds = window.bounds();
  const result = await session.explain_window(window);
  window.free();
  return { bounds, ...keep(result, params) };
}

function slideClose() {
  if (slide) slide.free();
  slide = null;
  return {};
}

// The wasm instance's linear memory, for the page's start-up measurement.
function memory() {
  return { wasm_memory_bytes: wasm ? wasm.memory.buffer.byteLength : 0 };
}

// Every request the worker answers. `session`: needs a started engine. `now`: skips the queue,
// because it is quick and touches no session state (re-fusing a kept result for a slider move,
// a viewer tile of the open slide), so sliders and the viewer stay live while inference waits.
const requests = {
  facts: { run: facts },
  start: { run: start },
  memory: { run: memory },
  render: { run: render, now: true },
  release: { run: release, now: true },
  explain: { session: true, run: async ({ bytes, params }) => keep(await session.explain(new Uint8Array(bytes)), params) },
  predict: { session: true, run: ({ bytes }) => session.predict(new Uint8Array(bytes)) },
  weights: {
    session: true,
    run: ({ bytes, name }) => {
      session.load_weights(new Uint8Array(bytes), name);
      return { weights: session.weights };
    },
  },
  resetWeights: {
    session: true,
    run: () => {
      session.reset_weights();
      return { weights: session.weights };
    },
  },
  tta: {
    session: true,
    run: ({ on }) => {
      session.set_tta(on);
      return { tta: on };
    },
  },
  bench: { session: true, run: (request) => bench(session, wasm, request) },
  jpeg2000Bench: { session: true, run: jpeg2000Bench },
  slideOpen: { run: slideOpen },
  slideView: { now: true, run: ({ x0, y0, x1, y1, width, height }) => ({ pixels: openSlide().view(x0, y0, x1, y1, width, height) }) },
  // Pixel size, model scale, tissue, tiles: {plan, tissue}.
  slidePrepare: {
    session: true,
    run: ({ mpp, stride }) => {
      const job = openSlide();
      return { plan: job.prepare(session, mpp ?? undefined, stride), tissue: job.tissue() };
    },
  },
  // The crop tile `index` scores, for a pool worker: {rgb, width, height, kept, context}.
  slideCrop: { run: ({ index }) => openSlide().crop(index) },
  slideAccept: { run: slideAccept },
  slideScore: { session: true, run: slideScore },
  slideExplain: { session: true, run: slideExplain },
  // The top windows explained and every export: {summary, geojson, csv, heatmap_png}.
  slideFinish: { session: true, run: ({ topK }) => openSlide().finish(session, topK) },
  slideClose: { run: slideClose },
  // The window logits of a crop made by another worker's slide: {logits}.
  windowLogits: {
    session: true,
    run: async ({ rgb, width, height, stride, tta, kept, context }) => ({
      logits: await session.window_logits(
        new Uint8Array(rgb), width, height, stride, tta, new Uint8Array(kept), context),
    }),
  },
};

// Every typed array in a result: their buffers go back to the page without a copy.
function transferables(value, found = new Set(), depth = 0) {
  if (ArrayBuffer.isView(value)) found.add(value.buffer);
  else if (value && typeof value === 'object' && depth < 4) {
    for (const v of Object.values(value)) transferables(v, found, depth + 1);
  }
  return [...found];
}

async function handle(data) {
  try {
    const request = requests[data.type];
    if (!request) throw new Error(`unknown request ${data.type}`);
    if (request.session && !session) throw new Error('the engine has not started');
    const result = await request.run(data);
    self.postMessage({ id: data.id, ok: true, result }, transferables(result));
  } catch (e) {
    const fatal = e instanceof WebAssembly.RuntimeError;
    self.postMessage({ id: data.id, ok: false, message: String(e && e.message || e), fatal });
  }
}

self.onmessage = ({ data }) => {
  if (requests[data.type] && requests[data.type].now) {
    handle(data);
    return;
  }
  queue = queue.then(() => handle(data));
};
