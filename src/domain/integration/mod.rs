//! Buyer integrations (DESIGN §5.1): how a campaign's `request` and `answer` configs speak
//! a buyer's own format. Pure: what is sent is rendered here and what comes back is read
//! here; the `buyers` adapter only moves the bytes.
//!
//! - `answer`: the rules that read a buyer's reply (status, JSONPath, XPath, regex) into
//!   accepted / reason / reference, or bid / no bid / token for a ping; compiled once when
//!   the campaign is stored, so a path that does not parse is refused then.
//! - `xpath`: the XPath subset the answer rules use (`/a/b`, `//b`, `@attr`, `text()`,
//!   `[n]`), over `roxmltree`.
//! - `request`: the request a campaign sends (method, URL, format, fields, headers, auth),
//!   compiled once when stored (every template, every name) and rendered per call.
//! - `template`: the Jinja-style templates (minijinja) with the variables and filters
//!   §5.1 names and nothing else, escaping by the format rendered into.

pub mod answer;
pub mod request;
pub mod template;
pub mod xpath;
