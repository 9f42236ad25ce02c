// What the browser tests and scripts/bench-browser.mjs share: paths, chromium flags and a `celnet serve`
// on a free port.

import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CELNET = join(ROOT, 'target/release/celnet');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const BASE_FLAGS = [
  '--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage',
  '--disable-default-apps', '--metrics-recording-only', '--no-pings',
];
export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];

// Starts `celnet serve` on a free port over `root` (the repository); resolves to
// { child, origin }.
export function startServer(root = ROOT) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(CELNET, ['serve', '--port', '0', '--root', root], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/at (http:\/\/[^/\s]+)\//);
      if (match) resolvePromise({ child, origin: match[1] });
    });
    child.on('exit', (code) => reject(new Error(`celnet serve exited with ${code}: ${out}`)));
  });
}
