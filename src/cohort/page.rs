//! The cohort's overview page, `index.html`: one self-contained file that works offline (no
//! scripts or styles from elsewhere), with each slide's heatmap overlay as a thumbnail linking
//! to its outputs, sortable by any column, and the ROC curve and calls where labels were given.

use std::fmt::Write;
use std::path::Path;

use super::{Cohort, LabelledMeasures, SlideRow};

/// The page for `cohort`, to be written in the folder `out` (the links are relative to it).
pub fn render(cohort: &Cohort, out: &Path) -> String {
    let mut html = String::new();
    let title = format!("Cohort of {} slides", cohort.slides);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let _ = writeln!(
        html,
        "<p>{} scored, {} failed, {} unfinished. Weights: {}. Backend: {}.{}</p>",
        cohort.ok,
        cohort.failed,
        cohort.unfinished,
        escape(&joined(&cohort.weights)),
        escape(&joined(&cohort.backends)),
        cohort.median_seconds.map_or(String::new(), |s| format!(
            " Median {s:.1} s per slide, {:.0} s in all.",
            cohort.total_seconds
        ))
    );
    if let Some(measures) = &cohort.measures {
        measures_section(&mut html, measures);
    }
    html.push_str(
        "<p>Click a column's name to sort by it.</p>\n<table id=\"slides\">\n<thead><tr>\
         <th>Heatmap</th><th data-sort=\"text\">Slide</th><th data-sort=\"number\">Label</th>\
         <th data-sort=\"text\">Status</th><th data-sort=\"number\">Slide probability</th>\
         <th data-sort=\"number\">Slide score</th><th data-sort=\"text\">Category</th>\
         <th data-sort=\"number\">Lesions</th><th data-sort=\"number\">Points</th>\
         <th data-sort=\"number\">µm/px</th><th data-sort=\"number\">Seconds</th>\
         <th>Outputs</th></tr></thead>\n<tbody>\n",
    );
    for row in &cohort.rows {
        slide_row(&mut html, row, out);
    }
    let _ = write!(
        html,
        "</tbody>\n</table>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    html
}

fn joined(values: &std::collections::BTreeSet<String>) -> String {
    if values.is_empty() {
        "none".into()
    } else {
        values.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn measures_section(html: &mut String, m: &LabelledMeasures) {
    let auc = |a: Option<f64>| a.map_or("- (one class only)".into(), |a| format!("{a:.3}"));
    let c = &m.confusion;
    let _ = write!(
        html,
        "<h2>Labelled slides</h2>\n<p>{} labelled, {} of them scored ({} with metastasis, {} \
         without). Slide AUC: probability {}, slide score (maximum window) {}.</p>\n\
         <div class=\"measures\">{}\n<table class=\"confusion\"><caption>Calls at slide \
         probability ≥ {:.3}</caption>\n<tr><th></th><th>called positive</th><th>called \
         negative</th></tr>\n<tr><th>metastasis</th><td>{}</td><td>{}</td></tr>\n\
         <tr><th>none</th><td>{}</td><td>{}</td></tr>\n</table>\n<p>Sensitivity {:.3}, \
         specificity {:.3}, accuracy {:.3}.</p></div>\n",
        m.labelled,
        m.scored,
        m.positives,
        m.negatives,
        auc(m.auc_probability),
        auc(m.auc_score),
        roc_svg(&m.roc_probability),
        m.threshold,
        c.true_positive,
        c.false_negative,
        c.false_positive,
        c.true_negative,
        m.sensitivity,
        m.specificity,
        m.accuracy
    );
}

/// The ROC curve as an inline SVG: false-positive rate across, true-positive rate up.
fn roc_svg(points: &[(f64, f64)]) -> String {
    const SIDE: f64 = 200.0;
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", x * SIDE, (1.0 - y) * SIDE))
        .collect();
    format!(
        "<svg class=\"roc\" viewBox=\"-30 -10 240 250\" width=\"240\" height=\"250\" \
         role=\"img\" aria-label=\"ROC curve of the slide probability\">\
         <rect width=\"{SIDE}\" height=\"{SIDE}\" fill=\"none\" stroke=\"#999\"/>\
         <line x1=\"0\" y1=\"{SIDE}\" x2=\"{SIDE}\" y2=\"0\" stroke=\"#ccc\"/>\
         <polyline points=\"{}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\"/>\
         <text x=\"100\" y=\"225\" text-anchor=\"middle\">false-positive rate</text>\
         <text x=\"-15\" y=\"100\" text-anchor=\"middle\" transform=\"rotate(-90 -15 100)\">\
         true-positive rate</text></svg>",
        path.join(" ")
    )
}

fn slide_row(html: &mut String, row: &SlideRow, out: &Path) {
    let link = |name: &str| relative_link(&row.dir.join(name), out);
    let number = |field: &str, digits: usize| -> (String, String) {
        row.number(field)
            .map_or((String::new(), String::new()), |v| {
                (v.to_string(), format!("{v:.digits$}"))
            })
    };
    let text = |field: &str| {
        row.fields
            .get(field)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let thumbnail = if row.status == "ok" {
        let overlay = link("overlay.png");
        format!(
            "<a href=\"{overlay}\"><img src=\"{overlay}\" alt=\"heatmap of {}\" loading=\"lazy\"></a>",
            escape(&row.name)
        )
    } else {
        String::new()
    };
    let status = match &row.error {
        Some(error) => format!("{}: {}", row.status, escape(error)),
        None => row.status.to_string(),
    };
    let outputs = if row.status == "ok" {
        [
            "summary.json",
            "heatmap.png",
            "tiles.csv",
            "heatmap.geojson",
        ]
        .map(|name| format!("<a href=\"{}\">{name}</a>", link(name)))
        .join(" ")
    } else {
        row.log.as_deref().map_or(String::new(), |log| {
            format!("<a href=\"{}\">log</a>", relative_link(Path::new(log), out))
        })
    };
    let label = row.label.map_or(String::new(), |l| l.to_string());
    let mut cells = vec![
        (String::new(), thumbnail),
        (
            row.name.clone(),
            format!(
                "<span title=\"{}\">{}</span>",
                escape(&row.file),
                escape(&row.name)
            ),
        ),
        (label.clone(), label),
        (row.status.to_string(), status),
    ];
    for (field, digits) in [("slide_probability", 3), ("slide_score", 3)] {
        cells.push(number(field, digits));
    }
    cells.push((text("slide_category"), text("slide_category")));
    for (field, digits) in [("lesions", 0), ("points", 0), ("mpp", 3), ("seconds", 1)] {
        cells.push(number(field, digits));
    }
    cells.push((String::new(), outputs));
    html.push_str(if row.status == "ok" {
        "<tr>"
    } else {
        "<tr class=\"failed\">"
    });
    for (value, shown) in cells {
        let _ = write!(html, "<td data-value=\"{}\">{shown}</td>", escape(&value));
    }
    html.push_str("</tr>\n");
}

/// `path` as a link from a page in the folder `out`: relative where both are on one tree, so
/// that the folder can be moved or copied whole.
fn relative_link(path: &Path, out: &Path) -> String {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let target = absolute(path);
    let relative = pathdiff::diff_paths(&target, absolute(out)).unwrap_or(target);
    let text = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    escape(&percent_encode(&text))
}

/// The characters of a path that would end or change a URL.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '#' | '?' | ' ' | '"' | '<' | '>' => {
                let mut buffer = [0u8; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    let _ = write!(encoded, "%{byte:02X}");
                }
            }
            c => encoded.push(c),
        }
    }
    encoded
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}\
th[data-sort]{cursor:pointer;background:#f4f4f4}th[data-sort]:hover{background:#e8e8e8}\
img{width:160px;display:block}tr.failed{background:#fdecea}\
.measures{display:flex;gap:2em;align-items:flex-start}.confusion caption{text-align:left}\
svg text{font-size:11px}";

/// Sorts the table by the clicked column (again: the other way), on each cell's `data-value`;
/// first by slide probability, highest first.
const SCRIPT: &str = r#"
const table = document.getElementById('slides');
const headers = [...table.tHead.rows[0].cells];
function sortBy(index, descending) {
  const numeric = headers[index].dataset.sort === 'number';
  const key = (row) => row.cells[index].dataset.value;
  const rows = [...table.tBodies[0].rows];
  rows.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    if (x === '' || y === '') return (x === '') - (y === '');
    const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
    return descending ? -order : order;
  });
  table.tBodies[0].append(...rows);
  headers.forEach((h, i) => h.setAttribute('aria-sort', i === index ? (descending ? 'descending' : 'ascending') : 'none'));
}
headers.forEach((header, index) => {
  if (!header.dataset.sort) return;
  header.addEventListener('click', () => sortBy(index, header.getAttribute('aria-sort') === 'ascending'));
});
sortBy(4, true);
"#;
