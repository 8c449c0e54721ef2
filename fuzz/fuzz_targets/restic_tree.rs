#![no_main]
//! Fuzz target: a restic tree blob (JSON) decodes and converts to Arca's
//! nodes, or is rejected, without panicking; converted names are always
//! single path components, so a restore cannot leave its directory.
use arca_restic::ResticTree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = ResticTree::decode(data) else {
        return;
    };
    if let Ok(nodes) = tree.to_arca() {
        for node in &nodes {
            assert!(node.name.is_valid_component());
        }
        assert!(nodes.windows(2).all(|w| w[0].name < w[1].name));
    }
});
