#![no_main]
//! Fuzz target: repository URL parsing never panics, and every URL it accepts
//! prints in a form that parses back to the same location.
use arca_store::Location;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(location) = Location::parse(url) {
        let printed = location.to_string();
        let reparsed = Location::parse(&printed).expect("a printed location parses");
        assert_eq!(reparsed, location, "{url:?} printed as {printed:?}");
    }
});
