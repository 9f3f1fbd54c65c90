//! Arbitrary bodies to every path of the plugin socket, in process, over
//! a store in memory: every answer is JSON, every failure a non-200 with a
//! non-empty `{"Err": "..."}` (checked by `Api::call`), and nothing panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rustnet::fuzz::Api;

static API: OnceLock<Api> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let api = API.get_or_init(|| Api::new().expect("a one-node store"));
    let Some((&path, body)) = data.split_first() else {
        return;
    };
    if let Err(broken) = api.call(usize::from(path), body) {
        panic!("{broken}");
    }
});
