//! The etcd collect list parser, `collect::parse`, on any bytes: the checks
//! are `collect::assert_invariants` (no panic; a refusal is one line naming
//! at least one problem; an accepted list has non-empty paths, distinct
//! (path, topic) pairs, and survives `to_json` and back unchanged). Random
//! bytes rarely make JSON: the seeds in `fuzz/seeds/collect/` give libFuzzer
//! lists to mutate, valid and broken in every field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| logcollect::collect::assert_invariants(input));
