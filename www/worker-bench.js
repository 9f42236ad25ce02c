// The bench page's measurements, run inside the inference worker (no message-passing
// overhead): predict and explain timings, where their time goes, the network alone on a
// batch, and JPEG 2000 tile decoding as the slide reader does it here.

import {
  bench_dense_profile, bench_explain_phases, bench_forward_profile, bench_jpeg2000_tiles,
  bench_logits_batch, page_facts,
} from '../pkg/celnet.js';

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Per-image milliseconds of one forward pass over `count` copies of an image (RGB bytes,
// `width` x `height`), and the logits of the last pass.
async function batchTimes(session, image, count, runs) {
  const { rgb, width, height } = image;
  const batch = new Uint8Array(rgb.length * count);
  for (let i = 0; i < count; i++) batch.set(rgb, i * rgb.length);
  let logits = await bench_logits_batch(session, batch, width, height);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    logits = await bench_logits_batch(session, batch, width, height);
    times.push((performance.now() - t0) / count);
  }
  return { times, logits };
}

// The median of each field over several runs of `measure`.
async function medians(runs, measure) {
  const all = [];
  for (let i = 0; i < runs; i++) all.push(await measure());
  return Object.fromEntries(Object.keys(all[0]).map((k) => [k, median(all.map((p) => p[k]))]));
}

export async function bench(session, wasm, { bytes, runs, batchRuns }) {
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
  // Where an explanation's time goes, and a forward pass's by kind of operation.
  const explainPhases = await medians(runs, () => bench_explain_phases(session, image));
  const profiles = [];
  for (let i = 0; i < runs; i++) profiles.push(await bench_forward_profile(session, image));
  const forwardProfile = {
    total: median(profiles.map((p) => p.total)),
    parts: Object.fromEntries(profiles[0].parts.map(([kind], i) => [kind, median(profiles.map((p) => p.parts[i][1]))])),
  };
  // One full tile of the slide view's dense pass, on the CPU only: a GPU runs queued work
  // later, so its spans would not hold their own time (and SwiftShader takes minutes).
  const denseProfile = session.backend === 'cpu'
    ? await bench_dense_profile(session, image, page_facts().default_stride)
    : null;
  // The network alone on decoded pixels, one glimpse per call and 64 per call.
  const sample = await session.explain(image);
  const { width, height } = sample.summary();
  const rgba = sample.input_rgba();
  sample.free();
  const rgb = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) rgb.set(rgba.subarray(i, i + 3), j);
  const decoded = { rgb, width, height };
  const batch1 = await batchTimes(session, decoded, 1, runs);
  const batch64 = await batchTimes(session, decoded, 64, batchRuns);
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
    dense_tile_profile_ms: denseProfile && {
      side: denseProfile.side,
      total: denseProfile.total,
      parts: Object.fromEntries(denseProfile.parts),
    },
    batch1_per_image_median_ms: median(batch1.times),
    batch64_per_image_median_ms: median(batch64.times),
    batch64_max_logit_difference: difference,
  };
}

// JPEG 2000 tiles/s in this worker on the codestreams `tiles` (ArrayBuffers), decoded as a
// slide of TIFF compression `compression` holds them: one warm-up round, then `rounds`.
export function jpeg2000Bench({ tiles, compression, rounds }) {
  const result = bench_jpeg2000_tiles(tiles.map((t) => new Uint8Array(t)), compression, rounds);
  return { ...result, median_tiles_per_s: median(result.tiles_per_s) };
}
