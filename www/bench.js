// Benchmark page: predict and explain timings per backend, measured inside the worker (no
// message-passing overhead), plus the size of the wasm the page loads.

import { WorkerClient } from './worker-client.js';

const RUNS = 20;
// Runs of the batch of 64 (each is 64 forward passes; WebGPU on a software adapter is slow).
const BATCH_RUNS = { cpu: 5, webgpu: 2 };
const SAMPLE = 'samples/patch0029612.jpg';
const $ = (id) => document.getElementById(id);

// A file's size, gzipped here, and as it came over the network (`transferred`, with the
// server's Content-Encoding: `celnet serve` sends a precompressed copy where there is one).
async function fileSizes(path) {
  const url = new URL(path, location.href).href;
  const response = await fetch(url, { cache: 'no-store' });
  const raw = await response.arrayBuffer();
  const gzipped = await new Response(
    new Blob([raw]).stream().pipeThrough(new CompressionStream('gzip')),
  ).arrayBuffer();
  const timing = performance.getEntriesByName(url).at(-1);
  return {
    raw: raw.byteLength,
    gzip: gzipped.byteLength,
    transferred: timing ? timing.encodedBodySize : null,
    content_encoding: response.headers.get('content-encoding') || 'identity',
  };
}

// The sizes of both wasm builds (`relaxed`: the one with relaxed SIMD), with the default
// weights' (fetched beside them) as `weights`.
async function downloadSizes() {
  const wasm = await fileSizes('../pkg/celnet_bg.wasm');
  const relaxed = await fileSizes('../pkg/celnet_relaxed_bg.wasm');
  const weights = await fileSizes('../weights/celnet-pcam.bpk');
  return { ...wasm, relaxed, weights };
}

async function benchBackend(backend, bytes) {
  const engine = new WorkerClient();
  try {
    await engine.open();
    const info = await engine.start(backend);
    if (info.backend !== backend) return { backend, skipped: info.reason };
    const result = await engine.call('bench', { bytes, runs: RUNS, batchRuns: BATCH_RUNS[backend] });
    return { ...result, warmup_ms: info.warmup_ms, adapter: info.adapter, simd: info.simd };
  } catch (e) {
    return { backend, skipped: e.message };
  } finally {
    engine.stop();
  }
}

function phasesText(phases) {
  const names = {
    forward: 'forward', grad_cam_backward: 'Grad-CAM backward', guided_backward: 'guided backward',
    read: 'read', prepare: 'smoothing', fuse: 'fusion',
  };
  return Object.entries(names).map(([k, name]) => `${name} ${phases[k].toFixed(1)}`).join(' · ');
}

// Where one forward pass's time goes, by kind of operation (exact on the CPU only: a GPU runs
// queued work later).
function profileLine(result) {
  const { total, parts } = result.forward_profile_median_ms;
  const named = Object.entries(parts).map(([kind, ms]) => `${kind} ${ms.toFixed(1)}`);
  const other = total - Object.values(parts).reduce((a, b) => a + b, 0);
  const p = document.createElement('p');
  p.dataset.backend = result.backend;
  p.textContent = `One forward pass on ${result.backend}, ${total.toFixed(1)} ms (median ms): ${named.join(' · ')} · other ${other.toFixed(1)}.`;
  $('profiles').append(p);
}

// Where one tile of the slide view's dense pass spends its time (the CPU path only).
function denseLine(result) {
  const dense = result.dense_tile_profile_ms;
  if (!dense) return;
  const named = Object.entries(dense.parts).map(([kind, ms]) => `${kind} ${ms.toFixed(0)}`);
  const other = dense.total - Object.values(dense.parts).reduce((a, b) => a + b, 0);
  const p = document.createElement('p');
  p.dataset.backend = result.backend;
  p.textContent = `One ${dense.side} px tile of the slide view's dense pass on ${result.backend}, ${dense.total.toFixed(0)} ms: ${named.join(' · ')} · other ${other.toFixed(0)}.`;
  $('profiles').append(p);
}

function row(result) {
  const tr = document.createElement('tr');
  tr.dataset.backend = result.backend;
  const cells = result.skipped
    ? [result.backend, `not available: ${result.skipped}`, '', '', '', '', '', '', '']
    : [
      result.backend === 'webgpu' ? `webgpu (${result.adapter})` : `cpu (wasm, ${result.simd})`,
      result.predict_median_ms.toFixed(1),
      result.predict_tta_median_ms.toFixed(1),
      result.explain_median_ms.toFixed(1),
      phasesText(result.explain_phases_median_ms),
      result.batch1_per_image_median_ms.toFixed(1),
      result.batch64_per_image_median_ms.toFixed(1),
      String(result.runs),
      result.warmup_ms.toFixed(0),
    ];
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  $('bench-table').tBodies[0].append(tr);
}

async function main() {
  const sizes = await downloadSizes();
  const mb = (bytes) => `${(bytes / 1e6).toFixed(2)} MB`;
  const sent = (s) => (s.transferred ? `; ${mb(s.transferred)} over the network (${s.content_encoding})` : '');
  $('sizes').textContent = `celnet_bg.wasm: ${mb(sizes.raw)} raw, ${mb(sizes.gzip)} gzipped${sent(sizes)}; `
    + `celnet_relaxed_bg.wasm (relaxed SIMD): ${mb(sizes.relaxed.raw)} raw, ${mb(sizes.relaxed.gzip)} gzipped. `
    + `Default weights (fetched beside it): ${mb(sizes.weights.raw)}${sent(sizes.weights)}.`;
  $('agent').textContent = `Browser: ${navigator.userAgent}; ${navigator.hardwareConcurrency} logical cores.`;
  const bytes = await (await fetch(SAMPLE)).arrayBuffer();
  const results = [];
  // ?backend=cpu or ?backend=webgpu measures one backend only (SwiftShader WebGPU is slow).
  const only = new URLSearchParams(location.search).get('backend');
  const backends = ['cpu', 'webgpu'].filter((b) => !only || b === only);
  for (const backend of backends) {
    const result = await benchBackend(backend, bytes.slice(0));
    results.push(result);
    row(result);
    if (!result.skipped) {
      profileLine(result);
      denseLine(result);
    }
  }
  const report = { sizes, user_agent: navigator.userAgent, sample: SAMPLE, results };
  document.body.dataset.report = JSON.stringify(report);
  $('status').textContent = 'Done.';
}

// `?jpeg2000`: the JPEG 2000 tile bench instead, on the codestreams chosen in the page.
async function jpeg2000Main() {
  $('jpeg2000').hidden = false;
  $('bench-table').hidden = true;
  $('status').textContent = 'Choose .j2k codestreams.';
  const files = await new Promise((resolve) => {
    $('jpeg2000-tiles').addEventListener('change', (e) => resolve([...e.target.files]), { once: true });
  });
  $('status').textContent = `Decoding ${files.length} tiles…`;
  const tiles = await Promise.all(files.map((f) => f.arrayBuffer()));
  const engine = new WorkerClient();
  try {
    await engine.open();
    const info = await engine.start('cpu');
    const result = await engine.call('jpeg2000Bench', { tiles, compression: 33005, rounds: 5 }, tiles);
    const report = { ...result, simd: info.simd, user_agent: navigator.userAgent };
    $('jpeg2000-result').textContent = `${result.tiles} tiles (${(result.pixels / 1e6).toFixed(1)} Mpx): `
      + `median ${result.median_tiles_per_s.toFixed(1)} tiles/s over ${result.tiles_per_s.length} rounds (wasm, ${info.simd}).`;
    document.body.dataset.report = JSON.stringify(report);
    $('status').textContent = 'Done.';
  } finally {
    engine.stop();
  }
}

(new URLSearchParams(location.search).has('jpeg2000') ? jpeg2000Main() : main()).catch((e) => {
  $('status').textContent = `Benchmark failed: ${e.message}`;
  document.body.dataset.report = JSON.stringify({ error: e.message });
});
