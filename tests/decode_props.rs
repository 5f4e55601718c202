//! Property tests: whatever bytes arrive, the decoder answers with a batch
//! or a one-line 4xx reason, and never panics.

use std::io::Write;

use autopi_rx::receiver::ingest::{Auth, Config, decode};
use proptest::prelude::*;

fn config() -> Config {
    Config {
        auth: Auth::Open,
        max_body: 64 * 1024,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn check(result: Result<autopi_rx::batch::Batch, autopi_rx::receiver::ingest::Rejection>) {
    match result {
        Ok(b) => {
            // What is accepted is one line of valid JSON: an array.
            assert!(!b.records_json.contains(&b'\n'));
            let v: serde_json::Value = serde_json::from_slice(&b.records_json).unwrap();
            assert_eq!(v.as_array().unwrap().len(), b.records);
        }
        Err(r) => {
            assert!(matches!(r.status, 400 | 413 | 415), "{r:?}");
            assert!(!r.error.is_empty() && !r.error.contains('\n'), "{r:?}");
        }
    }
}

/// Bytes that look like JSON often enough to reach the deeper paths.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b'['),
            Just(b']'),
            Just(b'{'),
            Just(b'}'),
            Just(b'"'),
            Just(b':'),
            Just(b','),
            Just(b'\\'),
            Just(b'\n'),
            Just(b' '),
            any::<u8>(),
        ],
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048), enc in prop::option::of("[a-z-]{0,8}")) {
        check(decode(&config(), enc.as_deref(), &body));
    }

    #[test]
    fn jsonish_bytes_never_panic(body in jsonish()) {
        check(decode(&config(), None, &body));
        check(decode(&config(), Some("gzip"), &body));
    }

    #[test]
    fn arbitrary_gzip_never_panics(body in jsonish(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let gz = gzip(&body);
        check(decode(&config(), Some("gzip"), &gz));
        let cut_at = cut.index(gz.len());
        check(decode(&config(), Some("gzip"), &gz[..cut_at]));
        let mut damaged = gz.clone();
        let at = flip.0.index(damaged.len());
        damaged[at] ^= flip.1 | 1;
        check(decode(&config(), None, &damaged));
    }

    #[test]
    fn valid_batches_keep_their_values(records in prop::collection::vec(("[a-z.]{1,12}", "[ -~]{0,20}", any::<i64>(), any::<f64>().prop_filter("finite", |f| f.is_finite())), 0..20), pretty in any::<bool>()) {
        let value: serde_json::Value = records
            .iter()
            .map(|(t, s, i, f)| serde_json::json!({"@t": t, "@ts": "2026-11-27T08:00:00", "s": s, "i": i, "f": f}))
            .collect();
        let text = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.unwrap();
        let batch = decode(&config(), None, &text).unwrap();
        // Parsed by the same parser on both sides: the stored text carries
        // the same values as the text sent.
        let back: serde_json::Value = serde_json::from_slice(&batch.records_json).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&text).unwrap();
        prop_assert_eq!(back, sent);
        if !pretty {
            prop_assert_eq!(&batch.records_json[..], &text[..], "compact bodies are kept byte for byte");
        }
        prop_assert_eq!(batch.malformed, 0);
        let again = decode(&config(), Some("gzip"), &gzip(&text)).unwrap();
        prop_assert_eq!(again.hash, batch.hash);
    }
}
