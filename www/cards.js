// Result cards: one per explained image (a glimpse, or a window of the slide view), with its
// score, its panels (input, overlay, regions and every map kind the crate names) and exports.

// Composite panels drawn here; the map panels (one per map kind) come from the crate.
const COMPOSITES = [
  ['input', 'Input'],
  ['overlay', 'Evidence overlay'],
  ['regions', 'Regions'],
];

const stem = (name) => name.replace(/\.[^.]*$/, '') || 'image';

export class Cards {
  // `facts`: the crate's (map kinds); `container`: where cards go, newest first; `opacity()`:
  // the overlay opacity the controls set.
  constructor({ facts, container, opacity }) {
    this.facts = facts;
    this.container = container;
    this.opacity = opacity;
    this.panels = [...COMPOSITES, ...facts.map_kinds.map((k) => [k.name, k.title])];
  }

  // Draws `result` ({name, summary, rendered, input, truth?}), building its card the first time.
  draw(result) {
    if (!result.card) this.build(result);
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
    this.paint(result);
  }

  build(result) {
    const { width, height } = result.summary;
    const card = document.createElement('article');
    card.className = 'card';
    const element = (tag, className) => {
      const e = document.createElement(tag);
      if (className) e.className = className;
      return e;
    };
    const title = element('h2');
    const verdict = element('p', 'verdict');
    const meta = element('p', 'meta');
    const regions = element('p', 'regions');
    const panels = element('div', 'panels');
    result.canvases = {};
    for (const [key, label] of this.panels) {
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
    const actions = element('div', 'actions');
    const button = (text, onClick) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = text;
      b.addEventListener('click', onClick);
      actions.append(b);
    };
    button('Overlay PNG', () => downloadCanvas(result.canvases.overlay, `${stem(result.name)}-overlay.png`));
    button('Maps PNG', () => downloadCanvas(this.sheet(result), `${stem(result.name)}-maps.png`));
    button('JSON', () => downloadJson(exported(result, true), `${stem(result.name)}-celm.json`));
    card.append(title, verdict, meta, regions, panels, actions);
    result.card = card;
    result.parts = { title, verdict, meta, regions };
    this.container.prepend(card);
  }

  paint(result) {
    const { width, height } = result.summary;
    const layers = result.rendered.layers;
    const input = canvasFor(width, height);
    input.getContext('2d').putImageData(result.input, 0, 0);
    const heat = layerCanvas(layers.heat, width, height);
    const outline = layerCanvas(layers.outline, width, height);
    const opacity = this.opacity();
    const draw = (key, painter) => {
      const ctx = result.canvases[key].getContext('2d');
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
    for (const { name } of this.facts.map_kinds) {
      draw(name, (ctx) => ctx.putImageData(new ImageData(layers[name], width, height), 0, 0));
    }
  }

  // All panels side by side with captions, for a report.
  sheet(result) {
    const { width, height } = result.summary;
    const caption = 18;
    const out = canvasFor(width * this.panels.length, height + caption);
    const ctx = out.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = '#000';
    ctx.font = '12px sans-serif';
    this.panels.forEach(([key, label], i) => {
      ctx.drawImage(result.canvases[key], i * width, 0);
      ctx.fillText(label, i * width + 2, height + 13);
    });
    return out;
  }
}

// The same fields as the CLI's explain.json where they mean the same thing.
export function exported(result, withMap) {
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

function describeRegions(regions) {
  if (regions.length === 0) return 'No evidence region at this threshold.';
  const parts = regions.slice(0, 3).map(
    (r) => `${r.area} px at (${r.bbox.x0}, ${r.bbox.y0}), mean evidence ${r.mean_evidence.toFixed(2)}`,
  );
  const more = regions.length > 3 ? `, and ${regions.length - 3} more` : '';
  return `${regions.length} region${regions.length > 1 ? 's' : ''}: ${parts.join('; ')}${more}.`;
}

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

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function downloadCanvas(canvas, name) {
  canvas.toBlob((blob) => saveBlob(blob, name), 'image/png');
}

export function downloadJson(value, name) {
  saveBlob(new Blob([JSON.stringify(value, null, 1)], { type: 'application/json' }), name);
}
