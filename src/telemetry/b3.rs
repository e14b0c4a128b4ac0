//! B3 trace context (Zipkin's headers), for Envoys configured to propagate it: the
//! single `b3: {trace}-{span}[-{sampled}]` header, or `x-b3-traceid`, `x-b3-spanid` and
//! `x-b3-sampled`. Extraction only: tokengate starts no outgoing requests of a trace.

use opentelemetry::propagation::{
    text_map_propagator::FieldIter, Extractor, Injector, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

#[derive(Debug)]
pub struct B3Propagator;

static FIELDS: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
    ["b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"].map(String::from)
});

fn trace_id(s: &str) -> Option<TraceId> {
    // 64-bit ids are left-padded to 128 bits, as B3 says.
    let s = s.trim();
    if !(s.len() == 16 || s.len() == 32) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = TraceId::from_hex(&format!("{s:0>32}")).ok()?;
    (id != TraceId::INVALID).then_some(id)
}

fn span_id(s: &str) -> Option<SpanId> {
    let s = s.trim();
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = SpanId::from_hex(s).ok()?;
    (id != SpanId::INVALID).then_some(id)
}

fn sampled(s: Option<&str>) -> TraceFlags {
    match s.map(str::trim) {
        Some("1" | "d" | "true") => TraceFlags::SAMPLED,
        _ => TraceFlags::default(),
    }
}

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, _cx: &Context, _injector: &mut dyn Injector) {}

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let found = match extractor.get("b3") {
            Some(single) => {
                let mut parts = single.split('-');
                match (parts.next(), parts.next()) {
                    (Some(t), Some(s)) => trace_id(t)
                        .zip(span_id(s))
                        .map(|(t, s)| (t, s, sampled(parts.next()))),
                    _ => None,
                }
            }
            None => trace_id(extractor.get("x-b3-traceid").unwrap_or(""))
                .zip(span_id(extractor.get("x-b3-spanid").unwrap_or("")))
                .map(|(t, s)| (t, s, sampled(extractor.get("x-b3-sampled")))),
        };
        match found {
            Some((t, s, flags)) => cx.with_remote_span_context(SpanContext::new(
                t,
                s,
                flags,
                true,
                TraceState::default(),
            )),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&FIELDS[..])
    }
}
