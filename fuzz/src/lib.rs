//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The top-level members of a JSON object in order, duplicates kept: what a hand-rolled
/// scanner must agree with. `None` when the text is not a JSON object serde_json reads
/// whole into values.
pub fn top_level_members(json: &[u8]) -> Option<Vec<(String, Value)>> {
    struct Members(Vec<(String, Value)>);
    impl<'de> Deserialize<'de> for Members {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
            struct Collect;
            impl<'de> Visitor<'de> for Collect {
                type Value = Members;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Members, A::Error> {
                    let mut members = Vec::new();
                    while let Some(member) = access.next_entry::<String, Value>()? {
                        members.push(member);
                    }
                    Ok(Members(members))
                }
            }
            deserializer.deserialize_map(Collect)
        }
    }
    serde_json::from_slice::<Members>(json).ok().map(|members| members.0)
}

/// The values of the members called `name`.
pub fn members<'a>(members: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    members.iter().filter(|(key, _)| key == name).map(|(_, value)| value).collect()
}

/// A directory for one target's scratch files, made once per process: in memory
/// (`/dev/shm`) where there is one, so a run is not slowed by fsyncs.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("leadrouter-fuzz-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::Builder::new().prefix("leadrouter-fuzz-").tempdir().expect("a temporary directory")
}

/// Everything in `dir`: names and contents, sorted by name.
pub fn dir_contents(dir: &std::path::Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("the scratch directory lists")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            (entry.file_name(), bytes)
        })
        .collect();
    entries.sort();
    entries
}

/// The verticals leads and pings are checked against: a German one with a default country
/// and a required custom field, and one with no default country that requires TCPA consent
/// and a city. A lead names its vertical; one naming neither is checked against the first
/// (and refused for it, as the engine refuses an unknown vertical).
pub fn vertical_for(name: Option<&str>) -> &'static leadrouter::domain::model::Vertical {
    static VERTICALS: std::sync::OnceLock<Vec<leadrouter::domain::model::Vertical>> = std::sync::OnceLock::new();
    let verticals = VERTICALS.get_or_init(|| {
        [
            serde_json::json!({"name": "solar", "model": "ping_post", "default_country": "DE",
                "required_fields": ["roof_type"]}),
            serde_json::json!({"name": "roofing", "model": "bidding",
                "required_fields": ["consent.tcpa", "city", "fields.roof_age"]}),
        ]
        .into_iter()
        .map(|vertical| serde_json::from_value(vertical).expect("a test vertical"))
        .collect()
    });
    let name = name.map(str::trim).unwrap_or_default();
    verticals.iter().find(|vertical| vertical.name == name).unwrap_or(&verticals[0])
}
