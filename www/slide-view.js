// The slide view: a large image or slide file in a pan/zoom viewer (OpenSeadragon, vendored),
// its tissue and heatmap drawn over it (heatmap-overlay.js), scoring tile by tile in the workers
// with progress and cancel (slide-scoring.js), tumour points, click-for-evidence and the
// exports `celnet heatmap` writes. The worker keeps the file open (read through slices of the
// File, never whole) and serves the viewer's tiles between the scoring run's tiles. Every
// number of the model (stride, window, scale, threshold) comes from the crate: the facts, or
// the plan of the run.

import { saveBlob } from './cards.js';
import { installHeatmapOverlay } from './heatmap-overlay.js';
import { scoreTiles } from './slide-scoring.js';

const VIEW_TILE = 256;
const FIRST_VIEW_WAIT_MS = 3000;

const $ = (id) => document.getElementById(id);

let viewerReady = null; // the OpenSeadragon script, loaded once, on first use

function loadViewer() {
  viewerReady ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = 'www/vendor/openseadragon.min.js';
    script.onload = () => {
      installHeatmapOverlay(window.OpenSeadragon);
      resolve(window.OpenSeadragon);
    };
    script.onerror = () => reject(new Error('the viewer (OpenSeadragon) could not be loaded'));
    document.head.append(script);
  });
  return viewerReady;
}

export class SlideView {
  // `call(type, payload, transfer)` talks to the inference worker; `scorers()` resolves to the
  // pool of extra CPU workers to spread tiles over (empty on WebGPU); `facts` are the crate's
  // (the legend among them); `explained(result, name)` shows a CELM card; `showError(message)`
  // reports.
  constructor({ call, scorers, facts, explained, showError }) {
    Object.assign(this, { call, scorers, facts, explained, showError });
    this.root = $('slide-view');
    this.viewer = null;
    this.overlay = null;
    this.info = null;
    this.run = 0; // bumped to cancel the scoring run in progress
    this.token = 0; // one per opened file: viewer tiles are cached by it
    this.plan = null;
    this.report = null;
    const [low, high] = facts.plausible_mpp;
    Object.assign($('mpp-input'), { min: String(low), max: String(high) });
    $('mpp-hint').textContent = facts.magnification_hint;
    this.wire();
  }

  wire() {
    $('score-slide').addEventListener('click', () => this.score());
    $('mpp-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') this.score();
    });
    $('cancel-slide').addEventListener('click', () => this.cancel('Cancelled'));
    $('heatmap-opacity').addEventListener('input', () => this.styleOverlays());
    $('show-tissue').addEventListener('change', () => this.styleOverlays());
    $('slide-home').addEventListener('click', () => this.viewer && this.viewer.viewport.goHome());
    const exports = {
      'export-geojson': () => this.download(this.report.geojson, 'application/geo+json', '.geojson'),
      'export-csv': () => this.download(this.report.csv, 'text/csv', '-tiles.csv'),
      'export-heatmap': () => this.download(this.report.heatmap_png, 'image/png', '-heatmap.png'),
      'export-summary': () => this.download(JSON.stringify(this.report.summary, null, 1), 'application/json', '-summary.json'),
    };
    for (const [id, action] of Object.entries(exports)) $(id).addEventListener('click', action);
  }

  // Shows a file the worker opened (`info` from SlideJob.info) and scores it at once when its
  // pixel size is known. `droppedAt` (performance.now()) times the first full view of the image.
  async open(info, droppedAt = performance.now()) {
    this.cancel();
    this.token += 1;
    this.droppedAt = droppedAt;
    delete this.root.dataset.firstViewMs;
    this.info = info;
    this.plan = null;
    this.setReport(null);
    this.root.hidden = false;
    if (this.overlay) this.overlay.clear();
    $('slide-name').textContent = info.name;
    const kind = info.slide ? `slide file, ${info.levels.length} level${info.levels.length > 1 ? 's' : ''}` : 'image';
    $('slide-facts').textContent = `${info.width} x ${info.height} px (${kind}; ${info.format})`;
    $('mpp-input').value = info.mpp ? String(+info.mpp.toFixed(4)) : '';
    $('slide-scale').textContent = info.mpp
      ? `Pixel size from the file: ${info.mpp.toFixed(4)} µm/px.`
      : info.declared_mpp
        ? `The file declares ${info.declared_mpp.toFixed(1)} µm/px, a screen's or an editor's value, not a microscope's: type the pixel size to score.`
        : 'The file gives no pixel size: type it to score.';
    this.setProgress(null);
    const OpenSeadragon = await loadViewer();
    const token = this.token;
    const seen = new Promise((resolve) => { this.onFirstView = resolve; });
    this.showImage(OpenSeadragon, info);
    if (!info.mpp) return;
    // Scoring starts once the image is on screen (or after FIRST_VIEW_WAIT_MS): preparing reads
    // the whole image for its tissue, and the worker serves viewer tiles only between steps.
    await Promise.race([seen, new Promise((resolve) => setTimeout(resolve, FIRST_VIEW_WAIT_MS))]);
    // Not awaited: the page takes the next file (or a cancel) while this one scores.
    if (token === this.token) this.score();
  }

  showImage(OpenSeadragon, info) {
    const { width, height } = info;
    const maxLevel = Math.ceil(Math.log2(Math.max(width, height)));
    // No level smaller than one viewer tile: each of those would read the slide's coarsest
    // level whole for a few pixels.
    const minLevel = Math.max(0, maxLevel - Math.floor(Math.log2(Math.max(width, height) / VIEW_TILE)));
    const token = this.token;
    const call = this.call;
    const source = new OpenSeadragon.TileSource({
      width,
      height,
      tileSize: VIEW_TILE,
      tileOverlap: 0,
      minLevel,
      maxLevel,
      getTileUrl: (level, x, y) => `celnet-tile/${token}/${level}/${x}/${y}`,
      downloadTileStart(job) {
        const [level, x, y] = job.src.split('/').slice(-3).map(Number);
        const scale = 2 ** (level - maxLevel);
        const side = VIEW_TILE / scale;
        const x0 = x * side;
        const y0 = y * side;
        const x1 = Math.min(width, x0 + side);
        const y1 = Math.min(height, y0 + side);
        const w = Math.max(1, Math.ceil((x1 - x0) * scale));
        const h = Math.max(1, Math.ceil((y1 - y0) * scale));
        call('slideView', { x0, y0, x1, y1, width: w, height: h })
          .then(({ pixels }) => createImageBitmap(new ImageData(new Uint8ClampedArray(pixels.buffer), w, h)))
          .then((bitmap) => job.finish(bitmap, null, 'imageBitmap'))
          .catch((e) => job.fail(e.message));
      },
      downloadTileAbort() {},
    });
    if (this.viewer) {
      this.viewer.open(source);
      return;
    }
    this.viewer = OpenSeadragon({
      element: $('slide-viewer'),
      tileSources: source,
      showNavigationControl: false,
      drawer: 'canvas',
      gestureSettingsMouse: { clickToZoom: false },
      maxZoomPixelRatio: 4,
    });
    this.overlay = this.viewer.celnetHeatmap({ legend: this.facts.legend });
    this.viewer.addHandler('canvas-click', (e) => {
      if (!e.quick) return;
      const point = this.viewer.viewport.viewerElementToImageCoordinates(e.position);
      this.explainAt(point.x, point.y);
    });
    new OpenSeadragon.MouseTracker({
      element: this.viewer.canvas,
      moveHandler: (e) => this.hover(this.viewer.viewport.viewerElementToImageCoordinates(e.position)),
    });
    // The first time the whole view is drawn: from dropping the file to seeing it.
    this.viewer.world.addHandler('add-item', ({ item }) => {
      const itemToken = this.token;
      item.addHandler('fully-loaded-change', ({ fullyLoaded }) => {
        if (!fullyLoaded || itemToken !== this.token || this.root.dataset.firstViewMs) return;
        this.root.dataset.firstViewMs = String(Math.round(performance.now() - this.droppedAt));
        if (this.onFirstView) this.onFirstView();
      });
    });
    this.OpenSeadragon = OpenSeadragon;
  }

  // The pixel size to send: null keeps the file's own (as `celnet heatmap` without --mpp).
  typedMpp() {
    const text = $('mpp-input').value.trim();
    if (text === '') return { missing: true };
    const value = Number(text);
    if (this.info.mpp && Math.abs(value - this.info.mpp) < 5e-5) return { mpp: null };
    return { mpp: value };
  }

  async score() {
    if (!this.info || !this.overlay) return;
    const typed = this.typedMpp();
    if (typed.missing) {
      this.showError(`${this.info.name}: give the pixel size (µm/px) before scoring; ${this.facts.magnification_hint}`);
      $('mpp-input').focus();
      return;
    }
    this.cancel();
    const run = ++this.run;
    const current = () => run === this.run;
    this.setReport(null);
    this.overlay.clear();
    delete this.root.dataset.cancelled;
    // An image wider or taller than one of the page's tiles at the model's scale is scored
    // by the pool of CPU workers (kept for later files), which then starts while the tissue
    // is found; otherwise it starts only if the plan has several tiles.
    const mpp = typed.mpp ?? this.info.mpp;
    const large = Math.max(this.info.width, this.info.height) * (mpp / this.facts.model_mpp) > this.facts.page_tile;
    const early = large ? this.scorers() : null;
    if (early) early.catch(() => {}); // a failed engine is reported by the steps that need it
    let prepared;
    try {
      this.setProgress({ text: 'Finding tissue…' });
      prepared = await this.call('slidePrepare', { mpp: typed.mpp, stride: this.facts.default_stride });
    } catch (e) {
      this.setProgress(null);
      this.showError(`${this.info.name}: ${e.message}`);
      return;
    }
    if (!current()) return;
    const { plan, tissue } = prepared;
    this.plan = plan;
    $('slide-scale').textContent = describePlan(plan, this.facts);
    this.overlay.setTissue(tissue, plan.tissue);
    this.overlay.setGrid(plan);
    this.styleOverlays();
    const started = performance.now();
    let done = 0;
    let work = 0; // model-scale pixels computed: the time follows them, not the windows
    this.setProgress({ done, total: plan.windows });
    const progress = ({ windows, pixels, probabilities }) => {
      done += windows;
      work += pixels;
      this.overlay.paint(probabilities);
      const seconds = (performance.now() - started) / 1000;
      this.setProgress({ done, total: plan.windows, left: work ? (seconds / work) * (plan.pixels - work) : null });
    };
    try {
      const pool = plan.tiles > 1 ? await (early ?? this.scorers()) : [];
      if (!current()) return;
      const { workers, seconds: poolSeconds } = await scoreTiles({ call: this.call, pool, plan, current, progress });
      const scoringSeconds = (performance.now() - started) / 1000;
      if (!current()) return;
      this.setProgress({ text: 'Explaining the top windows…' });
      const report = await this.call('slideFinish', { topK: this.facts.default_top_k });
      if (!current()) return;
      report.summary.seconds = (performance.now() - started) / 1000;
      report.summary.workers = workers;
      // The scoring's own time and rate, as `celnet heatmap` reports them (a page cannot read
      // its workers' memory, so no peak memory here).
      if (report.summary.scoring) {
        report.summary.scoring.seconds = scoringSeconds;
        report.summary.scoring.windows_per_second = report.summary.windows / Math.max(scoringSeconds, 1e-9);
        if (poolSeconds) report.summary.scoring.pool_seconds = poolSeconds;
        // Which wasm build the workers ran (app.js shows it): 'relaxed-simd' or 'simd128'.
        report.summary.scoring.wasm_simd = document.body.dataset.simd;
      }
      this.setReport(report);
      this.setProgress(null);
    } catch (e) {
      if (!current()) return;
      this.setProgress(null);
      this.showError(`${this.info.name}: ${e.message}`);
    }
  }

  cancel(reason) {
    const running = !$('slide-progress-row').hidden;
    this.run += 1;
    if (reason && running) {
      this.setProgress(null);
      this.root.dataset.cancelled = 'true';
      $('slide-result').textContent = `${reason}: the heatmap shows the windows scored so far.`;
    }
  }

  setProgress(state) {
    const row = $('slide-progress-row');
    row.hidden = state === null;
    if (!state) return;
    const bar = $('slide-progress');
    if (state.text) {
      bar.removeAttribute('value');
      $('slide-progress-text').textContent = state.text;
      return;
    }
    bar.max = Math.max(1, state.total);
    bar.value = state.done;
    const left = state.left === null || state.left === undefined ? '' : ` · about ${formatSeconds(state.left)} left`;
    $('slide-progress-text').textContent = `${state.done} / ${state.total} windows${left}`;
  }

  styleOverlays() {
    const opacity = $('heatmap-opacity').value;
    $('heatmap-opacity-value').textContent = opacity;
    if (this.overlay) this.overlay.setStyle({ opacity: Number(opacity), showTissue: $('show-tissue').checked });
  }

  // The probability of the window nearest the pointer.
  hover(point) {
    if (!this.plan || !this.overlay) return;
    if (point.x < 0 || point.y < 0 || point.x >= this.info.width || point.y >= this.info.height) {
      $('slide-hover').textContent = '';
      return;
    }
    const p = this.overlay.probabilityAt(point.x, point.y);
    if (p === undefined) return;
    const where = `(${Math.round(point.x)}, ${Math.round(point.y)})`;
    $('slide-hover').textContent = Number.isNaN(p)
      ? `${where}: background, not scored`
      : `${where}: probability ${p.toFixed(3)}`;
  }

  // ---------- results ----------

  setReport(report) {
    this.report = report;
    for (const id of ['export-geojson', 'export-csv', 'export-heatmap', 'export-summary']) $(id).disabled = !report;
    $('slide-points').replaceChildren();
    $('slide-lesions').tBodies[0].replaceChildren();
    $('slide-lesions').hidden = true;
    const root = this.root;
    if (!report) {
      for (const key of ['slideScore', 'slideProbability', 'slideCategory', 'lesions', 'windows', 'backend', 'points', 'seconds', 'workers', 'scoring']) delete root.dataset[key];
      $('slide-result').textContent = '';
      $('slide-verdict').textContent = '';
      return;
    }
    const s = report.summary;
    root.dataset.slideScore = String(s.slide_score ?? 0);
    root.dataset.slideProbability = String(s.slide_probability ?? 0);
    root.dataset.slideCategory = s.slide_category;
    root.dataset.lesions = JSON.stringify(s.lesions.map(({ category, diameter_mm, area_mm2, windows, peak }) => ({ category, diameter_mm, area_mm2, windows, peak })));
    $('slide-verdict').textContent = describeVerdict(s, this.facts);
    $('slide-verdict').dataset.label = s.slide_category === 'negative' ? 'normal' : 'metastasis';
    this.showLesions(s.lesions, JSON.parse(report.geojson));
    root.dataset.windows = String(s.windows);
    root.dataset.backend = s.backend;
    root.dataset.seconds = String(s.seconds);
    root.dataset.workers = String(s.workers);
    root.dataset.scoring = JSON.stringify(s.scoring ?? null);
    root.dataset.points = JSON.stringify(s.points.map(({ x, y, probability }) => ({ x, y, probability })));
    $('slide-result').textContent = describeReport(s, this.facts);
    s.points.forEach((point, i) => this.addPoint(point, i));
  }

  // The lesion table (a row goes to the lesion's peak and explains it) and the lesions'
  // outlines from the GeoJSON, drawn over the heatmap in the image's pixels.
  showLesions(lesions, geojson) {
    const body = $('slide-lesions').tBodies[0];
    for (const lesion of lesions) {
      const row = body.insertRow();
      row.tabIndex = 0;
      row.dataset.category = lesion.category;
      const cells = [
        String(lesion.id),
        this.facts.categories[lesion.category],
        `${lesion.diameter_mm.toFixed(2)} mm`,
        `${lesion.area_mm2.toFixed(3)} mm²`,
        `${lesion.peak.probability.toFixed(3)} at (${Math.round(lesion.peak.x)}, ${Math.round(lesion.peak.y)})`,
        String(lesion.windows),
      ];
      for (const text of cells) row.insertCell().textContent = text;
      const go = () => this.goTo(lesion.peak);
      row.addEventListener('click', go);
      row.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') go();
      });
    }
    $('slide-lesions').hidden = lesions.length === 0;
    const outlines = geojson.features.filter((f) => f.properties.name.startsWith('lesion '));
    if (!outlines.length || !this.overlay) return;
    const { width, height } = this.info;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'slide-outlines');
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    for (const feature of outlines) {
      const path = document.createElementNS(SVG, 'path');
      const rings = feature.geometry.coordinates.flat();
      path.setAttribute('d', rings.map((ring) => `M${ring.map(([x, y]) => `${x},${y}`).join('L')}Z`).join(''));
      const [r, g, b] = feature.properties.classification.color;
      Object.assign(path.style, { fill: 'none', stroke: `rgb(${r},${g},${b})`, strokeWidth: '2px', vectorEffect: 'non-scaling-stroke' });
      path.setAttribute('fill-rule', 'evenodd');
      svg.append(path);
    }
    this.overlay.place(svg, 0, 0, width, height);
  }

  // A numbered marker over the image and an entry in the list, both opening the evidence.
  addPoint(point, i) {
    const marker = document.createElement('button');
    marker.type = 'button';
    marker.className = 'slide-marker';
    marker.textContent = String(i + 1);
    marker.title = `Tumour point ${i + 1}: probability ${point.probability.toFixed(3)}`;
    marker.addEventListener('click', () => this.explainAt(point.x, point.y));
    const location = this.viewer.viewport.imageToViewportCoordinates(point.x, point.y);
    this.viewer.addOverlay({ element: marker, location, placement: this.OpenSeadragon.Placement.CENTER });
    const item = document.createElement('li');
    const go = document.createElement('button');
    go.type = 'button';
    go.textContent = `${point.probability.toFixed(3)} at (${Math.round(point.x)}, ${Math.round(point.y)})`;
    go.addEventListener('click', () => this.goTo(point));
    item.append(go);
    $('slide-points').append(item);
  }

  goTo(point) {
    const side = this.plan.window_side;
    const rect = this.viewer.viewport.imageToViewportRectangle(point.x - 2 * side, point.y - 2 * side, 4 * side, 4 * side);
    this.viewer.viewport.fitBounds(rect);
    this.explainAt(point.x, point.y);
  }

  async explainAt(x, y) {
    if (!this.plan) return;
    try {
      const result = await this.call('slideExplain', { x, y });
      const { bounds } = result;
      // Regions come in the window's pixels; the window spans `bounds.size` image pixels.
      const k = bounds.size / result.summary.width;
      for (const region of result.rendered.regions) {
        const box = document.createElement('div');
        box.className = 'slide-region';
        const { x0, y0, x1, y1 } = region.bbox;
        this.overlay.place(box, bounds.x + x0 * k, bounds.y + y0 * k, (x1 - x0) * k, (y1 - y0) * k);
      }
      const frame = document.createElement('div');
      frame.className = 'slide-window';
      this.overlay.place(frame, bounds.x, bounds.y, bounds.size, bounds.size);
      this.explained(result, `${this.info.name} at (${Math.round(x)}, ${Math.round(y)})`);
    } catch (e) {
      this.showError(`${this.info.name}: ${e.message}`);
    }
  }

  download(data, type, suffix) {
    const stem = this.info.name.replace(/\.[^.]*$/, '') || 'slide';
    saveBlob(new Blob([data], { type }), `${stem}${suffix}`);
  }
}

function describePlan(plan, facts) {
  const source = { file: 'from the file', user: 'typed', assumed_glimpse: 'assumed for a glimpse' }[plan.mpp_source] || plan.mpp_source;
  const level = plan.level === null || plan.level === undefined ? '' : ` from pyramid level ${plan.level}`;
  return `Scored at ${plan.mpp.toFixed(4)} µm/px (${source})${level}, resampled by ${plan.factor.toFixed(3)} to the model's ${facts.model_mpp} µm/px; ${plan.windows} windows every ${plan.stride} px in ${(100 * plan.tissue.fraction).toFixed(0)}% tissue.`;
}

function describeReport(s, facts) {
  if (s.slide_score === null || s.slide_score === undefined) return 'No tissue found: nothing was scored.';
  const points = `${s.points.length} tumour point${s.points.length === 1 ? '' : 's'}`;
  const engine = s.backend === 'webgpu' ? 'WebGPU' : `CPU, ${s.workers} worker${s.workers > 1 ? 's' : ''}`;
  return `Slide score ${s.slide_score.toFixed(3)} (highest window) · ${(100 * s.slide_scores.tumour_share).toFixed(1)}% of ${s.windows} windows at ${facts.decision_threshold} or more · ${points} · ${engine}, ${s.seconds.toFixed(1)} s`;
}

const SVG = 'http://www.w3.org/2000/svg';

// The slide-level answer: the calibrated probability and the category.
function describeVerdict(s, facts) {
  if (s.slide_probability === null || s.slide_probability === undefined) return '';
  const n = s.lesions.length;
  const lesions = n ? `; ${n} lesion${n === 1 ? '' : 's'}, largest ${s.lesions[0].diameter_mm.toFixed(2)} mm` : '';
  const called = s.slide_category === 'negative'
    ? (n ? 'Negative (lesions below are candidates)' : 'Negative')
    : `Metastasis: ${facts.categories[s.slide_category]}`;
  return `${called} · slide probability ${s.slide_probability.toFixed(2)}${lesions}`;
}

function formatSeconds(s) {
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  return `${Math.round(s / 60)} min`;
}
