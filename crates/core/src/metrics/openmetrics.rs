//! The OpenMetrics 1.0 text format, for scrapes that ask for it (issue 17): the same
//! families as the classic format, plus exemplars — the trace id of a recent sampled
//! check — on the decision-latency buckets, so a latency spike on a dashboard links to a
//! trace of a check that fell in that bucket.
//!
//! The `prometheus` crate renders only the classic format and has no exemplars, and the
//! crates that do (`prometheus-client`) would mean replacing every family and its
//! registry; the format is small, so it is written here over the gathered families.
//! Series names are kept as the classic format has them: a counter `x_total` becomes the
//! family `x` with the sample `x_total`; a counter not ending in `_total` (none today)
//! is written as `unknown` under its own name rather than renamed.

use std::fmt::Write as _;

use prometheus::proto::{Metric, MetricFamily, MetricType};

/// The Content-Type of an OpenMetrics answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a scrape's `Accept` header asks for OpenMetrics (Prometheus sends it first in
/// its list when exemplar storage is on; a plain `curl` or `*/*` gets the classic format).
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            part.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/openmetrics-text")
            })
        })
    })
}

/// A trace id seen in one bucket: the check's duration and when it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The trace id, 16 bytes (written as 32 lower-case hex digits).
    pub trace_id: [u8; 16],
    /// Seconds, the observed duration.
    pub value: f64,
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
}

/// The exemplar for bucket `bucket` (an index into the histogram's buckets, the last one
/// being `+Inf`) of `metric` in the family `family`, if there is one.
pub trait Exemplars {
    fn exemplar(&self, family: &str, metric: &Metric, bucket: usize) -> Option<Exemplar>;
}

/// Writes `families` in the OpenMetrics text format, ending with `# EOF`.
pub fn encode(families: &[MetricFamily], exemplars: &dyn Exemplars) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for mf in families {
        family(&mut out, mf, exemplars);
    }
    out.push_str("# EOF\n");
    out
}

fn family(out: &mut String, mf: &MetricFamily, exemplars: &dyn Exemplars) {
    let name = mf.name();
    let kind = mf.get_field_type();
    let (family, kind_name) = match kind {
        MetricType::COUNTER => match name.strip_suffix("_total") {
            Some(base) => (base, "counter"),
            None => (name, "unknown"),
        },
        MetricType::GAUGE => (name, "gauge"),
        MetricType::HISTOGRAM => (name, "histogram"),
        MetricType::SUMMARY => (name, "summary"),
        // Nothing here registers one, and the crate is removing their accessors.
        MetricType::UNTYPED => return,
    };
    let _ = writeln!(out, "# TYPE {family} {kind_name}");
    if !mf.help().is_empty() {
        let _ = writeln!(out, "# HELP {family} {}", escape(mf.help()));
    }
    for m in mf.get_metric() {
        match kind {
            MetricType::COUNTER => sample(out, name, m, None, m.get_counter().get_value()),
            MetricType::GAUGE => sample(out, name, m, None, m.get_gauge().get_value()),
            MetricType::UNTYPED => {}
            MetricType::HISTOGRAM => histogram(out, name, m, exemplars),
            MetricType::SUMMARY => {
                let s = m.get_summary();
                for q in s.get_quantile() {
                    let label = ("quantile", bound(q.quantile()));
                    sample(out, name, m, Some(label), q.value());
                }
                sample(out, &format!("{name}_sum"), m, None, s.sample_sum());
                sample(
                    out,
                    &format!("{name}_count"),
                    m,
                    None,
                    s.sample_count() as f64,
                );
            }
        }
    }
}

fn histogram(out: &mut String, name: &str, m: &Metric, exemplars: &dyn Exemplars) {
    let h = m.get_histogram();
    let bucket_name = format!("{name}_bucket");
    let mut inf_seen = false;
    let buckets = h.get_bucket();
    for (i, b) in buckets.iter().enumerate() {
        let le = b.upper_bound();
        inf_seen |= le.is_infinite() && le.is_sign_positive();
        let count = b.cumulative_count() as f64;
        unterminated(out, &bucket_name, m, Some(("le", bound(le))), count);
        with_exemplar(out, exemplars.exemplar(name, m, i));
    }
    if !inf_seen {
        let count = h.get_sample_count() as f64;
        unterminated(out, &bucket_name, m, Some(("le", "+Inf".into())), count);
        with_exemplar(out, exemplars.exemplar(name, m, buckets.len()));
    }
    sample(out, &format!("{name}_sum"), m, None, h.get_sample_sum());
    sample(
        out,
        &format!("{name}_count"),
        m,
        None,
        h.get_sample_count() as f64,
    );
}

/// One sample line.
fn sample(out: &mut String, name: &str, m: &Metric, extra: Option<(&str, String)>, value: f64) {
    unterminated(out, name, m, extra, value);
    out.push('\n');
}

/// A sample without its newline, for a bucket whose exemplar follows on the same line.
fn unterminated(
    out: &mut String,
    name: &str,
    m: &Metric,
    extra: Option<(&str, String)>,
    value: f64,
) {
    out.push_str(name);
    let labels = m.get_label();
    if !labels.is_empty() || extra.is_some() {
        let mut sep = '{';
        for lp in labels {
            let _ = write!(out, "{sep}{}=\"{}\"", lp.name(), escape(lp.value()));
            sep = ',';
        }
        if let Some((k, v)) = extra {
            let _ = write!(out, "{sep}{k}=\"{}\"", escape(&v));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&number(value));
}

fn with_exemplar(out: &mut String, e: Option<Exemplar>) {
    if let Some(e) = e {
        out.push_str(" # {trace_id=\"");
        for b in e.trace_id {
            let _ = write!(out, "{b:02x}");
        }
        let _ = write!(out, "\"}} {} {:.3}", number(e.value), e.timestamp);
    }
    out.push('\n');
}

/// A number as OpenMetrics spells it (`+Inf`, `-Inf`, `NaN`; Rust's `inf` is not valid).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// A bucket bound or quantile in canonical form: integral values keep a `.0` (`1.0`).
fn bound(v: f64) -> String {
    let s = number(v);
    if v.is_finite() && !s.contains(['.', 'e']) {
        format!("{s}.0")
    } else {
        s
    }
}

/// Escapes `\`, `"` and newlines, as OpenMetrics asks of label values and help text.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    let mut s = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.into()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::{Metrics, Transport};

    #[test]
    fn accept_headers_that_ask_for_openmetrics() {
        let cases = [
            (None, false),
            (Some("*/*"), false),
            (Some("text/plain;version=0.0.4"), false),
            (Some("application/openmetrics-text"), true),
            (
                Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                true,
            ),
            (Some("text/plain, Application/OpenMetrics-Text; q=0.9"), true),
            (Some("application/openmetrics-textual"), false),
        ];
        for (accept, want) in cases {
            assert_eq!(wanted(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn counters_keep_their_series_names_and_the_output_ends_with_eof() {
        let m = Metrics::new(&["main"]).unwrap();
        m.decision(Transport::Grpc, None, None, Duration::from_micros(80));
        let text = m.render_openmetrics();
        assert!(
            text.contains("# TYPE tokengate_decisions counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "tokengate_decisions_total{decision=\"allow\",reason=\"none\",transport=\"grpc\"} 1\n"
        ));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
        // Every classic series is still there under the same name.
        for line in m.render().lines().filter(|l| !l.starts_with('#')) {
            let series = line.rsplit_once(' ').map(|(s, _)| s).unwrap_or(line);
            let series = series.replace("le=\"1\"", "le=\"1.0\"");
            assert!(text.contains(&format!("{series} ")), "{series} missing");
        }
    }

    #[test]
    fn a_sampled_checks_trace_id_lands_on_its_bucket_only() {
        let m = Metrics::new(&["main"]).unwrap();
        m.decision(Transport::Grpc, None, None, Duration::from_micros(300));
        m.exemplar(Transport::Grpc, Duration::from_micros(300), [0xab; 16]);
        let text = m.render_openmetrics();
        let with: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
        assert_eq!(with.len(), 1, "{text}");
        assert!(with[0].starts_with(
            "tokengate_decision_duration_seconds_bucket{transport=\"grpc\",le=\"0.0005\"} 1 # {trace_id=\"abababababababababababababababab\"} 0.0003 "
        ), "{}", with[0]);
        // The classic format has no exemplars.
        assert!(!m.render().contains("trace_id"));
    }

    #[test]
    fn a_check_slower_than_every_bucket_lands_on_inf() {
        let m = Metrics::new(&["main"]).unwrap();
        m.exemplar(Transport::Http, Duration::from_secs(3), [1; 16]);
        let text = m.render_openmetrics();
        let line = text.lines().find(|l| l.contains(" # {")).unwrap();
        assert!(
            line.starts_with(
                "tokengate_decision_duration_seconds_bucket{transport=\"http\",le=\"+Inf\"} 0 # {"
            ),
            "{line}"
        );
    }

    #[test]
    fn numbers_and_escapes_follow_the_format() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(bound(1.0), "1.0");
        assert_eq!(bound(0.00005), "0.00005");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
