// The slide view in a real browser (headless chromium, playwright-core): fields of view and
// pyramidal TIFFs scored tile by tile in the worker, against `celnet heatmap --json` on the same
// files, on the wasm CPU path and on WebGPU (SwiftShader).
//
// Needs: target/release/celnet, pkg/ (scripts/build-web.sh), chromium.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { BASE_FLAGS, CELNET, CHROMIUM, ROOT, WEBGPU_FLAGS, startServer } from './harness.mjs';

const SHOTS = join(ROOT, 'target/browser');
const FIXTURES = join(ROOT, 'tests/fixtures');
const FIELD = join(FIXTURES, 'slide/field-of-view.png'); // 448x448 px, 0.499 µm/px in pHYs
const PYRAMID = join(FIXTURES, 'slide/pyramid-jpeg.tif'); // 1024x1024 px, 3 levels, JPEG tiles
const NO_MPP = join(FIXTURES, 'tiff/region.png'); // 288x192 px, no pixel size
const LESIONS = join(FIXTURES, 'slide/lesions.png'); // 480x480 px of PCam patches, two lesions
const SVS = join(FIXTURES, 'tiff/svs-crop.svs');
const SVS_JP2K = join(FIXTURES, 'tiff/svs-jp2k-rgb.svs'); // 480x480 px, Aperio JPEG 2000 (33005)
const DICOM = join(FIXTURES, 'dicom/jpeg2000'); // the same crop as DICOM WSI, two level files
const DICOM_FILES = [join(DICOM, 'level-1.dcm'), join(DICOM, 'level-0.dcm')];
const EXAMPLE = join(ROOT, 'www/samples/field-of-view.tif'); // the page's bundled example
const TIMEOUT = 300_000;

let server;
let origin;
const native = {};

// `celnet heatmap FILE --json` and the GeoJSON it writes.
function heatmapReference(file, extra = []) {
  const out = mkdtempSync(join(tmpdir(), 'celnet-heatmap-'));
  const [line] = execFileSync(CELNET, ['heatmap', file, '-o', out, '--json', ...extra], { encoding: 'utf8' })
    .trim().split('\n');
  return { report: JSON.parse(line), geojson: JSON.parse(readFileSync(join(out, 'heatmap.geojson'), 'utf8')) };
}

// A copy of a classic little-endian TIFF with every directory's compression set to `code`.
function withCompression(bytes, code) {
  const out = Buffer.from(bytes);
  let ifd = out.readUInt32LE(4);
  while (ifd !== 0) {
    const count = out.readUInt16LE(ifd);
    for (let i = 0; i < count; i++) {
      const entry = ifd + 2 + 12 * i;
      if (out.readUInt16LE(entry) === 259) out.writeUInt16LE(code, entry + 8);
    }
    ifd = out.readUInt32LE(ifd + 2 + 12 * count);
  }
  return out;
}

// A fresh browser on the page, its engine started. Page errors and console errors go to the
// test's output, so a page that fails to start says why. A start that has not finished in
// START_TIMEOUT is tried once more in a fresh browser (a cold start takes seconds).
async function openPage(flags, query) {
  try {
    return await openPageOnce(flags, query);
  } catch (e) {
    console.error(`the page did not start (${e.message}); trying once more`);
    return openPageOnce(flags, query);
  }
}

const START_TIMEOUT = 120_000;

async function openPageOnce(flags, query) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_FLAGS, ...flags] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, serviceWorkers: 'block' });
  const foreign = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin || url.startsWith('blob:') || url.startsWith('data:')) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`console: ${m.text()}`); });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  try {
    await page.goto(`${origin}/${query}`);
    await page.waitForFunction(() => document.body.dataset.backend, null, { timeout: START_TIMEOUT });
  } catch (e) {
    console.error(`status: ${await page.textContent('#status').catch(() => '?')}; errors: ${await page.textContent('#errors').catch(() => '?')}`);
    await browser.close();
    throw e;
  }
  return { browser, page, foreign };
}

const view = (page) => page.getByTestId('slide-view');

// Drops `file` and waits for its scoring to finish: the slide view's data attributes.
async function scoreFile(page, file) {
  const before = await page.evaluate(() => window.celnet.slide().token);
  await page.setInputFiles('#file-input', file);
  await page.waitForFunction((token) => window.celnet.slide().token > token, before, { timeout: TIMEOUT });
  return finished(page);
}

async function finished(page) {
  await page.waitForFunction(() => document.getElementById('slide-view').dataset.slideScore !== undefined, null, { timeout: TIMEOUT });
  const root = view(page);
  return {
    slideScore: Number(await root.getAttribute('data-slide-score')),
    windows: Number(await root.getAttribute('data-windows')),
    backend: await root.getAttribute('data-backend'),
    points: JSON.parse(await root.getAttribute('data-points')),
    slideProbability: Number(await root.getAttribute('data-slide-probability')),
    slideCategory: await root.getAttribute('data-slide-category'),
    lesions: JSON.parse(await root.getAttribute('data-lesions')),
    geojson: JSON.parse(await page.evaluate(() => window.celnet.slide().report.geojson)),
    scoring: await page.evaluate(() => window.celnet.slide().report.summary.scoring),
  };
}

function close(a, b, tolerance, what) {
  assert.ok(Math.abs(a - b) <= tolerance, `${what}: page ${a} vs CLI ${b}`);
}

// The page's results equal the CLI's: score and points within 1e-3, the same windows, and the
// exported GeoJSON feature by feature (CELM region boxes within a few pixels: the maps are
// thresholded, so a value at the threshold may flip on another backend).
function checkAgainstCli(page, reference, backend) {
  const { report, geojson } = reference;
  assert.equal(page.backend, backend);
  close(page.slideScore, report.slide_score, 1e-3, 'slide score');
  assert.equal(page.windows, report.windows);
  // The same plan (tiles and pixels computed), and the page's own time and rate in its export.
  assert.equal(page.scoring.tiles, report.scoring.tiles, 'tiles');
  assert.equal(page.scoring.pixels, report.scoring.pixels, 'pixels computed');
  assert.ok(page.scoring.seconds > 0 && page.scoring.windows_per_second > 0, JSON.stringify(page.scoring));
  // Lesions: the same count and categories, diameters within one window step (a window near a
  // threshold may fall on the other side on another backend).
  close(page.slideProbability, report.slide_probability, 1e-2, 'slide probability');
  assert.equal(page.slideCategory, report.slide_category);
  assert.equal(page.lesions.length, report.lesions.length, 'lesions');
  const step = (report.stride / report.factor) * report.mpp / 1000; // one stride, mm
  page.lesions.forEach((l, i) => {
    const m = report.lesions[i];
    close(l.diameter_mm, m.diameter_mm, step + 1e-9, `lesion ${i} diameter (mm)`);
    close(l.peak.probability, m.peak.probability, 1e-3, `lesion ${i} peak`);
  });
  assert.equal(page.points.length, report.points.length, 'tumour points');
  page.points.forEach((p, i) => {
    const q = report.points[i];
    close(p.x, q.x, 1e-6 * q.x + 1e-6, `point ${i} x`);
    close(p.y, q.y, 1e-6 * q.y + 1e-6, `point ${i} y`);
    close(p.probability, q.probability, 1e-3, `point ${i} probability`);
  });
  assert.equal(page.geojson.type, 'FeatureCollection');
  assert.equal(page.geojson.features.length, geojson.features.length, 'GeoJSON features');
  page.geojson.features.forEach((f, i) => {
    const g = geojson.features[i];
    assert.equal(f.properties.name, g.properties.name);
    assert.equal(f.properties.objectType, g.properties.objectType);
    assert.equal(f.geometry.type, g.geometry.type);
    const region = f.properties.name === 'CELM region';
    // Lesion outlines and measurements are compared above, within a window step.
    if (f.properties.name.startsWith('lesion ')) return;
    const a = f.geometry.coordinates.flat(2);
    const b = g.geometry.coordinates.flat(2);
    a.forEach((v, k) => close(v, b[k], region ? 4 : 1e-6 * Math.abs(b[k]) + 1e-6, `feature ${i} coordinate ${k}`));
    for (const [key, value] of Object.entries(g.properties.measurements)) {
      close(f.properties.measurements[key], value, region ? 0.05 : 1e-3, `feature ${i} ${key}`);
    }
    if (!region && f.properties.objectType === 'tile') {
      const p = f.properties.measurements.probability;
      // Away from the threshold, the class must agree.
      if (Math.abs(p - 0.5) > 1e-3) assert.equal(f.properties.classification.name, g.properties.classification.name);
    }
  });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  native.field = heatmapReference(FIELD);
  native.pyramid = heatmapReference(PYRAMID);
  native.noMpp = heatmapReference(NO_MPP, ['--mpp', '0.5']);
  native.example = heatmapReference(EXAMPLE);
  native.lesions = heatmapReference(LESIONS);
  native.jp2k = heatmapReference(SVS_JP2K);
  native.dicom = heatmapReference(DICOM);
  assert.ok(native.lesions.report.lesions.length >= 2, 'the lesion fixture holds lesions');
  ({ child: server, origin } = await startServer());
});

after(() => server && server.kill());

describe('slide view on the CPU path', { timeout: 6 * TIMEOUT }, () => {
  let session;
  before(async () => { session = await openPage([], '?backend=cpu'); });
  after(async () => session && session.browser.close());

  test('a field of view scores as `celnet heatmap` scores it', async () => {
    const { page } = session;
    const result = await scoreFile(page, FIELD);
    checkAgainstCli(result, native.field, 'cpu');
    assert.ok(result.points.length > 0, 'the fixture holds metastasis: expected a tumour point');
  });

  test('a pyramidal TIFF scores as `celnet heatmap` scores it, and its evidence opens on click', async () => {
    const { page } = session;
    const result = await scoreFile(page, PYRAMID);
    checkAgainstCli(result, native.pyramid, 'cpu');
    assert.match(await page.textContent('#slide-scale'), /pyramid level 1/);
    const cards = await page.locator('[data-testid="result"]').count();
    await page.locator('#slide-points button').first().click();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="result"]').length > n, cards, { timeout: TIMEOUT });
    await page.waitForTimeout(500);
    await view(page).screenshot({ path: join(SHOTS, 'slide-view-cpu.png') });
  });

  test('an image without a pixel size asks for one and scores nothing until given', async () => {
    const { page } = session;
    const before = await page.evaluate(() => window.celnet.slide().token);
    await page.setInputFiles('#file-input', NO_MPP);
    await page.waitForFunction((token) => window.celnet.slide().token > token, before, { timeout: TIMEOUT });
    assert.match(await page.textContent('#slide-scale'), /no pixel size/);
    await page.click('#score-slide');
    await page.getByTestId('error').getByText(/give the pixel size/).waitFor({ timeout: TIMEOUT });
    assert.equal(await view(page).getAttribute('data-slide-score'), null);
    await page.fill('#mpp-input', '0.5');
    await page.press('#mpp-input', 'Enter');
    const result = await finished(page);
    checkAgainstCli(result, native.noMpp, 'cpu');
  });

  test('an Aperio SVS in JPEG 2000 scores as `celnet heatmap` scores it', async () => {
    const { page } = session;
    checkAgainstCli(await scoreFile(page, SVS_JP2K), native.jp2k, 'cpu');
    assert.match(await page.textContent('#slide-facts'), /Aperio SVS, Aperio JPEG 2000 \(33005\)/);
  });

  test('a DICOM slide dropped as its level files scores as `celnet heatmap` scores its folder', async () => {
    const { page } = session;
    checkAgainstCli(await scoreFile(page, DICOM_FILES), native.dicom, 'cpu');
    assert.match(await page.textContent('#slide-facts'), /2 levels; DICOM WSI, JPEG 2000/);
  });

  test('a corrupt TIFF, damaged JPEG 2000 tiles, an unknown compression and an unsupported DICOM transfer syntax give clear errors; the page keeps working', async () => {
    const { page } = session;
    const pyramid = readFileSync(PYRAMID);
    const jpegLs = Buffer.from(readFileSync(join(FIXTURES, 'dicom/jpeg/level-0.dcm')));
    jpegLs.write('1.2.840.10008.1.2.4.80', jpegLs.indexOf('1.2.840.10008.1.2.4.50'));
    await page.setInputFiles('#file-input', [
      { name: 'cut.tif', mimeType: 'image/tiff', buffer: pyramid.subarray(0, 3000) },
      { name: 'jp2k.svs', mimeType: 'application/octet-stream', buffer: withCompression(readFileSync(SVS), 33003) },
      { name: 'lerc.svs', mimeType: 'application/octet-stream', buffer: withCompression(readFileSync(SVS), 34887) },
      // A DICOM slide whose frames are in a transfer syntax the page does not decode.
      { name: 'ls-0.dcm', mimeType: 'application/dicom', buffer: jpegLs },
      { name: 'ls-1.dcm', mimeType: 'application/dicom', buffer: readFileSync(join(FIXTURES, 'dicom/jpeg/level-1.dcm')) },
    ]);
    const errors = page.getByTestId('error');
    await errors.getByText(/cut\.tif/).waitFor({ timeout: TIMEOUT });
    await errors.getByText(/jp2k\.svs.*JPEG 2000 chunk cannot be decoded/).waitFor({ timeout: TIMEOUT });
    await errors.getByText(/lerc\.svs.*unsupported compression code 34887/).waitFor({ timeout: TIMEOUT });
    await errors.getByText(/ls-0\.dcm and 1 more file.*JPEG-LS \(1\.2\.840\.10008\.1\.2\.4\.80\)/).waitFor({ timeout: TIMEOUT });
    checkAgainstCli(await scoreFile(page, FIELD), native.field, 'cpu');
  });

  test('lesions: the verdict, the table and the outlines equal the CLI; a row explains its peak', async () => {
    const { page } = session;
    const result = await scoreFile(page, LESIONS);
    checkAgainstCli(result, native.lesions, 'cpu');
    const rows = page.locator('#slide-lesions tbody tr');
    assert.equal(await rows.count(), native.lesions.report.lesions.length);
    assert.match(await page.textContent('#slide-verdict'), /slide probability/);
    assert.equal(await page.locator('.slide-outlines path').count(), native.lesions.report.lesions.length);
    const cards = await page.locator('[data-testid="result"]').count();
    await rows.first().click();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="result"]').length > n, cards, { timeout: TIMEOUT });
    await view(page).screenshot({ path: join(SHOTS, 'slide-lesions-cpu.png') });
  });

  test('a stride the network cannot align is an error, not a crashed engine', async () => {
    const { page } = session;
    const message = await page.evaluate(async () => {
      const side = 160;
      const request = { rgb: new Uint8Array(side * side * 3), width: side, height: side, stride: 30, tta: 'off' };
      try {
        await window.celnet.engine.call('windowLogits', request);
        return 'no error';
      } catch (e) {
        return `fatal ${e.fatal}: ${e.message}`;
      }
    });
    assert.match(message, /^fatal false: .*stride divisible by 4/);
    checkAgainstCli(await scoreFile(page, FIELD), native.field, 'cpu');
  });

  test('cancel stops the work and leaves the page usable; the next slide scores', async () => {
    const { page } = session;
    const before = await page.evaluate(() => window.celnet.slide().token);
    await page.setInputFiles('#file-input', PYRAMID);
    await page.waitForFunction((token) => window.celnet.slide().token > token, before, { timeout: TIMEOUT });
    await page.locator('#cancel-slide').waitFor({ state: 'visible', timeout: TIMEOUT });
    await page.click('#cancel-slide');
    assert.equal(await view(page).getAttribute('data-cancelled'), 'true');
    assert.equal(await view(page).getAttribute('data-slide-score'), null);
    checkAgainstCli(await scoreFile(page, FIELD), native.field, 'cpu');
  });

  test('the bundled example field of view opens from its button and scores', async () => {
    const { page } = session;
    const before = await page.evaluate(() => window.celnet.slide().token);
    await page.click('#example-slide');
    await page.waitForFunction((token) => window.celnet.slide().token > token, before, { timeout: TIMEOUT });
    checkAgainstCli(await finished(page), native.example, 'cpu');
    // The time from pressing the button to the whole view drawn is recorded (benchmarks read it).
    await page.waitForFunction(() => Number(document.getElementById('slide-view').dataset.firstViewMs) > 0, null, { timeout: TIMEOUT });
  });

  test('no request left the page origin', () => {
    assert.deepEqual(session.foreign, []);
  });
});

describe('slide view on WebGPU (SwiftShader)', { timeout: 6 * TIMEOUT }, () => {
  let session;
  before(async () => { session = await openPage(WEBGPU_FLAGS, '?backend=webgpu'); });
  after(async () => session && session.browser.close());

  test('a field of view and a pyramidal TIFF score as `celnet heatmap` scores them', async () => {
    const { page } = session;
    checkAgainstCli(await scoreFile(page, FIELD), native.field, 'webgpu');
    checkAgainstCli(await scoreFile(page, PYRAMID), native.pyramid, 'webgpu');
    await view(page).screenshot({ path: join(SHOTS, 'slide-view-webgpu.png') });
  });

  test('lesions of a slide fixture equal the CLI', async () => {
    const { page } = session;
    checkAgainstCli(await scoreFile(page, LESIONS), native.lesions, 'webgpu');
  });

  test('an Aperio SVS in JPEG 2000 and a DICOM slide score as `celnet heatmap` scores them', async () => {
    const { page } = session;
    checkAgainstCli(await scoreFile(page, SVS_JP2K), native.jp2k, 'webgpu');
    checkAgainstCli(await scoreFile(page, DICOM_FILES), native.dicom, 'webgpu');
  });

  test('no request left the page origin', () => {
    assert.deepEqual(session.foreign, []);
  });
});
