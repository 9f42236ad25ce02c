// Browser benchmarks in headless chromium, with target/release/celnet and pkg/ built:
//
//   node scripts/bench-browser.mjs [cpu|webgpu]   www/bench.html: predict and explain medians per
//                                                 backend; target/browser/bench[-BACKEND].json
//                                                 (SIMD=simd128: the build without relaxed SIMD)
//   node scripts/bench-browser.mjs startup [N]    the page on the wasm CPU path, N loads (5): time
//                                                 to a ready engine and to the first result, and
//                                                 the memory of the page with its worker;
//                                                 target/browser/startup.json
//   node scripts/bench-browser.mjs slide FILE...   the slide view: each FILE (a folder: its .dcm
//                                                 files, one DICOM slide) dropped on the page
//                                                 on the wasm CPU path with one worker and with
//                                                 the pool, and on WebGPU (SLIDE_CONFIGS=cpu-1,
//                                                 cpu-pool,webgpu picks; cpu-4 is a pool of 4
//                                                 whatever the cores; cpu-pool-simd128 the pool
//                                                 on the build without relaxed SIMD): time to
//                                                 the first full view, seconds to the finished
//                                                 heatmap, the
//                                                 renderer processes' peak memory (PSS, sampled
//                                                 every 200 ms); target/browser/slide.json and
//                                                 each run's tiles.csv beside it.
//                                                 SLIDE_SECONDS=N stops scoring after N s (for
//                                                 slides too large to finish)
//   node scripts/bench-browser.mjs jpeg2000 DIR   www/bench.html?jpeg2000: the .j2k codestreams
//                                                 in DIR decoded in the worker (wasm CPU), median
//                                                 tiles/s of 5 rounds; target/browser/jpeg2000.json
//
// BENCH_ROOT serves another checkout's page (to compare builds). WebGPU on SwiftShader takes
// several minutes.

import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { chromium } from 'playwright-core';
import { BASE_FLAGS, CHROMIUM, ROOT, WEBGPU_FLAGS, startServer } from '../tests/browser/harness.mjs';

const OUT = join(ROOT, 'target/browser');
const SAMPLE = 'www/samples/patch0029612.jpg';

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function benchPage(browser, origin, backend) {
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`console ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  page.on('crash', () => console.error('the page crashed'));
  const query = new URLSearchParams();
  if (backend) query.set('backend', backend);
  if (process.env.SIMD) query.set('simd', process.env.SIMD);
  await page.goto(`${origin}/www/bench.html?${query}`);
  await page.waitForFunction(() => document.body.dataset.report, null, { timeout: 3_600_000 });
  const report = JSON.parse(await page.evaluate(() => document.body.dataset.report));
  if (report.error) throw new Error(`bench page: ${report.error}`);
  const name = ['bench', backend, process.env.SIMD].filter(Boolean).join('-');
  writeFileSync(join(OUT, `${name}.json`), JSON.stringify(report, null, 1));
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
  for (const r of report.results) {
    console.log(r.skipped ? `${r.backend}: ${r.skipped}`
      : `${r.backend}${r.simd ? ` (${r.simd})` : ''}: predict ${r.predict_median_ms.toFixed(1)} ms, explain ${r.explain_median_ms.toFixed(1)} ms (median of ${r.runs}), warm-up ${r.warmup_ms.toFixed(0)} ms, first predict ${r.first_predict_ms.toFixed(0)} ms; network per image at batch 1 ${r.batch1_per_image_median_ms.toFixed(1)} ms, at batch 64 ${r.batch64_per_image_median_ms.toFixed(1)} ms; explain phases ${JSON.stringify(r.explain_phases_median_ms)}; forward by kind ${JSON.stringify(r.forward_profile_median_ms)}${r.dense_tile_profile_ms ? `; dense tile by kind ${JSON.stringify(r.dense_tile_profile_ms)}` : ''}`);
  }
  console.log(`wasm ${report.sizes.raw} bytes, ${report.sizes.gzip} gzipped, ${report.sizes.transferred} transferred (${report.sizes.content_encoding}); default weights ${report.sizes.weights.raw} bytes, ${report.sizes.weights.transferred} transferred; ${report.user_agent}`);
}

// Proportional set size (bytes) of the renderer processes this script started (through the
// browser), where the page and its
// workers run with their WebAssembly memories; Linux only (null elsewhere).
function rendererBytes(browserPid) {
  if (!existsSync('/proc/self/smaps_rollup')) return null;
  const parent = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(Number(pid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* the process ended */ }
  }
  const descends = (pid) => {
    for (let p = pid; p > 1; p = parent.get(p)) if (p === browserPid) return true;
    return false;
  };
  let total = 0;
  for (const pid of parent.keys()) {
    try {
      if (!descends(pid) || !readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) continue;
      const pss = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/^Pss:\s+(\d+) kB/m);
      if (pss) total += Number(pss[1]) * 1024;
    } catch { /* the process ended */ }
  }
  return total;
}

// One cold load of the page (new context, no service worker, no HTTP cache): milliseconds to
// a ready engine and to the first explained sample, then the memory of the page and its worker:
// their JavaScript heaps (measureUserAgentSpecificMemory) and the renderer processes' PSS,
// which also counts the WebAssembly memories.
async function loadOnce(browser, origin, root) {
  const context = await browser.newContext({ serviceWorkers: 'block' });
  const page = await context.newPage();
  const t0 = Date.now();
  await page.goto(`${origin}/?backend=cpu`);
  await page.waitForFunction(() => document.body.dataset.backend, null, { timeout: 600_000 });
  const ready = Date.now() - t0;
  const t1 = Date.now();
  await page.setInputFiles('#file-input', join(root, SAMPLE));
  await page.waitForSelector('[data-testid="result"]', { timeout: 600_000 });
  const firstResult = Date.now() - t1;
  const memory = await page.evaluate(async () => {
    const m = await performance.measureUserAgentSpecificMemory();
    const byScope = {};
    for (const entry of m.breakdown) {
      for (const attribution of entry.attribution) {
        const scope = attribution.scope || 'other';
        byScope[scope] = (byScope[scope] || 0) + entry.bytes;
      }
      if (entry.attribution.length === 0) byScope.shared = (byScope.shared || 0) + entry.bytes;
    }
    return { bytes: m.bytes, by_scope: byScope };
  });
  const renderer = rendererBytes(process.pid);
  await context.close();
  return {
    ready_ms: ready,
    first_result_ms: firstResult,
    load_to_first_result_ms: ready + firstResult,
    js_heap: memory,
    renderer_pss_bytes: renderer,
  };
}

async function startup(browser, origin, root, loads) {
  const runs = [];
  for (let i = 0; i < loads; i++) {
    const run = await loadOnce(browser, origin, root);
    console.log(`load ${i + 1}: ready ${run.ready_ms} ms, first result ${run.first_result_ms} ms (${run.load_to_first_result_ms} ms from navigation), JS heaps ${(run.js_heap.bytes / 1e6).toFixed(1)} MB ${JSON.stringify(run.js_heap.by_scope)}, renderer PSS ${(run.renderer_pss_bytes / 1e6).toFixed(1)} MB`);
    runs.push(run);
  }
  const report = {
    root,
    loads,
    ready_median_ms: median(runs.map((r) => r.ready_ms)),
    first_result_median_ms: median(runs.map((r) => r.first_result_ms)),
    load_to_first_result_median_ms: median(runs.map((r) => r.load_to_first_result_ms)),
    js_heap_median_bytes: median(runs.map((r) => r.js_heap.bytes)),
    renderer_pss_median_bytes: median(runs.map((r) => r.renderer_pss_bytes)),
    runs,
  };
  writeFileSync(join(OUT, 'startup.json'), JSON.stringify(report, null, 1));
  const mb = (bytes) => (bytes / 1e6).toFixed(1);
  console.log(`median of ${loads}: ready ${report.ready_median_ms} ms, first result ${report.first_result_median_ms} ms, navigation to first result ${report.load_to_first_result_median_ms} ms, JS heaps ${mb(report.js_heap_median_bytes)} MB, renderer PSS ${mb(report.renderer_pss_median_bytes)} MB`);
}

const SLIDE_CONFIGS = {
  'cpu-1': '?backend=cpu&workers=1',
  'cpu-pool': '?backend=cpu',
  'cpu-4': '?backend=cpu&workers=4',
  'cpu-pool-simd128': '?backend=cpu&simd=simd128',
  webgpu: '?backend=webgpu',
};

async function slideOnce(browser, origin, file, config) {
  const context = await browser.newContext({ serviceWorkers: 'block', viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${origin}/${SLIDE_CONFIGS[config]}`);
  await page.waitForFunction(() => document.body.dataset.backend, null, { timeout: 600_000 });
  const idle = rendererBytes(process.pid);
  let peak = idle;
  const sampler = setInterval(() => { peak = Math.max(peak, rendererBytes(process.pid)); }, 200);
  const limit = Number(process.env.SLIDE_SECONDS || 0);
  const result = { file, config, renderer_pss_idle_bytes: idle };
  try {
    const t0 = Date.now();
    // A folder is a DICOM slide: its .dcm files dropped together.
    const dropped = statSync(file).isDirectory()
      ? readdirSync(file).filter((f) => f.endsWith('.dcm')).map((f) => join(file, f))
      : file;
    await page.setInputFiles('#file-input', dropped);
    await page.waitForFunction(() => document.getElementById('slide-view').dataset.firstViewMs, null, { timeout: 600_000 });
    result.first_view_ms = Number(await page.getAttribute('#slide-view', 'data-first-view-ms'));
    result.renderer_pss_first_view_bytes = rendererBytes(process.pid);
    const done = page.waitForFunction(() => document.getElementById('slide-view').dataset.slideScore !== undefined, null, { timeout: 3_600_000 });
    if (limit > 0) {
      await Promise.race([done, new Promise((r) => setTimeout(r, limit * 1000))]);
      result.progress = await page.textContent('#slide-progress-text');
      await page.click('#cancel-slide').catch(() => {});
    } else {
      await done;
    }
    const view = await page.evaluate(() => ({ ...document.getElementById('slide-view').dataset }));
    result.seconds = view.seconds === undefined ? null : Number(view.seconds);
    result.windows = view.windows === undefined ? null : Number(view.windows);
    result.workers = view.workers === undefined ? null : Number(view.workers);
    result.scoring = view.scoring === undefined ? null : JSON.parse(view.scoring);
    result.slide_score = view.slideScore === undefined ? null : Number(view.slideScore);
    if (result.seconds !== null) {
      // The page's tiles.csv, to compare with `celnet heatmap` on the same file.
      result.csv = join(OUT, `slide-${basename(file)}-${config}.csv`);
      writeFileSync(result.csv, await page.evaluate(() => window.celnet.slide().report.csv));
    }
    result.backend = await page.evaluate(() => document.body.dataset.backend);
    result.simd = await page.evaluate(() => document.body.dataset.simd);
    result.wall_ms = Date.now() - t0;
  } finally {
    clearInterval(sampler);
  }
  result.renderer_pss_peak_bytes = peak;
  await context.close();
  return result;
}

async function slides(browser, origin, files) {
  const configs = (process.env.SLIDE_CONFIGS || 'cpu-1,cpu-pool,webgpu').split(',');
  const runs = [];
  const mb = (bytes) => (bytes / 1e6).toFixed(0);
  for (const file of files) {
    for (const config of configs) {
      const r = await slideOnce(browser, origin, file, config);
      console.log(`${file} ${config}: first view ${r.first_view_ms} ms, ${r.seconds === null ? `stopped (${r.progress})` : `${r.seconds.toFixed(1)} s for ${r.windows} windows on ${r.workers} worker(s), ${r.simd}${r.scoring?.pool_seconds ? ` (pool seconds ${JSON.stringify(r.scoring.pool_seconds)})` : ''}`}, renderer PSS ${mb(r.renderer_pss_idle_bytes)} MB idle, ${mb(r.renderer_pss_first_view_bytes)} MB at first view, ${mb(r.renderer_pss_peak_bytes)} MB peak`);
      runs.push(r);
    }
  }
  writeFileSync(join(OUT, 'slide.json'), JSON.stringify({ cores: (await import('node:os')).cpus().length, runs }, null, 1));
}

async function jpeg2000Tiles(browser, origin, dir) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${origin}/www/bench.html?jpeg2000`);
  const tiles = readdirSync(dir).filter((f) => f.endsWith('.j2k')).sort().map((f) => join(dir, f));
  await page.setInputFiles('#jpeg2000-tiles', tiles);
  await page.waitForFunction(() => document.body.dataset.report, null, { timeout: 600_000 });
  const report = JSON.parse(await page.evaluate(() => document.body.dataset.report));
  if (report.error) throw new Error(`bench page: ${report.error}`);
  writeFileSync(join(OUT, 'jpeg2000.json'), JSON.stringify(report, null, 1));
  console.log(`${report.tiles} tiles in the worker (wasm, ${report.simd}): rounds ${report.tiles_per_s.map((r) => r.toFixed(1)).join(', ')} tiles/s, median ${report.median_tiles_per_s.toFixed(1)}`);
  await page.close();
}

const root = process.env.BENCH_ROOT || ROOT;
const mode = process.argv[2];
mkdirSync(OUT, { recursive: true });
const { child: server, origin } = await startServer(root);
const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_FLAGS, ...WEBGPU_FLAGS, '--enable-blink-features=ForceEagerMeasureMemory'] });
try {
  if (mode === 'startup') await startup(browser, origin, root, Number(process.argv[3] || 5));
  else if (mode === 'slide') await slides(browser, origin, process.argv.slice(3));
  else if (mode === 'jpeg2000') await jpeg2000Tiles(browser, origin, process.argv[3]);
  else await benchPage(browser, origin, mode);
} finally {
  await browser.close();
  server.kill();
}
