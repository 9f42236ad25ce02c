// The bench page on the wasm CPU path: the report other tools read (sizes, medians, the batch
// and phase figures, where a glimpse's and a slide tile's time goes), a batch of 64 that
// agrees with one glimpse, and the wasm and the default weights sent compressed.
//
// Needs: target/release/celnet (cargo build --release), pkg/ (scripts/build-web.sh), chromium.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { BASE_FLAGS, CHROMIUM, ROOT, startServer } from './harness.mjs';

let server;
let browser;
let report;

before(async () => {
  let origin;
  ({ child: server, origin } = await startServer());
  browser = await chromium.launch({ executablePath: CHROMIUM, args: BASE_FLAGS });
  const page = await browser.newPage();
  await page.goto(`${origin}/www/bench.html?backend=cpu`);
  await page.waitForFunction(() => document.body.dataset.report, null, { timeout: 600_000 });
  report = JSON.parse(await page.evaluate(() => document.body.dataset.report));
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill();
});

test('the report has the sizes and one CPU result with every figure', () => {
  assert.equal(report.error, undefined, report.error);
  const { sizes, results } = report;
  assert.ok(sizes.raw > 1e6 && sizes.gzip > 0 && sizes.gzip < sizes.raw, JSON.stringify(sizes));
  // The default weights come beside the wasm, not inside it.
  const weights = statSync(join(ROOT, 'weights/celnet-pcam.bpk')).size;
  assert.equal(sizes.weights.raw, weights, JSON.stringify(sizes.weights));
  assert.equal(results.length, 1);
  const [cpu] = results;
  assert.equal(cpu.backend, 'cpu');
  for (const key of ['predict_median_ms', 'predict_tta_median_ms', 'explain_median_ms', 'batch1_per_image_median_ms', 'batch64_per_image_median_ms']) {
    assert.ok(cpu[key] > 0 && Number.isFinite(cpu[key]), `${key}: ${cpu[key]}`);
  }
  const phases = cpu.explain_phases_median_ms;
  for (const key of ['forward', 'grad_cam_backward', 'guided_backward', 'read', 'prepare', 'fuse']) {
    assert.ok(phases[key] >= 0, `explain phase ${key}: ${phases[key]}`);
  }
  const profile = cpu.forward_profile_median_ms;
  assert.ok(profile.parts['3x3 convolutions'] > 0, JSON.stringify(profile));
  const spans = Object.values(profile.parts).reduce((a, b) => a + b, 0);
  assert.ok(spans <= profile.total * 1.001, `the parts (${spans} ms) exceed the forward pass (${profile.total} ms)`);
  const dense = cpu.dense_tile_profile_ms;
  assert.ok(dense.side > 96 && dense.parts['3x3 convolutions'] > 0, JSON.stringify(dense));
  const denseSpans = Object.values(dense.parts).reduce((a, b) => a + b, 0);
  assert.ok(denseSpans <= dense.total * 1.001, `the tile's parts (${denseSpans} ms) exceed its pass (${dense.total} ms)`);
});

test('a batch of 64 copies gives 64 times the single glimpse\'s logit', () => {
  const [cpu] = report.results;
  assert.ok(cpu.batch64_max_logit_difference < 1e-4, `largest difference ${cpu.batch64_max_logit_difference}`);
});

test('the wasm and the weights came over the network precompressed', () => {
  const { sizes } = report;
  assert.ok(['br', 'gzip'].includes(sizes.content_encoding), `Content-Encoding ${sizes.content_encoding}`);
  assert.ok(sizes.transferred > 0 && sizes.transferred < sizes.raw / 3, JSON.stringify(sizes));
  // The weights too, although trained floats shrink by a few per cent only.
  assert.ok(['br', 'gzip'].includes(sizes.weights.content_encoding), JSON.stringify(sizes.weights));
  assert.ok(sizes.weights.transferred < sizes.weights.raw, JSON.stringify(sizes.weights));
});
