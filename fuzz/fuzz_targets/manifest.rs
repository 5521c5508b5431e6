//! The manifest decoder: any bytes are a manifest that encodes back to a decodable manifest, or a
//! typed error.
#![no_main]

use journeydb_storage::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.manifest");
    if let Ok(m) = Manifest::decode(path, data) {
        let again = m.encode();
        assert!(
            Manifest::decode(path, &again).is_ok(),
            "a decoded manifest re-encodes to one that decodes"
        );
    }
});
