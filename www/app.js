// The page: files in, result cards out. Everything that computes runs in the inference worker
// (worker.js, through worker-client.js): the network, and re-fusing a kept result's evidence for
// new slider positions, which needs no new gradient pass. The page loads no WebAssembly.

import { WorkerClient } from './worker-client.js';
import { SlideView } from './slide-view.js';

const MAX_FILE_BYTES = 256 * 1024 * 1024;
const EXAMPLE_SLIDE = 'www/samples/field-of-view.tif';
// Composite panels drawn here; the map panels (one per map kind) come from the crate.
const COMPOSITES = [
  ['input', 'Input'],
  ['overlay', 'Evidence overlay'],
  ['regions', 'Regions'],
];

const $ = (id) => document.getElementById(id);
const engine = new WorkerClient();
const results = [];
let ready = null; // resolves when the engine (worker) has started
let facts = null; // {default_params, map_kinds, legend, ...} from the crate
let panelList = COMPOSITES; // [key, caption] of every panel of a card
let userWeights = null; // {bytes, name}: re-applied if the worker restarts
let tta = false; // test-time augmentation of scores, re-applied likewise
let inferences = 0;
let params = null;
let slideView = null; // created once the crate's facts (the legend) are known
const sliders = ['alpha', 'beta', 'threshold', 'sigma'];

// A read-only window on the page's state for the browser console and the browser tests.
window.celnet = { results, engine, exported: (result) => summary(result, false), slide: () => slideView };

function requestedBackend() {
  const value = new URLSearchParams(location.search).get('backend');
  return value === 'webgpu' || value === 'cpu' ? value : 'auto';
}

// ---------- status, errors, progress ----------

function setStatus(text, busy = false) {
  $('status').replaceChildren();
  if (busy) {
    const spinner = document.createElement('span');
    spinner.className = 'spinner';
    spinner.setAttribute('aria-hidden', 'true');
    $('status').append(spinner, ' ');
  }
  $('status').append(text);
}

function describeEngine(info) {
  const name = info.backend === 'webgpu' ? `WebGPU (${info.adapter})` : 'CPU (WebAssembly)';
  const why = info.reason ? ` — ${info.reason}` : '';
  return `Backend: ${name}${why}. Weights: ${info.weights}. Ready (warm-up ${Math.round(info.warmup_ms)} ms).`;
}

function showError(message) {
  const item = document.createElement('li');
  item.textContent = message;
  $('error-list').append(item);
  $('errors').hidden = false;
}

function setProgress(done, total) {
  $('progress-row').hidden = total === 0 || done === total;
  $('progress').max = Math.max(total, 1);
  $('progress').value = done;
  $('progress-text').textContent = `${done} / ${total}`;
}

// ---------- engine ----------

async function startEngine(backend) {
  setStatus('Starting the engine (loading the model, compiling kernels)…', true);
  const opened = await engine.open();
  if (!facts) useFacts(opened);
  const info = await engine.start(backend);
  if (userWeights) {
    const { weights } = await engine.call('weights', userWeights);
    info.weights = weights;
  }
  if (tta) await engine.call('tta', { on: true });
  setStatus(describeEngine(info));
  document.body.dataset.backend = info.backend;
  return info;
}

// Runs `type` on the worker; if the wasm instance crashed on WebGPU (e.g. a lost device),
// continues on CPU with a fresh worker and retries once.
async function callEngine(type, payload, transfer = []) {
  await ready;
  try {
    return await engine.call(type, payload, transfer);
  } catch (e) {
    if (!e.fatal) throw e;
    const was = engine.info && engine.info.backend;
    ready = startEngine('cpu').then((info) => {
      info.reason = `${was === 'webgpu' ? 'WebGPU' : 'the engine'} failed (${e.message}); continuing on CPU`;
      setStatus(describeEngine(info));
      return info;
    });
    await ready;
    return engine.call(type, payload, transfer);
  }
}

// ---------- the CPU pool for slides ----------

// Extra workers that score slide tiles in parallel on the wasm CPU path, one wasm instance
// each: as many as the cores (`?workers=N` overrides), fewer where the device reports little
// memory (an instance scoring a full tile takes about half a gigabyte). None on WebGPU.
let scorerPool = null;
const SCORER_MEMORY_GB = 0.5;

function scorerCount() {
  const forced = Number(new URLSearchParams(location.search).get('workers'));
  if (Number.isInteger(forced) && forced >= 1) return forced;
  const cores = navigator.hardwareConcurrency || 1;
  const memory = navigator.deviceMemory || 4;
  return Math.max(1, Math.min(cores, Math.floor(memory / SCORER_MEMORY_GB)));
}

async function scorers() {
  await ready;
  if (engine.info.backend !== 'cpu') return [];
  const count = scorerCount();
  if (count < 2) return [];
  scorerPool ??= Promise.all(Array.from({ length: count }, async () => {
    const client = new WorkerClient();
    await client.open();
    await client.start('cpu');
    if (userWeights) await client.call('weights', userWeights);
    if (tta) await client.call('tta', { on: true });
    return client;
  })).catch((e) => {
    scorerPool = null;
    showError(`the CPU worker pool could not start (${e.message}); scoring on one worker`);
    return [];
  });
  return scorerPool;
}

// New weights: the pool's instances must load them too, so it is started again when next needed.
async function dropScorers() {
  const pool = scorerPool ? await scorerPool : [];
  scorerPool = null;
  for (const client of pool) client.stop();
}

// ---------- files ----------

let queue = Promise.resolve();
let queued = 0;
let finished = 0;

function addFiles(files) {
  const list = [...files];
  if (list.length === 0) return;
  queued += list.length;
  setProgress(finished, queued);
  for (const file of list) {
    queue = queue.then(() => processFile(file)).finally(() => {
      finished += 1;
      setProgress(finished, queued);
    });
  }
}

// Glimpses get a result card; larger images and slide files open in the slide view. The
// worker opens the file itself, through slices, so a slide is never read whole.
async function processFile(file) {
  const dropped = performance.now();
  try {
    const opened = await callEngine('slideOpen', { file });
    if (!opened.glimpse) {
      await slideView.open(opened.info, dropped);
      return;
    }
    if (file.size > MAX_FILE_BYTES) {
      throw new Error(`the file is ${(file.size / 1e6).toFixed(0)} MB; the limit is ${MAX_FILE_BYTES / 1e6} MB`);
    }
    const bytes = await file.arrayBuffer();
    await explainBytes(file.name, bytes);
  } catch (e) {
    showError(`${file.name}: ${e.message}`);
  }
}

// A CELM card for a window of the slide view (already explained in the worker).
function showExplained(explainedResult, name) {
  const { handle, summary: s, input, rendered } = explainedResult;
  const target = { name, bytes: null, handle, generation: engine.generation, summary: s, rendered };
  target.input = new ImageData(input, s.width, s.height);
  results.push(target);
  inferences += 1;
  $('results').dataset.inferences = String(inferences);
  draw(target);
  $('export-all').disabled = false;
}

// Explains `bytes` (a new card, or again for `result`'s card), keeping the evidence in the
// worker for later re-fusion.
async function explainBytes(name, bytes, truth, result = null) {
  await ready;
  const { handle, summary, input, rendered } = await callEngine('explain', { bytes, params });
  inferences += 1;
  $('results').dataset.inferences = String(inferences);
  if (result && result.generation === engine.generation) {
    engine.call('release', { handle: result.handle }).catch(() => {});
  }
  const target = result || { name, bytes, truth };
  Object.assign(target, { handle, generation: engine.generation, summary, rendered });
  target.input = new ImageData(input, summary.width, summary.height);
  if (!result) results.push(target);
  draw(target);
  $('export-all').disabled = false;
}

// New parameters for one result: re-fused in the worker, or explained again if the worker that
// held its evidence has been replaced.
async function updateEvidence(result) {
  if (result.generation !== engine.generation) {
    if (!result.bytes) throw new Error('the engine restarted; click the slide again to explain this window');
    await explainBytes(result.name, result.bytes, result.truth, result);
    return;
  }
  result.rendered = await engine.call('render', { handle: result.handle, params });
  draw(result);
}

// ---------- drawing ----------

function canvasFor(width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function layerCanvas(bytes, width, height) {
  const canvas = canvasFor(width, height);
  canvas.getContext('2d').putImageData(new ImageData(bytes, width, height), 0, 0);
  return canvas;
}

function paint(result) {
  const { width, height } = result.summary;
  const layers = result.rendered.layers;
  const input = canvasFor(width, height);
  input.getContext('2d').putImageData(result.input, 0, 0);
  const heat = layerCanvas(layers.heat, width, height);
  const outline = layerCanvas(layers.outline, width, height);
  const opacity = Number($('opacity').value);
  const canvases = result.canvases;

  const draw = (key, painter) => {
    const ctx = canvases[key].getContext('2d');
    ctx.clearRect(0, 0, width, height);
    painter(ctx);
  };
  draw('input', (ctx) => ctx.drawImage(input, 0, 0));
  draw('overlay', (ctx) => {
    ctx.drawImage(input, 0, 0);
    ctx.globalAlpha = opacity;
    ctx.drawImage(heat, 0, 0);
    ctx.globalAlpha = 1;
    ctx.drawImage(outline, 0, 0);
  });
  draw('regions', (ctx) => {
    ctx.drawImage(input, 0, 0);
    ctx.drawImage(outline, 0, 0);
  });
  for (const { name } of facts.map_kinds) {
    draw(name, (ctx) => ctx.putImageData(new ImageData(layers[name], width, height), 0, 0));
  }
}

function describeRegions(regions) {
  if (regions.length === 0) return 'No evidence region at this threshold.';
  const parts = regions.slice(0, 3).map(
    (r) => `${r.area} px at (${r.bbox.x0}, ${r.bbox.y0}), mean evidence ${r.mean_evidence.toFixed(2)}`,
  );
  const more = regions.length > 3 ? `, and ${regions.length - 3} more` : '';
  return `${regions.length} region${regions.length > 1 ? 's' : ''}: ${parts.join('; ')}${more}.`;
}

function buildCard(result) {
  const { width, height } = result.summary;
  const card = document.createElement('article');
  card.className = 'card';
  const title = document.createElement('h2');
  const verdict = document.createElement('p');
  verdict.className = 'verdict';
  const meta = document.createElement('p');
  meta.className = 'meta';
  const regions = document.createElement('p');
  regions.className = 'regions';
  const panels = document.createElement('div');
  panels.className = 'panels';
  result.canvases = {};
  for (const [key, label] of panelList) {
    const figure = document.createElement('figure');
    const canvas = canvasFor(width, height);
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', `${label} of ${result.name}`);
    canvas.dataset.panel = key;
    const caption = document.createElement('figcaption');
    caption.textContent = label;
    figure.append(canvas, caption);
    panels.append(figure);
    result.canvases[key] = canvas;
  }
  const actions = document.createElement('div');
  actions.className = 'actions';
  const button = (text, onClick) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.addEventListener('click', onClick);
    actions.append(b);
  };
  button('Overlay PNG', () => downloadCanvas(result.canvases.overlay, `${stem(result.name)}-overlay.png`));
  button('Maps PNG', () => downloadCanvas(sheet(result), `${stem(result.name)}-maps.png`));
  button('JSON', () => downloadJson(summary(result, true), `${stem(result.name)}-celm.json`));
  card.append(title, verdict, meta, regions, panels, actions);
  result.card = card;
  result.parts = { title, verdict, meta, regions };
  $('results').prepend(card);
}

function draw(result) {
  if (!result.card) buildCard(result);
  const { summary, rendered, parts, card } = result;
  const p = summary.probability;
  parts.title.textContent = result.name;
  parts.verdict.textContent = `${(100 * p).toFixed(1)}% — ${summary.verdict}`;
  parts.verdict.dataset.label = summary.label;
  const truth = result.truth === undefined ? '' : ` · PCam label: ${result.truth ? 'tumour' : 'normal'}`;
  const timings = summary.timings_ms;
  const orientations = summary.tta === 'dihedral' ? ' · mean of 8 orientations' : '';
  parts.meta.textContent = `${summary.width}x${summary.height} px · ${summary.backend === 'webgpu' ? 'WebGPU' : 'CPU'} · ${Math.round(timings.total)} ms · weights: ${summary.weights}${orientations}${truth}`;
  parts.regions.textContent = describeRegions(rendered.regions);
  card.dataset.testid = 'result';
  card.dataset.probability = String(p);
  card.dataset.backend = summary.backend;
  card.dataset.tta = summary.tta;
  paint(result);
}

// ---------- export ----------

const stem = (name) => name.replace(/\.[^.]*$/, '') || 'image';

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function downloadCanvas(canvas, name) {
  canvas.toBlob((blob) => download(blob, name), 'image/png');
}

function downloadJson(value, name) {
  download(new Blob([JSON.stringify(value, null, 1)], { type: 'application/json' }), name);
}

// All panels side by side with captions, for a report.
function sheet(result) {
  const { width, height } = result.summary;
  const caption = 18;
  const out = canvasFor(width * panelList.length, height + caption);
  const ctx = out.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.fillStyle = '#000';
  ctx.font = '12px sans-serif';
  panelList.forEach(([key, label], i) => {
    ctx.drawImage(result.canvases[key], i * width, 0);
    ctx.fillText(label, i * width + 2, height + 13);
  });
  return out;
}

// The same fields as the CLI's explain.json where they mean the same thing.
function summary(result, withMap) {
  const { summary: s, rendered } = result;
  const value = {
    file: result.name,
    width: s.width,
    height: s.height,
    logit: s.logit,
    probability: s.probability,
    label: s.label,
    params: rendered.params,
    regions: rendered.regions,
    timings_ms: rendered.timings_ms,
    backend: s.backend,
    weights: s.weights,
  };
  // Only when on: the score is then the mean over the eight orientations.
  if (s.tta === 'dihedral') value.tta = s.tta;
  if (withMap) value.celm = Array.from(rendered.celm, (v) => Math.round(v * 1e4) / 1e4);
  return value;
}

// ---------- controls ----------

// Slider moves: `fuse` re-fuses every result with the new parameters (in the worker); without
// it only the overlay opacity changed and the page repaints. At most one re-fusion per result
// is in flight; moves made meanwhile are folded into the next one.
let redrawPending = false;
let fusing = false;
let fuseAgain = false;
function scheduleRedraw(fuse) {
  if (fuse) {
    params = readParams();
    fuseAgain = true;
    updateAllEvidence();
    return;
  }
  if (redrawPending) return;
  redrawPending = true;
  requestAnimationFrame(() => {
    redrawPending = false;
    for (const result of results) paint(result);
  });
}

async function updateAllEvidence() {
  if (fusing) return;
  fusing = true;
  while (fuseAgain) {
    fuseAgain = false;
    await Promise.all(results.map((result) => updateEvidence(result).catch((e) => showError(`${result.name}: ${e.message}`))));
  }
  fusing = false;
}

function readParams() {
  const value = {};
  for (const name of sliders) {
    value[name] = Number($(name).value);
    $(`${name}-value`).textContent = $(name).value;
  }
  $('opacity-value').textContent = $('opacity').value;
  return value;
}

function setParams(values) {
  for (const name of sliders) $(name).value = String(values[name]);
  params = readParams();
}

// What the crate decides: the initial sliders, the map panels and the colour legend.
function useFacts(value) {
  facts = value;
  panelList = [...COMPOSITES, ...facts.map_kinds.map((k) => [k.name, k.title])];
  $('opacity').value = String(facts.overlay_opacity);
  setParams(facts.default_params);
  for (const id of ['legend', 'slide-legend']) {
    $(id).getContext('2d').putImageData(new ImageData(facts.legend, 256, 1), 0, 0);
  }
  slideView = new SlideView({
    call: callEngine,
    scorers,
    legend: facts.legend,
    explained: showExplained,
    showError,
  });
}

async function loadSamples() {
  const response = await fetch('www/samples/samples.json');
  const { samples } = await response.json();
  for (const sample of samples) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'sample';
    const label = sample.label ? 'tumour' : 'normal';
    button.title = `${sample.file} (PCam label: ${label})`;
    button.setAttribute('aria-label', `Explain sample ${sample.file}, PCam label ${label}`);
    const img = document.createElement('img');
    img.src = `www/samples/${sample.file}`;
    img.alt = '';
    button.append(img);
    button.addEventListener('click', async () => {
      try {
        const bytes = await (await fetch(img.src)).arrayBuffer();
        await explainBytes(sample.file, bytes, sample.label);
      } catch (e) {
        showError(`${sample.file}: ${e.message}`);
      }
    });
    $('gallery').append(button);
  }
}

async function loadWeights(file) {
  try {
    const bytes = await file.arrayBuffer();
    await ready;
    const { weights } = await engine.call('weights', { bytes, name: file.name });
    userWeights = { bytes, name: file.name };
    await dropScorers();
    engine.info.weights = weights;
    setStatus(describeEngine(engine.info));
    await rerunAll();
  } catch (e) {
    showError(`weights ${file.name}: ${e.message}`);
  }
}

async function resetWeights() {
  try {
    await ready;
    const { weights } = await engine.call('resetWeights');
    userWeights = null;
    await dropScorers();
    engine.info.weights = weights;
    setStatus(describeEngine(engine.info));
    await rerunAll();
  } catch (e) {
    showError(e.message);
  }
}

async function setTta(on) {
  try {
    tta = on;
    await ready;
    await engine.call('tta', { on });
    await dropScorers();
    await rerunAll();
  } catch (e) {
    showError(`test-time augmentation: ${e.message}`);
  }
}

// New weights: explain every image already on the page again.
async function rerunAll() {
  for (const result of [...results]) {
    if (result.bytes) await explainBytes(result.name, result.bytes, result.truth, result);
  }
}

function wireControls() {
  const input = $('file-input');
  input.addEventListener('change', () => {
    addFiles(input.files);
    input.value = '';
  });
  const zone = $('drop-zone');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    addFiles(e.dataTransfer.files);
  });
  // Dropping anywhere else must not navigate away from the page.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());

  for (const name of sliders) $(name).addEventListener('input', () => scheduleRedraw(true));
  $('opacity').addEventListener('input', () => {
    readParams();
    scheduleRedraw(false);
  });
  $('reset-params').addEventListener('click', () => {
    if (!facts) return;
    setParams(facts.default_params);
    scheduleRedraw(true);
  });
  $('clear-errors').addEventListener('click', () => {
    $('error-list').replaceChildren();
    $('errors').hidden = true;
  });
  const select = $('backend-select');
  select.value = requestedBackend();
  select.addEventListener('change', () => {
    const url = new URL(location.href);
    if (select.value === 'auto') url.searchParams.delete('backend');
    else url.searchParams.set('backend', select.value);
    location.assign(url);
  });
  const weights = $('weights-input');
  weights.addEventListener('change', () => {
    if (weights.files[0]) loadWeights(weights.files[0]);
    weights.value = '';
  });
  $('reset-weights').addEventListener('click', resetWeights);
  $('tta').addEventListener('change', (e) => setTta(e.target.checked));
  $('example-slide').addEventListener('click', async () => {
    try {
      const response = await fetch(EXAMPLE_SLIDE);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      addFiles([new File([blob], EXAMPLE_SLIDE.split('/').pop(), { type: 'image/tiff' })]);
    } catch (e) {
      showError(`example: ${e.message}`);
    }
  });
  $('export-all').addEventListener('click', () =>
    downloadJson(results.map((r) => summary(r, false)), 'celnet-results.json'));
}

async function main() {
  wireControls();
  ready = startEngine(requestedBackend());
  ready.catch((e) => {
    setStatus('The engine could not start.');
    showError(`engine: ${e.message}`);
  });
  await loadSamples().catch((e) => showError(`samples: ${e.message}`));
  if ('serviceWorker' in navigator && window.isSecureContext) {
    navigator.serviceWorker.register('sw.js').catch(() => {
      // Offline use is a convenience; the page works without it.
    });
  }
}

main().catch((e) => showError(e.message));
