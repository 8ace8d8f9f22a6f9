//! The TOML config file: `server::FileConfig::parse` (the market plus opening balances),
//! then `Market::build`, which validates what the parse let through, as a start does.
//!
//! Laws: never panics, an error message included (it locates the line); an accepted
//! config written back as TOML parses to the same config, and its market round-trips
//! through JSON (the admin API's and the journal's form of the same objects).
//! Parsing and building are pure: a refused config leaves nothing behind.

#![no_main]

use leadrouter::domain::geo::PostalTable;
use leadrouter::domain::market::{Market, MarketConfig};
use leadrouter::domain::money::Money;
use leadrouter::server::FileConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    // The postal table loads once, before fuzzing, so that its coverage does not crowd the
    // first inputs'.
    init: {
        PostalTable::bundled();
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match FileConfig::parse(text) {
        Ok(config) => config,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    for id in config.market.campaigns.iter().map(|c| &c.id).chain(config.market.buyers.iter().map(|b| &b.id)) {
        let _ = FileConfig::line_of_object(text, id);
    }

    // Written back as TOML (topups as the file has them), the config reads the same.
    let mut written = toml::to_string(&config.market).expect("an accepted market writes as TOML");
    for topup in &config.topups {
        let mut table = toml::Table::new();
        table.insert("buyer_id".into(), topup.buyer_id.clone().into());
        table.insert("amount".into(), topup.amount.to_string().into());
        table.insert("reference".into(), topup.reference.clone().into());
        written.push_str("\n[[topups]]\n");
        written.push_str(&toml::to_string(&table).expect("a topup writes"));
    }
    let again = FileConfig::parse(&written)
        .unwrap_or_else(|error| panic!("an accepted config, written back, is refused: {error}\n{written}"));
    assert_eq!(again.market, config.market, "{written}");
    let topups = |c: &FileConfig| -> Vec<(String, Money, String)> {
        c.topups.iter().map(|t| (t.buyer_id.clone(), t.amount, t.reference.clone())).collect()
    };
    assert_eq!(topups(&again), topups(&config), "{written}");

    // The file is read through JSON values, so the market is JSON's: the admin API's and
    // the journal's form of the same objects reads it back the same.
    let json = serde_json::to_value(&config.market).expect("a market serializes");
    let back: MarketConfig = serde_json::from_value(json.clone())
        .unwrap_or_else(|error| panic!("an accepted market does not read back from JSON: {error}\n{json}"));
    assert_eq!(back, config.market, "{json}");

    let _ = Market::build(config.market, PostalTable::bundled());
}
