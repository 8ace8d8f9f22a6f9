//! What the operator's console (`api::console`) and the buyer and supplier portal
//! (`api::portal`) share: the page frame and HTML answers (`page`), and forms (`form`).

pub mod form;
pub mod page;
