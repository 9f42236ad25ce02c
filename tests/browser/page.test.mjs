// The browser client in a real browser: Debian's chromium, headless, driven by playwright-core.
// WebGPU runs on SwiftShader (a CPU implementation) when chromium gets --enable-unsafe-webgpu;
// without that flag there is no adapter and the page must fall back to wasm CPU.
//
// Needs: target/release/celnet (cargo build --release), pkg/ (scripts/build-web.sh), chromium.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { BASE_FLAGS, CELNET, CHROMIUM, ROOT, WEBGPU_FLAGS, startServer } from './harness.mjs';

const SHOTS = join(ROOT, 'target/browser');
const SAMPLE = join(ROOT, 'www/samples/patch0029612.jpg');
const SAMPLE_NORMAL = join(ROOT, 'www/samples/patch0029847.jpg');
const TIMEOUT = 240_000;

let server;
let origin;
const native = {};

function nativeReference(file) {
  // predict --json prints one JSON object per line.
  const [line] = execFileSync(CELNET, ['predict', '--json', file], { encoding: 'utf8' }).trim().split('\n');
  const predicted = JSON.parse(line);
  const out = mkdtempSync(join(tmpdir(), 'celnet-explain-'));
  execFileSync(CELNET, ['explain', file, '-o', out, '--raw'], { encoding: 'utf8' });
  const maps = JSON.parse(readFileSync(join(out, 'maps.json'), 'utf8'));
  const report = JSON.parse(readFileSync(join(out, 'explain.json'), 'utf8'));
  return { probability: predicted.probability, label: predicted.label, celm: maps.celm, params: report.params, report };
}

// A PNG whose header claims width x height and holds no pixel data.
function pngClaiming(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes) => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const ihdr = Buffer.alloc(17);
  ihdr.write('IHDR', 0, 'ascii');
  ihdr.writeUInt32BE(width, 4);
  ihdr.writeUInt32BE(height, 8);
  ihdr.set([8, 2, 0, 0, 0], 12);
  const chunk = Buffer.alloc(25);
  chunk.writeUInt32BE(13, 0);
  ihdr.copy(chunk, 4);
  chunk.writeUInt32BE(crc(ihdr), 21);
  const iend = Buffer.from([0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk, iend]);
}

// A browser context that records every request and refuses any that leaves the page's origin.
async function openPage(flags, query) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_FLAGS, ...flags] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, serviceWorkers: 'block' });
  const foreign = [];
  const wasmLoads = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin || url.startsWith('blob:') || url.startsWith('data:')) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  context.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith('blob:') && !url.startsWith('data:')) foreign.push(url);
    if (url.endsWith('.wasm')) wasmLoads.push(url);
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(`${origin}/${query}`);
  await page.waitForFunction(() => document.body.dataset.backend, null, { timeout: TIMEOUT });
  return { browser, page, foreign, wasmLoads, consoleErrors };
}

async function explainSample(page, file, count) {
  await page.setInputFiles('#file-input', file);
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="result"]').length >= n, count, { timeout: TIMEOUT });
  const card = page.locator('[data-testid="result"]').first();
  const probability = Number(await card.getAttribute('data-probability'));
  const backend = await card.getAttribute('data-backend');
  const { celm, params } = await page.evaluate(() => {
    const { rendered } = window.celnet.results.at(-1);
    return { celm: Array.from(rendered.celm), params: rendered.params };
  });
  return { probability, backend, celm, params };
}

function meanAbsoluteDifference(a, b) {
  assert.equal(a.length, b.length, 'map sizes differ');
  return a.reduce((sum, v, i) => sum + Math.abs(v - b[i]), 0) / a.length;
}

function checkAgainstNative(result, reference, backend) {
  assert.equal(result.backend, backend);
  // The page starts at the tuned defaults, the same as the CLI's.
  for (const name of ['alpha', 'beta', 'threshold', 'sigma']) {
    assert.ok(Math.abs(result.params[name] - reference.params[name]) < 1e-6,
      `${name}: page ${result.params[name]} vs native ${reference.params[name]}`);
  }
  assert.ok(Math.abs(result.probability - reference.probability) < 1e-3,
    `probability ${result.probability} vs native ${reference.probability}`);
  const mad = meanAbsoluteDifference(result.celm, reference.celm);
  assert.ok(mad < 1e-2, `CELM mean absolute difference ${mad}`);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  native.tumour = nativeReference(SAMPLE);
  native.normal = nativeReference(SAMPLE_NORMAL);
  ({ child: server, origin } = await startServer());
});

after(() => server && server.kill());

describe('WebGPU path (SwiftShader)', { timeout: 4 * TIMEOUT }, () => {
  let session;
  before(async () => { session = await openPage(WEBGPU_FLAGS, '?backend=webgpu'); });
  after(async () => session && session.browser.close());

  test('reports WebGPU and matches native predict and explain', async () => {
    const { page } = session;
    assert.equal(await page.evaluate(() => document.body.dataset.backend), 'webgpu');
    assert.match(await page.textContent('#status'), /WebGPU/);
    checkAgainstNative(await explainSample(page, SAMPLE, 1), native.tumour, 'webgpu');
  });

  test('sliders re-fuse the overlay without another inference', async () => {
    const { page } = session;
    const inferences = await page.getAttribute('#results', 'data-inferences');
    const pixels = () => page.evaluate(() => {
      const r = window.celnet.results.at(-1);
      return ['overlay', 'regions'].map((k) => r.canvases[k].toDataURL());
    });
    const before = await pixels();
    const setSlider = (id, value) => page.evaluate(([id, value]) => {
      const el = document.getElementById(id);
      el.value = value;
      el.dispatchEvent(new Event('input', { bubbles: true }));
    }, [id, value]);
    await setSlider('threshold', '0.2');
    await setSlider('alpha', '0.9');
    // f32 on the Rust side: 0.2 comes back as 0.2000000029...
    await page.waitForFunction(() => Math.abs(window.celnet.results.at(-1).rendered.params.threshold - 0.2) < 1e-6);
    const afterRefuse = await pixels();
    assert.notEqual(afterRefuse[0], before[0], 'overlay unchanged after moving a and the threshold');
    assert.notEqual(afterRefuse[1], before[1], 'regions unchanged after moving the threshold');
    await setSlider('opacity', '0.1');
    await page.waitForFunction((old) => window.celnet.results.at(-1).canvases.overlay.toDataURL() !== old, afterRefuse[0]);
    assert.equal(await page.getAttribute('#results', 'data-inferences'), inferences);
    await page.screenshot({ path: join(SHOTS, 'results-webgpu.png'), fullPage: true });
  });

  test('no request left the page origin', () => {
    assert.deepEqual(session.foreign, []);
  });
});

describe('CPU path (no WebGPU in the browser)', { timeout: 4 * TIMEOUT }, () => {
  let session;
  before(async () => { session = await openPage([], ''); });
  after(async () => session && session.browser.close());

  test('falls back to CPU, says so, and matches native', async () => {
    const { page } = session;
    assert.equal(await page.evaluate(() => document.body.dataset.backend), 'cpu');
    assert.match(await page.textContent('#status'), /CPU .*no WebGPU/);
    checkAgainstNative(await explainSample(page, SAMPLE, 1), native.tumour, 'cpu');
    checkAgainstNative(await explainSample(page, SAMPLE_NORMAL, 2), native.normal, 'cpu');
  });

  test('one wasm instance: the worker loads the module, the page does not', () => {
    assert.equal(session.wasmLoads.length, 1, `wasm fetched ${session.wasmLoads.length} times`);
  });

  test('Chromium gets the build with relaxed SIMD, and the page says so', async () => {
    const { page, wasmLoads } = session;
    assert.match(wasmLoads[0], /\/pkg\/celnet_relaxed_bg\.wasm$/);
    assert.equal(await page.evaluate(() => document.body.dataset.simd), 'relaxed-simd');
    assert.match(await page.textContent('#status'), /CPU \(WebAssembly, relaxed SIMD\)/);
  });

  test('cards show every map the CLI writes, and export the CLI\'s JSON fields', async () => {
    const { page } = session;
    const { panels, exported } = await page.evaluate(() => {
      const result = window.celnet.results[0];
      return {
        panels: [...result.card.querySelectorAll('canvas[data-panel]')].map((c) => c.dataset.panel),
        exported: window.celnet.exported(result),
      };
    });
    for (const name of ['cam2', 'cam3', 'csm', 'mc', 'celm']) {
      assert.ok(panels.includes(name), `no ${name} panel in ${panels}`);
    }
    const cli = native.tumour.report;
    assert.equal(exported.label, native.tumour.label);
    assert.deepEqual(Object.keys(exported.timings_ms).sort(), ['decode', 'fusion', 'network', 'total']);
    for (const key of Object.keys(exported)) {
      if (key !== 'file') assert.ok(key in cli, `the page exports ${key}, which explain.json does not have`);
    }
    assert.deepEqual(Object.keys(exported.params).sort(), Object.keys(cli.params).sort());
  });

  test('bad files show an error and the page keeps working', async () => {
    const { page } = session;
    const jpeg = readFileSync(SAMPLE);
    await page.setInputFiles('#file-input', [
      { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('this is not an image\n') },
      { name: 'truncated.jpg', mimeType: 'image/jpeg', buffer: jpeg.subarray(0, jpeg.length >> 1) },
      { name: 'huge.png', mimeType: 'image/png', buffer: pngClaiming(20000, 20000) },
    ]);
    const errors = page.getByTestId('error');
    for (const name of ['notes.png', 'truncated.jpg', 'huge.png']) {
      await errors.getByText(name).waitFor({ timeout: TIMEOUT });
    }
    assert.ok(await errors.isVisible());
    await page.screenshot({ path: join(SHOTS, 'errors-cpu.png'), fullPage: true });
    const count = await page.locator('[data-testid="result"]').count();
    const after = await explainSample(page, SAMPLE, count + 1);
    assert.equal(after.backend, 'cpu');
  });

  test('test-time augmentation re-scores every card with the CLI\'s --tta score', async () => {
    const { page } = session;
    const [line] = execFileSync(CELNET, ['predict', '--json', '--tta', SAMPLE], { encoding: 'utf8' }).trim().split('\n');
    const expected = JSON.parse(line).probability;
    const cards = await page.locator('[data-testid="result"]').count();
    await page.check('#tta');
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="result"][data-tta="dihedral"]').length === n,
      cards, { timeout: TIMEOUT });
    const probabilities = await page.evaluate(() => window.celnet.results
      .filter((r) => r.name.endsWith('.jpg') && r.summary.tta === 'dihedral')
      .map((r) => r.summary.probability));
    assert.ok(probabilities.length > 0);
    const closest = Math.min(...probabilities.map((p) => Math.abs(p - expected)));
    assert.ok(closest < 1e-3, `page ${probabilities} vs CLI --tta ${expected}`);
    await page.uncheck('#tta');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="result"][data-tta="dihedral"]').length === 0,
      null, { timeout: TIMEOUT });
  });

  test('own weights: a corrupt file is refused, a good one re-explains the cards, the default comes back', async () => {
    const { page } = session;
    const good = readFileSync(join(ROOT, 'weights/celnet-pcam.bpk'));
    const glimpseWeights = (name) => page.waitForFunction((n) => {
      const glimpses = window.celnet.results.filter((r) => r.name.endsWith('.jpg'));
      return glimpses.length > 0 && glimpses.every((r) => r.summary.weights === n);
    }, name, { timeout: TIMEOUT });
    await page.setInputFiles('#weights-input',
      { name: 'broken.bpk', mimeType: 'application/octet-stream', buffer: good.subarray(0, good.length >> 1) });
    await page.getByTestId('error').getByText('broken.bpk').waitFor({ timeout: TIMEOUT });
    assert.match(await page.textContent('#status'), /Weights: default\./);
    await page.setInputFiles('#weights-input', { name: 'mine.bpk', mimeType: 'application/octet-stream', buffer: good });
    await glimpseWeights('mine.bpk');
    assert.match(await page.textContent('#status'), /Weights: mine\.bpk\./);
    // "Default weights" reloads the bytes fetched at start-up: the CLI's embedded copy's score.
    await page.click('#reset-weights');
    await glimpseWeights('default');
    assert.match(await page.textContent('#status'), /Weights: default\./);
    const tumour = await page.evaluate(() => window.celnet.results
      .filter((r) => r.name === 'patch0029612.jpg').map((r) => r.summary.probability));
    assert.ok(tumour.length > 0 && tumour.every((p) => Math.abs(p - native.tumour.probability) < 1e-3),
      `page ${tumour} vs CLI ${native.tumour.probability}`);
  });

  test('the page fits a laptop-width window without sideways scrolling', async () => {
    const { page } = session;
    for (const width of [1400, 1024]) {
      await page.setViewportSize({ width, height: 800 });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than a ${width} px window`);
    }
    await page.setViewportSize({ width: 1400, height: 1000 });
  });

  test('?backend=cpu is honoured even where WebGPU exists; ?simd=simd128 runs the other build, which matches native too', async () => {
    const forced = await openPage(WEBGPU_FLAGS, '?backend=cpu&simd=simd128');
    try {
      assert.equal(await forced.page.evaluate(() => document.body.dataset.backend), 'cpu');
      assert.equal(await forced.page.evaluate(() => document.body.dataset.simd), 'simd128');
      assert.deepEqual(forced.wasmLoads.map((url) => new URL(url).pathname), ['/pkg/celnet_bg.wasm']);
      checkAgainstNative(await explainSample(forced.page, SAMPLE, 1), native.tumour, 'cpu');
    } finally {
      await forced.browser.close();
    }
  });

  test('no request left the page origin', () => {
    assert.deepEqual(session.foreign, []);
  });
});

describe('a server without the default weights', { timeout: TIMEOUT }, () => {
  test('the page says what is missing instead of hanging', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: BASE_FLAGS });
    try {
      const context = await browser.newContext({ serviceWorkers: 'block' });
      await context.route('**/weights/celnet-pcam.bpk', (route) => route.fulfill({ status: 404, body: 'not found' }));
      const page = await context.newPage();
      await page.goto(`${origin}/?backend=cpu`);
      await page.getByTestId('error').getByText('default weights').waitFor({ timeout: TIMEOUT });
      assert.match(await page.textContent('#error-list'),
        /engine: could not load the default weights \(weights\/celnet-pcam\.bpk\): HTTP 404/);
      assert.match(await page.textContent('#status'), /could not start/);
    } finally {
      await browser.close();
    }
  });
});
