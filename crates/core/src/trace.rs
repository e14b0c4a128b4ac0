//! What the core tells the check's span, when there is one (issue 17): the server opens
//! a span only for a sampled check, so outside one these calls find no span and do
//! nothing.

/// Notes a cache lookup on the current check span as `hit` or `miss`; `field` is one
/// the check span declares (`tokengate.cache.token`, `tokengate.cache.revocation`).
pub(crate) fn cache(field: &'static str, hit: bool) {
    let span = tracing::Span::current();
    if !span.is_none() {
        span.record(field, if hit { "hit" } else { "miss" });
    }
}
