//! A small parser of the Prometheus text format (0.0.4): enough to check /metrics line by
//! line and to read sample values.

use std::collections::BTreeMap;

use crate::harness::Portico;
use crate::harness::http::http;

#[derive(Debug)]
pub(super) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
pub(super) struct Scrape {
    /// Metric family -> its `# TYPE`.
    pub(super) types: BTreeMap<String, String>,
    pub(super) samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample `name` with exactly `labels`.
    pub(super) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_float(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("{text:?} is not a float")),
    }
}

/// `{a="x",b="y\"z"}` -> labels, and the rest of the line after `}`.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once('=').ok_or("a label without '='")?;
        let name = name.trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = after
            .strip_prefix('"')
            .ok_or("label value not quoted")?
            .chars();
        let mut value = String::new();
        loop {
            match chars.next().ok_or("unterminated label value")? {
                '"' => break,
                '\\' => match chars.next().ok_or("dangling escape")? {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                c => value.push(c),
            }
        }
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} given twice"));
        }
        rest = chars.as_str().trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses Prometheus text exposition format 0.0.4; any line that does not conform is an error.
fn parse_prometheus(text: &str) -> Result<Scrape, String> {
    const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];
    let mut scrape = Scrape::default();
    for (i, line) in text.lines().enumerate() {
        let err = |why: String| format!("line {}: {why}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            match words.next() {
                Some("TYPE") => {
                    let name = words
                        .next()
                        .ok_or_else(|| err("TYPE without a name".into()))?;
                    let kind = words
                        .next()
                        .ok_or_else(|| err("TYPE without a type".into()))?;
                    if !is_metric_name(name) || !TYPES.contains(&kind) || words.next().is_some() {
                        return Err(err("bad TYPE line".into()));
                    }
                    if scrape
                        .types
                        .insert(name.to_owned(), kind.to_owned())
                        .is_some()
                    {
                        return Err(err(format!("second TYPE for {name}")));
                    }
                }
                Some("HELP") => {
                    let name = words
                        .next()
                        .ok_or_else(|| err("HELP without a name".into()))?;
                    if !is_metric_name(name) {
                        return Err(err("bad HELP name".into()));
                    }
                }
                _ => {} // any other comment
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value =
            parse_float(fields.next().ok_or_else(|| err("no value".into()))?).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing text".into()));
        }
        // Every sample belongs to a family with a TYPE given before it.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| {
                scrape
                    .types
                    .get(*base)
                    .is_some_and(|t| t == "histogram" || t == "summary")
            })
            .unwrap_or(name);
        if !scrape.types.contains_key(family) {
            return Err(err(format!("sample of {name} without a # TYPE before it")));
        }
        scrape.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(scrape)
}

pub(super) fn scrape(portico: &Portico) -> Scrape {
    let r = http(portico.admin_addr(), "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "{r:?}"
    );
    parse_prometheus(&r.body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"))
}

#[test]
fn the_prometheus_parser_rejects_what_it_should() {
    let ok = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"\"} 3\n\
              # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    let s = parse_prometheus(ok).unwrap();
    assert_eq!(s.value("x_total", &[("a", "1"), ("b", "q\"")]), Some(3.0));
    assert_eq!(s.value("h_bucket", &[("le", "+Inf")]), Some(1.0));
    for bad in [
        "x 1\n",                           // no TYPE
        "# TYPE x countr\nx 1\n",          // unknown type
        "# TYPE x counter\nx one\n",       // not a float
        "# TYPE x counter\nx{a=1} 1\n",    // unquoted label
        "# TYPE x counter\nx{a=\"1\" 1\n", // unterminated labels
        "# TYPE x counter\n1x 1\n",        // bad name
        "# TYPE x counter\nx 1 2 3\n",     // trailing text
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}
