//! The loader and validator on arbitrary input, the way `labctl validate` runs them: the
//! input is a repository of YAML files (`labctl.yaml`, then `docs/1.yaml`, … split at NUL
//! bytes), read through `source::from_memory` under the default limits, validated, and its
//! diagnostics rendered as the command line renders them. Any panic, overflow or runaway
//! allocation is a finding.

#![no_main]

use codespan_reporting::term::termcolor::NoColor;
use libfuzzer_sys::fuzz_target;

use labctl::source::{self, Limits};
use labctl::validate;

fuzz_target!(|data: &[u8]| {
    let files = data.split(|b| *b == 0).enumerate().map(|(i, bytes)| {
        let path = match i {
            0 => "labctl.yaml".to_string(),
            n => format!("docs/{n}.yaml"),
        };
        (path, bytes.to_vec())
    });
    // Not UTF-8: refused before any YAML is parsed, as by the loaders.
    let Ok(snapshot) = source::from_memory("fuzz", files, Limits::default()) else {
        return;
    };
    let result = validate::validate(&snapshot);
    assert_eq!(result.state.is_some(), result.is_valid());
    let mut out = NoColor::new(Vec::new());
    validate::render(&result.diagnostics, &snapshot, &mut out).expect("renders into memory");
});
