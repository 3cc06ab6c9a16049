//! Configuration files: `Config::from_toml` / `from_json` on any UTF-8 text never panic; a
//! parsed configuration round-trips through TOML, and building a layer from it (into a given
//! store, so nothing is opened) never panics.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use object_store::memory::InMemory;
use tower_origin_pull::OriginPullLayer;
use tower_origin_pull::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::from_json(text);
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    let toml = config.to_toml().expect("a parsed config prints");
    assert_eq!(Config::from_toml(&toml).expect("and parses again"), config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _inside = rt.enter();
    let _ = OriginPullLayer::from_config_with(&config, Arc::new(InMemory::new()));
});
