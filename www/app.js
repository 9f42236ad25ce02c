// The page: files in, result cards out. Everything that computes runs in the inference worker
// (engine.js): the network, and re-fusing a kept result's evidence for new slider positions,
// which needs no new gradient pass. The page loads no WebAssembly. Result cards are drawn by
// cards.js, large images and slides open in the slide view (slide-view.js).

import { Engine } from './engine.js';
import { Cards, downloadJson, exported } from './cards.js';
import { SlideView } from './slide-view.js';

const MAX_FILE_BYTES = 256 * 1024 * 1024;
const EXAMPLE_SLIDE = 'www/samples/field-of-view.tif';
const SLIDERS = ['alpha', 'beta', 'threshold', 'sigma'];

const $ = (id) => document.getElementById(id);
const results = [];
let facts = null; // what the crate decides: default parameters, map kinds, legend, ...
let cards = null;
let slideView = null; // created once the crate's facts are known
let inferences = 0;
let params = null;
const engine = new Engine({ onStatus: (info) => showEngine(info), showError });

// A read-only window on the page's state for the browser console and the browser tests.
window.celnet = { results, engine, exported: (result) => exported(result, false), slide: () => slideView };

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

function showEngine(info) {
  const name = info.backend === 'webgpu'
    ? `WebGPU (${info.adapter})`
    : `CPU (WebAssembly, ${info.simd === 'relaxed-simd' ? 'relaxed SIMD' : 'SIMD'})`;
  const why = info.reason ? ` — ${info.reason}` : '';
  setStatus(`Backend: ${name}${why}. Weights: ${info.weights}. Ready (warm-up ${Math.round(info.warmup_ms)} ms).`);
  document.body.dataset.backend = info.backend;
  document.body.dataset.simd = info.simd;
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

// ---------- files ----------

let queue = Promise.resolve();
let queued = 0;
let finished = 0;

// DICOM files dropped together are the levels of one slide, opened as one.
const isDicom = (file) => /\.dcm$/i.test(file.name);

function addFiles(files) {
  let list = [...files];
  if (list.length === 0) return;
  const dicom = list.filter(isDicom);
  if (dicom.length > 1) list = [...list.filter((f) => !isDicom(f)), dicom];
  queued += list.length;
  setProgress(finished, queued);
  for (const item of list) {
    const work = Array.isArray(item) ? () => processStudy(item) : () => processFile(item);
    queue = queue.then(work).finally(() => {
      finished += 1;
      setProgress(finished, queued);
    });
  }
}

async function processStudy(files) {
  try {
    const opened = await engine.call('slideOpen', { files });
    await slideView.open(opened.info, performance.now());
  } catch (e) {
    showError(`${files[0].name} and ${files.length - 1} more file(s): ${e.message}`);
  }
}

// Glimpses get a result card; larger images and slide files open in the slide view. The
// worker opens the file itself, through slices, so a slide is never read whole.
async function processFile(file) {
  const dropped = performance.now();
  try {
    const opened = await engine.call('slideOpen', { file });
    if (!opened.glimpse) {
      await slideView.open(opened.info, dropped);
      return;
    }
    if (file.size > MAX_FILE_BYTES) {
      throw new Error(`the file is ${(file.size / 1e6).toFixed(0)} MB; the limit is ${MAX_FILE_BYTES / 1e6} MB`);
    }
    await explainBytes(file.name, await file.arrayBuffer());
  } catch (e) {
    showError(`${file.name}: ${e.message}`);
  }
}

function counted() {
  inferences += 1;
  $('results').dataset.inferences = String(inferences);
  $('export-all').disabled = false;
}

// A CELM card for a window of the slide view (already explained in the worker).
function showExplained({ handle, summary, input, rendered }, name) {
  const result = { name, bytes: null, handle, generation: engine.generation, summary, rendered };
  result.input = new ImageData(input, summary.width, summary.height);
  results.push(result);
  counted();
  cards.draw(result);
}

// Explains `bytes` (a new card, or again for `result`'s card), keeping the evidence in the
// worker for later re-fusion.
async function explainBytes(name, bytes, truth, result = null) {
  const { handle, summary, input, rendered } = await engine.call('explain', { bytes, params });
  counted();
  if (result && result.generation === engine.generation) {
    engine.callNow('release', { handle: result.handle }).catch(() => {});
  }
  const target = result || { name, bytes, truth };
  Object.assign(target, { handle, generation: engine.generation, summary, rendered });
  target.input = new ImageData(input, summary.width, summary.height);
  if (!result) results.push(target);
  cards.draw(target);
}

// New parameters for one result: re-fused in the worker, or explained again if the worker that
// held its evidence has been replaced.
async function updateEvidence(result) {
  if (result.generation !== engine.generation) {
    if (!result.bytes) throw new Error('the engine restarted; click the slide again to explain this window');
    await explainBytes(result.name, result.bytes, result.truth, result);
    return;
  }
  result.rendered = await engine.callNow('render', { handle: result.handle, params });
  cards.draw(result);
}

// Explains every image on the page again (new weights, test-time augmentation).
async function rerunAll() {
  for (const result of [...results]) {
    if (result.bytes) await explainBytes(result.name, result.bytes, result.truth, result);
  }
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
    for (const result of results) cards.paint(result);
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
  for (const name of SLIDERS) {
    value[name] = Number($(name).value);
    $(`${name}-value`).textContent = $(name).value;
  }
  $('opacity-value').textContent = $('opacity').value;
  return value;
}

function setParams(values) {
  for (const name of SLIDERS) $(name).value = String(values[name]);
  params = readParams();
}

// What the crate decides: the initial sliders, the map panels, the colour legend, and the
// numbers the page's text shows (elements with `data-fact="name"`).
function useFacts(value) {
  facts = value;
  $('opacity').value = String(facts.overlay_opacity);
  setParams(facts.default_params);
  for (const id of ['legend', 'slide-legend']) {
    $(id).getContext('2d').putImageData(new ImageData(facts.legend, 256, 1), 0, 0);
  }
  for (const element of document.querySelectorAll('[data-fact]')) {
    element.textContent = String(facts[element.dataset.fact]);
  }
  cards = new Cards({ facts, container: $('results'), opacity: () => Number($('opacity').value) });
  slideView = new SlideView({
    call: (type, payload, transfer) => engine.call(type, payload, transfer),
    scorers: () => engine.scorers(),
    facts,
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

// New weights (a file), or the default ones (null); every image on the page is explained again.
async function useWeights(file) {
  try {
    const weights = file ? { bytes: await file.arrayBuffer(), name: file.name } : null;
    await engine.setWeights(weights);
    await rerunAll();
  } catch (e) {
    showError(file ? `weights ${file.name}: ${e.message}` : e.message);
  }
}

async function setTta(on) {
  try {
    await engine.setTta(on);
    await rerunAll();
  } catch (e) {
    showError(`test-time augmentation: ${e.message}`);
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

  for (const name of SLIDERS) $(name).addEventListener('input', () => scheduleRedraw(true));
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
    if (weights.files[0]) useWeights(weights.files[0]);
    weights.value = '';
  });
  $('reset-weights').addEventListener('click', () => useWeights(null));
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
    downloadJson(results.map((r) => exported(r, false)), 'celnet-results.json'));
}

async function main() {
  wireControls();
  setStatus('Starting the engine (loading the model, compiling kernels)…', true);
  engine.boot(requestedBackend(), useFacts).catch((e) => {
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
