//! Opaque identifiers with a type prefix (`png_`, `led_`, `sal_`, `ret_`, ...).
//!
//! Random, not sequential: an id must not reveal volume or let one party guess another's.

use rand::distributions::Alphanumeric;
use rand::Rng;

/// 20 alphanumeric characters: ~119 bits, collision-free in practice without coordination
/// between nodes.
const ID_RANDOM_LEN: usize = 20;

pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 1 + ID_RANDOM_LEN);
    id.push_str(prefix);
    id.push('_');
    id.extend(rand::thread_rng().sample_iter(&Alphanumeric).take(ID_RANDOM_LEN).map(char::from));
    id
}

pub fn ping_id() -> String {
    new_id("png")
}

pub fn lead_id() -> String {
    new_id("led")
}

pub fn sale_id() -> String {
    new_id("sal")
}

pub fn hold_id() -> String {
    new_id("hld")
}
