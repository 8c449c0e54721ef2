#![no_main]
//! Fuzz target: trees. Decoding arbitrary bytes never panics, and a decoded
//! tree re-encodes to bytes that decode to the same tree.
use arca_repo::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        let again = Tree::decode(&tree.encode()).expect("an encoded tree decodes");
        assert_eq!(again, tree);
    }
});
