// Inference worker: owns the wasm Session (WebGPU or wasm CPU) and every explained result's
// evidence, so the page never freezes and never loads WebAssembly itself.
// Protocol: every request is {id, type, ...}; every reply is {id, ok, result} or
// {id, ok: false, message, fatal}. `fatal` means the wasm instance crashed (for example a lost
// GPU device): the page replaces this worker with a CPU one.

import init, { Session, SlideJob, page_facts } from '../pkg/celnet.js';

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

// Largest side scored as one glimpse (a result card); anything larger opens in the slide view.
const GLIMPSE_SIDE = 128;

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
  // A 96x96 mid-grey 24-bit BMP, built by hand so no file is fetched.
  const w = 96, h = 96, row = w * 3, size = 54 + row * h;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  bytes.set([0x42, 0x4d]);
  view.setUint32(2, size, true);
  view.setUint32(10, 54, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, w, true);
  view.setInt32(22, h, true);
  view.setUint16(26, 1, true);
  view.setUint16(28, 24, true);
  view.setUint32(34, row * h, true);
  bytes.fill(170, 54);
  return bytes;
}

// Loads the wasm module and answers with what the page shows that the crate decides.
async function facts() {
  if (!wasm) wasm = await init();
  return page_facts();
}

async function start({ backend: requested }) {
  if (!wasm) wasm = await init();
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
    warmup_ms: performance.now() - t0,
  };
}

// A rendering of a kept result: {params, regions, timings_ms, celm, layers}.
function render({ handle, params }) {
  const result = explained.get(handle);
  if (!result) throw new Error('this result is no longer in the engine; explain the image again');
  return result.render(params);
}

// Explains an image, keeps its evidence and returns {handle, summary, input, rendered}.
async function explain({ bytes, params }) {
  const result = await session.explain(new Uint8Array(bytes));
  const handle = nextHandle++;
  explained.set(handle, result);
  return { handle, summary: result.summary(), input: result.input_rgba(), rendered: result.render(params) };
}

// Opens a dropped file. Glimpses are closed again (the page explains their bytes); larger
// images and slides stay open here: {glimpse, info}.
function slideOpen({ file }) {
  const job = SlideJob.open(file);
  const info = job.info();
  if (info.levels.length === 1 && info.width <= GLIMPSE_SIDE && info.height <= GLIMPSE_SIDE) {
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

// A viewer tile: RGBA pixels of a rectangle of the full-resolution image.
function slideView({ x0, y0, x1, y1, width, height }) {
  return { pixels: openSlide().view(x0, y0, x1, y1, width, height) };
}

// Pixel size, model scale, tissue, tiles: {plan, tissue}.
function slidePrepare({ mpp, stride }) {
  const job = openSlide();
  const plan = job.prepare(mpp ?? undefined, stride);
  return { plan, tissue: job.tissue() };
}

// The crop tile `index` scores, for a pool worker: {rgb, width, height}.
function slideCrop({ index }) {
  const job = openSlide();
  const tile = job.tile(index);
  return { rgb: job.crop(index), width: tile.width, height: tile.height };
}

// Keeps logits computed elsewhere: {windows, probabilities}.
function slideAccept({ index, logits }) {
  const job = openSlide();
  const windows = job.accept(index, new Float32Array(logits));
  return { windows, probabilities: job.probabilities() };
}

// Scores tile `index` here: {windows, probabilities}.
async function slideScore({ index, stride }) {
  const { rgb, width, height } = slideCrop({ index });
  const logits = await session.window_logits(rgb, width, height, stride);
  return slideAccept({ index, logits });
}

// The dense window logits of a crop made by another worker's slide: {logits}.
async function windowLogits({ rgb, width, height, stride }) {
  return { logits: await session.window_logits(new Uint8Array(rgb), width, height, stride) };
}

// CELM of the window around (x, y) of the open slide, kept like `explain`'s results.
async function slideExplain({ x, y, params }) {
  const window = openSlide().window(x, y);
  const bounds = window.bounds();
  const result = await session.explain_window(window);
  window.free();
  const handle = nextHandle++;
  explained.set(handle, result);
  return { handle, bounds, summary: result.summary(), input: result.input_rgba(), rendered: result.render(params) };
}

// Explains the top tumour points' windows (as `celnet heatmap --top-k` does) and returns every
// export: {summary, geojson, csv, heatmap_png}.
async function slideFinish({ topK }) {
  const job = openSlide();
  for (const point of job.points().slice(0, topK)) {
    const window = job.window(point.x, point.y);
    const result = await session.explain_window(window);
    window.free();
    job.add_evidence(result, 'top');
    result.free();
  }
  return job.report(session.backend, session.weights);
}

function slideClose() {
  if (slide) slide.free();
  slide = null;
  return {};
}

function release({ handle }) {
  const result = explained.get(handle);
  if (result) result.free();
  explained.delete(handle);
  return {};
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Per-image milliseconds of one forward pass over `count` copies of a glimpse (RGB bytes), and
// the logits of the last pass.
async function batchTimes(rgb, count, runs) {
  const batch = new Uint8Array(rgb.length * count);
  for (let i = 0; i < count; i++) batch.set(rgb, i * rgb.length);
  let logits = await session.logits_batch(batch, 96, 96);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    logits = await session.logits_batch(batch, 96, 96);
    times.push((performance.now() - t0) / count);
  }
  return { times, logits };
}

async function bench({ bytes, runs, batchRuns }) {
  const image = new Uint8Array(bytes);
  const explainOnce = async (x) => (await session.explain(x)).free();
  // Warm up until the engine has optimised the hot functions: V8 first runs WebAssembly from a
  // quick baseline compilation and replaces hot functions with optimised code in the
  // background, which takes about ten glimpses here (the first ones ran 3x slower).
  const t0 = performance.now();
  await session.predict(image);
  const firstPredict = performance.now() - t0;
  for (let i = 0; i < 10; i++) await session.predict(image);
  for (let i = 0; i < 3; i++) await explainOnce(image);
  const memory = () => wasm.memory.buffer.byteLength;
  const memoryBefore = memory();
  const time = async (f) => {
    const t = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await f(image);
      t.push(performance.now() - t0);
    }
    return t;
  };
  const predict = await time((x) => session.predict(x));
  // Test-time augmentation: the eight orientations of the glimpse, scored one after another.
  session.set_tta(true);
  const predictTta = await time((x) => session.predict(x));
  session.set_tta(false);
  const explainTimes = await time(explainOnce);
  // Where an explanation's time goes: the median of each phase.
  const phases = [];
  for (let i = 0; i < runs; i++) phases.push(await session.explain_phases(image));
  const explainPhases = Object.fromEntries(
    Object.keys(phases[0]).map((k) => [k, median(phases.map((p) => p[k]))]),
  );
  // Where a forward pass's time goes: the median of each kind of operation.
  const profiles = [];
  for (let i = 0; i < runs; i++) profiles.push(await session.forward_profile(image));
  const forwardProfile = {
    total: median(profiles.map((p) => p.total)),
    parts: Object.fromEntries(profiles[0].parts.map(([kind], i) => [kind, median(profiles.map((p) => p.parts[i][1]))])),
  };
  // The network alone on decoded pixels, one glimpse per call and 64 per call.
  const sample = await session.explain(image);
  const rgba = sample.input_rgba();
  sample.free();
  const rgb = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) rgb.set(rgba.subarray(i, i + 3), j);
  const batch1 = await batchTimes(rgb, 1, runs);
  const batch64 = await batchTimes(rgb, 64, batchRuns);
  // Every image of the batch is the same glimpse: each logit must be the single one.
  const difference = Math.max(...batch64.logits.map((l) => Math.abs(l - batch1.logits[0])));
  return {
    backend: session.backend,
    runs,
    batch_runs: batchRuns,
    wasm_memory_bytes: { before: memoryBefore, after: memory() },
    predict_ms: predict,
    explain_ms: explainTimes,
    first_predict_ms: firstPredict,
    predict_median_ms: median(predict),
    predict_tta_median_ms: median(predictTta),
    explain_median_ms: median(explainTimes),
    explain_phases_median_ms: explainPhases,
    forward_profile_median_ms: forwardProfile,
    batch1_per_image_median_ms: median(batch1.times),
    batch64_per_image_median_ms: median(batch64.times),
    batch64_max_logit_difference: difference,
  };
}

// The wasm instance's linear memory, for the page's start-up measurement.
function memory() {
  return { wasm_memory_bytes: wasm ? wasm.memory.buffer.byteLength : 0 };
}

const handlers = {
  facts,
  start,
  explain,
  render,
  release,
  memory,
  predict: ({ bytes }) => session.predict(new Uint8Array(bytes)),
  weights: ({ bytes, name }) => {
    session.load_weights(new Uint8Array(bytes), name);
    return { weights: session.weights };
  },
  tta: ({ on }) => {
    session.set_tta(on);
    return { tta: on };
  },
  resetWeights: () => {
    session.reset_weights();
    return { weights: session.weights };
  },
  bench,
  slideOpen,
  slideView,
  slidePrepare,
  slideCrop,
  slideAccept,
  slideScore,
  slideExplain,
  slideFinish,
  slideClose,
  windowLogits,
};

// Pixel buffers go back to the page without a copy.
function transferables(result) {
  if (!result) return [];
  const buffers = [];
  if (result.input) buffers.push(result.input.buffer);
  const rendered = result.layers ? result : result.rendered;
  if (rendered) {
    buffers.push(rendered.celm.buffer, ...Object.values(rendered.layers).map((l) => l.buffer));
  }
  if (result.legend) buffers.push(result.legend.buffer);
  for (const key of ['pixels', 'rgb', 'probabilities', 'logits', 'tissue', 'heatmap_png']) {
    if (result[key] && result[key].buffer) buffers.push(result[key].buffer);
  }
  return buffers;
}

async function handle(data) {
  try {
    const handler = handlers[data.type];
    if (!handler) throw new Error(`unknown request ${data.type}`);
    const needsSession = !['facts', 'start', 'render', 'release', 'memory', 'slideOpen', 'slideView',
      'slidePrepare', 'slideCrop', 'slideAccept', 'slideClose'].includes(data.type);
    if (needsSession && !session) throw new Error('the engine has not started');
    const result = await handler(data);
    self.postMessage({ id: data.id, ok: true, result }, transferables(result));
  } catch (e) {
    const fatal = e instanceof WebAssembly.RuntimeError;
    self.postMessage({ id: data.id, ok: false, message: String(e && e.message || e), fatal });
  }
}

self.onmessage = ({ data }) => {
  // Re-fusing a kept result is quick and touches no session state: it skips the queue, so
  // sliders stay live while images wait for inference. Everything else runs one at a time.
  if (data.type === 'render' || data.type === 'release' || data.type === 'slideView') {
    handle(data);
    return;
  }
  queue = queue.then(() => handle(data));
};
