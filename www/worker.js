// Inference worker: owns the wasm Session (WebGPU or wasm CPU) and every explained result's
// evidence, so the page never freezes and never loads WebAssembly itself.
// Protocol: every request is {id, type, ...}; every reply is {id, ok, result} or
// {id, ok: false, message, fatal}. `fatal` means the wasm instance crashed (for example a lost
// GPU device): the page replaces this worker with a CPU one.

import init, { Session, page_facts } from '../pkg/celnet.js';

let session = null;
let wasm = null; // the instance's exports (its linear memory, for the bench page)
let queue = Promise.resolve();
const explained = new Map(); // handle number -> Explained (evidence kept in wasm memory)
let nextHandle = 1;

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
  let reason = choice.reason;
  try {
    session = await Session.create(choice.backend);
  } catch (e) {
    if (choice.backend !== 'webgpu') throw e;
    reason = `WebGPU failed to start (${e.message}); using CPU`;
    session = await Session.create('cpu');
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

async function bench({ bytes, runs }) {
  const image = new Uint8Array(bytes);
  const explainOnce = async (x) => (await session.explain(x)).free();
  await session.predict(image);
  await explainOnce(image);
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
  const explainTimes = await time(explainOnce);
  return {
    backend: session.backend,
    runs,
    wasm_memory_bytes: { before: memoryBefore, after: memory() },
    predict_ms: predict,
    explain_ms: explainTimes,
    predict_median_ms: median(predict),
    explain_median_ms: median(explainTimes),
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
  resetWeights: () => {
    session.reset_weights();
    return { weights: session.weights };
  },
  bench,
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
  return buffers;
}

async function handle(data) {
  try {
    const handler = handlers[data.type];
    if (!handler) throw new Error(`unknown request ${data.type}`);
    const needsSession = !['facts', 'start', 'render', 'release', 'memory'].includes(data.type);
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
  if (data.type === 'render' || data.type === 'release') {
    handle(data);
    return;
  }
  queue = queue.then(() => handle(data));
};
