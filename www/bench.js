// Benchmark page: predict and explain timings per backend, measured inside the worker (no
// message-passing overhead), plus the size of the wasm the page loads.

import { WorkerClient } from './worker-client.js';

const RUNS = 20;
const SAMPLE = 'samples/patch0029612.jpg';
const $ = (id) => document.getElementById(id);

async function wasmSizes() {
  const raw = await (await fetch('../pkg/celnet_bg.wasm')).arrayBuffer();
  const gzipped = await new Response(
    new Blob([raw]).stream().pipeThrough(new CompressionStream('gzip')),
  ).arrayBuffer();
  return { raw: raw.byteLength, gzip: gzipped.byteLength };
}

async function benchBackend(backend, bytes) {
  const engine = new WorkerClient();
  try {
    await engine.open();
    const info = await engine.start(backend);
    if (info.backend !== backend) return { backend, skipped: info.reason };
    const result = await engine.call('bench', { bytes, runs: RUNS });
    return { ...result, warmup_ms: info.warmup_ms, adapter: info.adapter };
  } catch (e) {
    return { backend, skipped: e.message };
  } finally {
    engine.stop();
  }
}

function row(result) {
  const tr = document.createElement('tr');
  tr.dataset.backend = result.backend;
  const cells = result.skipped
    ? [result.backend, `not available: ${result.skipped}`, '', '', '']
    : [
      result.backend === 'webgpu' ? `webgpu (${result.adapter})` : 'cpu (wasm)',
      result.predict_median_ms.toFixed(1),
      result.explain_median_ms.toFixed(1),
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
  const sizes = await wasmSizes();
  $('sizes').textContent = `celnet_bg.wasm: ${(sizes.raw / 1e6).toFixed(2)} MB raw, ${(sizes.gzip / 1e6).toFixed(2)} MB gzipped.`;
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
  }
  const report = { sizes, user_agent: navigator.userAgent, sample: SAMPLE, results };
  document.body.dataset.report = JSON.stringify(report);
  $('status').textContent = 'Done.';
}

main().catch((e) => {
  $('status').textContent = `Benchmark failed: ${e.message}`;
  document.body.dataset.report = JSON.stringify({ error: e.message });
});
