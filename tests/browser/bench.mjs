// Runs www/bench.html in headless chromium (WebGPU on SwiftShader enabled) and writes the
// report to target/browser/bench[-BACKEND].json. Not a test: `node tests/browser/bench.mjs [cpu|webgpu]`,
// with target/release/celnet and pkg/ built. WebGPU on SwiftShader takes several minutes.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { BASE_FLAGS, CHROMIUM, ROOT, WEBGPU_FLAGS, startServer } from './harness.mjs';

const { child: server, origin } = await startServer();
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [...BASE_FLAGS, ...WEBGPU_FLAGS],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`console ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  page.on('crash', () => console.error('the page crashed'));
  const only = process.argv[2] ? `?backend=${process.argv[2]}` : '';
  await page.goto(`${origin}/www/bench.html${only}`);
  await page.waitForFunction(() => document.body.dataset.report, null, { timeout: 3_600_000 });
  const report = JSON.parse(await page.evaluate(() => document.body.dataset.report));
  if (report.error) throw new Error(`bench page: ${report.error}`);
  mkdirSync(join(ROOT, 'target/browser'), { recursive: true });
  const name = process.argv[2] ? `bench-${process.argv[2]}` : 'bench';
  writeFileSync(join(ROOT, `target/browser/${name}.json`), JSON.stringify(report, null, 1));
  await page.screenshot({ path: join(ROOT, `target/browser/${name}.png`), fullPage: true });
  for (const r of report.results) {
    console.log(r.skipped ? `${r.backend}: ${r.skipped}`
      : `${r.backend}: predict ${r.predict_median_ms.toFixed(1)} ms, explain ${r.explain_median_ms.toFixed(1)} ms (median of ${r.runs}), warm-up ${r.warmup_ms.toFixed(0)} ms`);
  }
  console.log(`wasm ${report.sizes.raw} bytes, ${report.sizes.gzip} gzipped; ${report.user_agent}`);
} finally {
  await browser.close();
  server.kill();
}
