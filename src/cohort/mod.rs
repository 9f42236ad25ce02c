//! A cohort's results merged: one row per slide from the folders `celnet heatmap` (or the
//! cohort workflow) wrote, the slide-level measures over the labelled slides, and an overview
//! page ([`page`]).
//!
//! A slide's folder holds `summary.json` when it was scored. The workflow also writes
//! `status.json` ([`SlideStatus`]) in every slide's folder, which is all a failed slide has: the
//! error and the exit status of `celnet heatmap`. A folder with neither is a slide that has not
//! finished (still running, or killed).

pub mod page;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::{Confusion, auc, roc_curve};
use crate::{CelnetError, Result};

/// The file `celnet heatmap` writes last in its output folder.
pub const SUMMARY: &str = "summary.json";
/// The file the workflow writes in every slide's folder once the slide is done, scored or not.
pub const STATUS: &str = "status.json";

/// `status.json`: how the workflow's job for one slide ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlideStatus {
    /// The slide's file (or DICOM folder), as the cohort listed it.
    pub file: String,
    /// `ok` or `failed`.
    pub status: String,
    /// The error `celnet heatmap` reported, for a failed slide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its exit status (65: unusable input, 66: missing input, 70 and 74: failures that may
    /// pass on another try).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Tries made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The log of every try, for a failed slide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// One slide of the cohort.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlideRow {
    /// The name of the slide's output folder.
    pub name: String,
    /// The output folder, as given.
    pub dir: PathBuf,
    pub file: String,
    /// `ok`, `failed` or `unfinished`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The log of a failed slide's tries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The slide's label where one was given: 1 metastasis, 0 none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// Every slide-level field of `summary.json`: nested objects as `outer.inner`, lists of
    /// numbers joined by spaces, other lists as their length (`lesions`, `points`).
    pub fields: BTreeMap<String, Value>,
}

impl SlideRow {
    /// A number among the summary's fields.
    pub fn number(&self, field: &str) -> Option<f64> {
        self.fields.get(field).and_then(Value::as_f64)
    }

    /// Reads one slide's output folder.
    pub fn read(dir: &Path) -> Result<Self> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let status = match read_optional(&dir.join(STATUS))? {
            Some(text) => Some(serde_json::from_str::<SlideStatus>(&text).map_err(|e| {
                CelnetError::Dataset(format!(
                    "{}: not a slide status: {e}",
                    dir.join(STATUS).display()
                ))
            })?),
            None => None,
        };
        let summary = read_optional(&dir.join(SUMMARY))?;
        let mut row = SlideRow {
            name,
            dir: dir.to_path_buf(),
            file: status.as_ref().map(|s| s.file.clone()).unwrap_or_default(),
            status: "unfinished",
            error: None,
            exit_code: None,
            log: None,
            label: None,
            fields: BTreeMap::new(),
        };
        match (summary, status) {
            (_, Some(status)) if status.status != "ok" => {
                row.status = "failed";
                row.error = Some(status.error.unwrap_or_else(|| "failed".into()));
                row.exit_code = status.exit_code;
                row.log = status.log;
            }
            (Some(text), _) => {
                let summary: Value = serde_json::from_str(&text).map_err(|e| {
                    CelnetError::Dataset(format!(
                        "{}: not a summary: {e}",
                        dir.join(SUMMARY).display()
                    ))
                })?;
                let Value::Object(summary) = summary else {
                    return Err(CelnetError::Dataset(format!(
                        "{}: not a summary: not a JSON object",
                        dir.join(SUMMARY).display()
                    )));
                };
                row.status = "ok";
                if let Some(Value::String(file)) = summary.get("file") {
                    row.file = file.clone();
                }
                flatten("", &Value::Object(summary), &mut row.fields);
                row.fields.remove("file");
            }
            (None, _) => {
                row.error = Some(format!("no {SUMMARY}: the slide has not finished"));
            }
        }
        Ok(row)
    }
}

/// Fields that describe a run's files rather than the slide.
const NOT_SLIDE_LEVEL: [&str; 1] = ["files"];

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if prefix.is_empty() && NOT_SLIDE_LEVEL.contains(&key.as_str()) {
                    continue;
                }
                flatten(&format!("{prefix}{key}."), value, out);
            }
        }
        other => {
            let key = prefix.trim_end_matches('.').to_string();
            let value = match other {
                Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
                    Value::String(
                        items
                            .iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                }
                Value::Array(items) => Value::from(items.len()),
                scalar => scalar.clone(),
            };
            out.insert(key, value);
        }
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CelnetError::io(path, e)),
    }
}

/// Slide labels from a CSV file with a `label` column and a `name` column (the slide's output
/// folder name) or a `path` column (matched by its file name without extension, as the workflow
/// names folders). Labels are 1/0, true/false, tumour/tumor/normal or positive/negative; an
/// empty label is no label.
pub fn read_labels(path: &Path) -> Result<HashMap<String, u8>> {
    let bad = |message: String| CelnetError::Dataset(format!("{}: {message}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let label = column("label").ok_or_else(|| bad("no `label` column".into()))?;
    let key = column("name")
        .map(|i| (i, false))
        .or_else(|| column("path").map(|i| (i, true)))
        .ok_or_else(|| bad("no `name` or `path` column".into()))?;
    let mut labels = HashMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let text = record.get(label).unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let value = parse_label(text)
            .ok_or_else(|| bad(format!("row {}: {text:?} is not a label", line + 2)))?;
        let raw = record.get(key.0).unwrap_or("").trim();
        let name = if key.1 {
            slide_name(Path::new(raw))
        } else {
            raw.to_string()
        };
        labels.insert(name, value);
    }
    Ok(labels)
}

fn parse_label(text: &str) -> Option<u8> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "tumour" | "tumor" | "positive" | "metastasis" => Some(1),
        "0" | "false" | "normal" | "negative" => Some(0),
        _ => None,
    }
}

/// The name a slide's outputs go under: its file name without the extension (a DICOM folder's
/// name as it is).
pub fn slide_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match (name, path.extension()) {
        (Some(name), Some(_)) if !path.is_dir() => name
            .rsplit_once('.')
            .map_or(name.clone(), |(stem, _)| stem.to_string()),
        (Some(name), _) => name,
        (None, _) => path.display().to_string(),
    }
}

/// Slide-level measures over the labelled slides that were scored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabelledMeasures {
    /// Labelled slides, and those among them that were scored (the measures' slides).
    pub labelled: usize,
    pub scored: usize,
    pub positives: usize,
    pub negatives: usize,
    /// AUC of the slide probability (the slide model's), and of the slide score (the maximum
    /// window probability); absent with one class only.
    pub auc_probability: Option<f64>,
    pub auc_score: Option<f64>,
    /// The ROC curve of the slide probability, (false-positive rate, true-positive rate).
    pub roc_probability: Vec<(f64, f64)>,
    /// The operating threshold on the slide probability, and the calls at it.
    pub threshold: f64,
    pub confusion: Confusion,
    pub sensitivity: f64,
    pub specificity: f64,
    pub accuracy: f64,
}

/// The merged results of a cohort.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cohort {
    pub slides: usize,
    pub ok: usize,
    pub failed: usize,
    pub unfinished: usize,
    /// The weights and backends the slides were scored with (one each in a consistent cohort).
    pub weights: BTreeSet<String>,
    pub backends: BTreeSet<String>,
    /// Median seconds per scored slide, and their sum.
    pub median_seconds: Option<f64>,
    pub total_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measures: Option<LabelledMeasures>,
    pub rows: Vec<SlideRow>,
}

impl Cohort {
    /// Reads every slide folder in `dirs` (sorted by name, so the outputs do not depend on the
    /// order given), with their labels where `labels` has them; `threshold` is the operating
    /// threshold on the slide probability.
    pub fn read(
        dirs: &[PathBuf],
        labels: Option<&HashMap<String, u8>>,
        threshold: f64,
    ) -> Result<Self> {
        let mut rows = dirs
            .iter()
            .map(|d| SlideRow::read(d))
            .collect::<Result<Vec<_>>>()?;
        rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.dir.cmp(&b.dir)));
        if let Some(labels) = labels {
            for row in &mut rows {
                let by_file = (!row.file.is_empty()).then(|| slide_name(Path::new(&row.file)));
                row.label = labels
                    .get(&row.name)
                    .or_else(|| by_file.and_then(|name| labels.get(&name)))
                    .copied();
            }
        }
        let count = |status| rows.iter().filter(|r| r.status == status).count();
        let text_field = |field: &str| -> BTreeSet<String> {
            rows.iter()
                .filter_map(|r| {
                    r.fields
                        .get(field)
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .collect()
        };
        let mut seconds: Vec<f64> = rows.iter().filter_map(|r| r.number("seconds")).collect();
        seconds.sort_by(f64::total_cmp);
        let measures = labels.map(|_| measures(&rows, threshold));
        Ok(Cohort {
            slides: rows.len(),
            ok: count("ok"),
            failed: count("failed"),
            unfinished: count("unfinished"),
            weights: text_field("weights"),
            backends: text_field("backend"),
            median_seconds: (!seconds.is_empty()).then(|| median(&seconds)),
            total_seconds: seconds.iter().sum(),
            measures,
            rows,
        })
    }

    /// `cohort.csv`: one row per slide, the leading columns first, then every other summary
    /// field in name order.
    pub fn csv(&self) -> Result<String> {
        let mut extra: BTreeSet<&str> = BTreeSet::new();
        for row in &self.rows {
            extra.extend(row.fields.keys().map(String::as_str));
        }
        let leading: Vec<&str> = LEADING_FIELDS.to_vec();
        extra.retain(|k| !leading.contains(k));
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["name", "file", "status", "error", "exit_code", "label"];
        header.extend(&leading);
        header.extend(&extra);
        let csv_error = |e: csv::Error| CelnetError::Dataset(format!("cohort.csv: {e}"));
        writer.write_record(&header).map_err(csv_error)?;
        for row in &self.rows {
            let mut record = vec![
                row.name.clone(),
                row.file.clone(),
                row.status.to_string(),
                row.error.clone().unwrap_or_default(),
                row.exit_code.map_or(String::new(), |c| c.to_string()),
                row.label.map_or(String::new(), |l| l.to_string()),
            ];
            for field in leading.iter().chain(&extra) {
                record.push(row.fields.get(*field).map_or(String::new(), cell));
            }
            writer.write_record(&record).map_err(csv_error)?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| CelnetError::Dataset(format!("cohort.csv: {e}")))?;
        Ok(String::from_utf8(bytes).expect("CSV of UTF-8 text"))
    }
}

/// The summary fields that come right after the status columns in `cohort.csv`.
const LEADING_FIELDS: [&str; 12] = [
    "slide_probability",
    "slide_score",
    "slide_category",
    "lesions",
    "points",
    "mpp",
    "mpp_source",
    "tissue_fraction",
    "windows",
    "seconds",
    "backend",
    "weights",
];

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn median(sorted: &[f64]) -> f64 {
    let m = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[m]
    } else {
        (sorted[m - 1] + sorted[m]) / 2.0
    }
}

fn measures(rows: &[SlideRow], threshold: f64) -> LabelledMeasures {
    let labelled: Vec<&SlideRow> = rows.iter().filter(|r| r.label.is_some()).collect();
    // A scored slide without tissue has no probability: it is called negative, with 0.
    let scored: Vec<&SlideRow> = labelled
        .iter()
        .copied()
        .filter(|r| r.status == "ok")
        .collect();
    let labels: Vec<u8> = scored.iter().map(|r| r.label.unwrap_or(0)).collect();
    let value = |r: &SlideRow, field: &str| r.number(field).unwrap_or(0.0);
    let probabilities: Vec<f32> = scored
        .iter()
        .map(|&r| value(r, "slide_probability") as f32)
        .collect();
    let scores: Vec<f32> = scored
        .iter()
        .map(|&r| value(r, "slide_score") as f32)
        .collect();
    // Called in f64, as the slide model calls them: in f32 a probability just under the
    // threshold could round onto it.
    let calls: Vec<f64> = scored
        .iter()
        .map(|&r| value(r, "slide_probability"))
        .collect();
    let confusion = Confusion::at(&calls, &labels, threshold);
    let positives = labels.iter().filter(|&&l| l == 1).count();
    LabelledMeasures {
        labelled: labelled.len(),
        scored: scored.len(),
        positives,
        negatives: labels.len() - positives,
        auc_probability: auc(&probabilities, &labels),
        auc_score: auc(&scores, &labels),
        roc_probability: if labels.is_empty() {
            Vec::new()
        } else {
            roc_curve(&probabilities, &labels)
        },
        threshold,
        sensitivity: confusion.sensitivity(),
        specificity: confusion.specificity(),
        accuracy: confusion.accuracy(),
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, label: Option<u8>, probability: Option<f64>, score: f64) -> SlideRow {
        let mut fields = BTreeMap::new();
        if let Some(p) = probability {
            fields.insert("slide_probability".into(), Value::from(p));
        }
        fields.insert("slide_score".into(), Value::from(score));
        SlideRow {
            name: name.into(),
            dir: PathBuf::from(name),
            file: format!("{name}.svs"),
            status: "ok",
            error: None,
            exit_code: None,
            log: None,
            label,
            fields,
        }
    }

    #[test]
    fn summaries_flatten_to_slide_level_columns() {
        let summary = serde_json::json!({
            "file": "a.svs", "mpp": 0.5, "grid": [3, 4], "slide_score": null,
            "scoring": {"tiles": 2, "seconds": 1.5}, "lesions": [{"id": 1}, {"id": 2}], "points": [],
            "files": ["summary.json"],
        });
        let mut fields = BTreeMap::new();
        flatten("", &summary, &mut fields);
        assert_eq!(fields["grid"], "3 4");
        assert_eq!(fields["scoring.tiles"], 2);
        assert_eq!(fields["scoring.seconds"], 1.5);
        assert_eq!(fields["lesions"], 2);
        assert_eq!(fields["points"], 0);
        assert_eq!(fields["slide_score"], Value::Null);
        assert!(!fields.contains_key("files"));
    }

    #[test]
    fn slide_names_drop_the_extension_only() {
        assert_eq!(slide_name(Path::new("/data/CMU-1.svs")), "CMU-1");
        assert_eq!(slide_name(Path::new("a.ome.tif")), "a.ome");
        assert_eq!(slide_name(Path::new("study")), "study");
    }

    #[test]
    fn labels_take_the_usual_spellings() {
        for (text, label) in [
            ("1", 1),
            ("Tumor", 1),
            ("tumour", 1),
            ("positive", 1),
            ("0", 0),
            ("Normal", 0),
        ] {
            assert_eq!(parse_label(text), Some(label), "{text}");
        }
        assert_eq!(parse_label("maybe"), None);
    }

    /// Four scored slides by hand: probabilities 0.9 (tumour), 0.6 (normal), 0.4 (tumour), 0.1
    /// (normal). Of the four tumour-normal pairs, three are ordered right: AUC 0.75. At 0.5:
    /// one true positive, one false positive, one false negative, one true negative.
    #[test]
    fn measures_by_hand() {
        let rows = vec![
            row("a", Some(1), Some(0.9), 0.99),
            row("b", Some(0), Some(0.6), 0.2),
            row("c", Some(1), Some(0.4), 0.98),
            row("d", Some(0), Some(0.1), 0.1),
            row("unlabelled", None, Some(0.5), 0.5),
            SlideRow {
                status: "failed",
                ..row("failed", Some(1), None, 0.0)
            },
        ];
        let m = measures(&rows, 0.5);
        assert_eq!(
            (m.labelled, m.scored, m.positives, m.negatives),
            (5, 4, 2, 2)
        );
        assert_eq!(m.auc_probability, Some(0.75));
        assert_eq!(m.auc_score, Some(1.0));
        let c = m.confusion;
        assert_eq!(
            (
                c.true_positive,
                c.false_positive,
                c.false_negative,
                c.true_negative
            ),
            (1, 1, 1, 1)
        );
        assert_eq!((m.sensitivity, m.specificity, m.accuracy), (0.5, 0.5, 0.5));
        assert_eq!(m.roc_probability.first(), Some(&(0.0, 0.0)));
        assert_eq!(m.roc_probability.last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn a_probability_at_the_threshold_is_called_positive() {
        let m = measures(
            &[
                row("a", Some(1), Some(0.5), 0.5),
                row("b", Some(0), Some(0.2), 0.2),
            ],
            0.5,
        );
        assert_eq!(m.confusion.true_positive, 1);
    }
}
