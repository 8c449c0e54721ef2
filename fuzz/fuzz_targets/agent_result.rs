#![no_main]
//! Fuzz target: the agent's result document (a pod's termination message, so untrusted bytes)
//! never panics the reader, and an error never quotes the document.
use arca_kube::reconcile::AgentResult;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = AgentResult::from_document(text) {
        let message = error.to_string();
        if text.len() > 16 && !text.trim().is_empty() {
            assert!(!message.contains(text), "the error quotes the document");
        }
    }
});
