//! The canonicaliser (src/decision/canonical.rs): any path gives a canonical path or a
//! refusal, never a panic, and what it gives is a fixed point with none of the forms a
//! server could resolve differently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::decision::canonical;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(path) = canonical::path(&raw) {
        assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
        for bad in ["//", "/./", "/../", ";", "\\", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C"] {
            assert!(!path.contains(bad), "{raw:?} -> {path:?} contains {bad:?}");
        }
        assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{raw:?} -> {path:?}");
        assert!(!path.bytes().any(|b| b.is_ascii_control()), "{raw:?} -> {path:?}");
        // A fixed point: canonicalising again changes nothing. Characters that only an
        // encoding can carry in a request path are left out: a `%` that survived one
        // decoding is literal (decoding it again is what the refusal of encoded
        // separators covers) and a decoded `%23` is a `#` that a raw path would be
        // refused for.
        if !path.contains(['%', '#']) {
            assert_eq!(canonical::path(&path).as_deref(), Ok(&*path), "{raw:?}");
        }
    }
    let host = canonical::host(&raw);
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{raw:?} -> {host:?}");
});
