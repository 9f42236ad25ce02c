// Service worker: keeps a copy of the page so it works offline after the first visit.
// Network first (a rebuilt page is picked up at once), the cached copy when offline.

const CACHE = 'celnet-v6';
const FILES = [
  './',
  'index.html',
  'www/style.css',
  'www/app.js',
  'www/cards.js',
  'www/engine.js',
  'www/worker-client.js',
  'www/worker.js',
  'www/worker-bench.js',
  'www/slide-view.js',
  'www/slide-scoring.js',
  'www/heatmap-overlay.js',
  'www/vendor/openseadragon.min.js',
  'www/bench.html',
  'www/bench.js',
  'www/samples/samples.json',
  'www/samples/field-of-view.tif',
  'pkg/celnet.js',
  'pkg/celnet_bg.wasm',
  'pkg/celnet_relaxed_bg.wasm',
  'weights/celnet-pcam.bpk',
];

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    const samples = await fetch('www/samples/samples.json').then((r) => r.json()).catch(() => ({ samples: [] }));
    await cache.addAll([...FILES, ...samples.samples.map((s) => `www/samples/${s.file}`)]);
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(event.request);
      if (response.ok) {
        const cache = await caches.open(CACHE);
        await cache.put(event.request, response.clone());
      }
      return response;
    } catch (offline) {
      const cached = await caches.match(event.request, { ignoreSearch: true });
      if (cached) return cached;
      throw offline;
    }
  })());
});
