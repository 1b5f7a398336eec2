//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! entry points the cargo-fuzz targets call, on stable, in the normal test run:
//! every seed (and every crash ever found, once added there) must pass.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{target}: {} panics", path.display());
        // Every prefix too: truncated input is the commonest hostile input.
        for cut in (0..data.len()).step_by(7) {
            let result = std::panic::catch_unwind(|| run(&data[..cut]));
            assert!(
                result.is_ok(),
                "{target}: {} cut at {cut} panics",
                path.display()
            );
        }
        n += 1;
    }
    assert!(n > 0, "no seeds for {target}");
}

#[test]
fn corpus_ndjson() {
    replay("ndjson", machines::fuzzing::ndjson);
}

#[test]
fn corpus_sse() {
    replay("sse", machines::fuzzing::sse);
}

#[test]
fn corpus_router() {
    replay("router", |data| {
        machines::fuzzing::router(std::time::Instant::now(), data)
    });
}

#[test]
fn corpus_www_authenticate() {
    replay("www_authenticate", machines::fuzzing::www_authenticate);
}

#[test]
fn corpus_metadata() {
    replay("metadata", machines::fuzzing::metadata);
}

#[test]
fn corpus_link_events() {
    replay("link_events", machines::fuzzing::link_events);
}

#[test]
fn corpus_grant_events() {
    replay("grant_events", machines::fuzzing::grant_events);
}

#[test]
fn corpus_callback_query() {
    replay("callback_query", machines::fuzzing::callback_query);
}

#[test]
fn corpus_registration() {
    replay("registration", machines::fuzzing::registration);
}

#[test]
fn corpus_token_response() {
    replay("token_response", machines::fuzzing::token_response);
}

proptest::proptest! {
    /// Random bytes through every entry point: none may panic.
    #[test]
    fn random_input_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        machines::fuzzing::ndjson(&data);
        machines::fuzzing::sse(&data);
        machines::fuzzing::router(std::time::Instant::now(), &data);
        machines::fuzzing::www_authenticate(&data);
        machines::fuzzing::metadata(&data);
        machines::fuzzing::link_events(&data);
        machines::fuzzing::grant_events(&data);
        machines::fuzzing::callback_query(&data);
        machines::fuzzing::registration(&data);
        machines::fuzzing::token_response(&data);
    }
}

#[test]
fn corpus_sign_in_flow() {
    replay("sign_in_flow", machines::fuzzing::sign_in_flow);
}
