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

use crate::domain::model::FieldError;
use answer::{AnswerSpec, CompiledAnswer, Extract, PingReading, PostReading};
use request::{CompiledRequest, RequestSpec, Stage};

/// A campaign's way of speaking to its buyer at one stage (ping or post), compiled when
/// the campaign is stored. `None` on a campaign means the native protocol of §5.
#[derive(Debug, Clone)]
pub struct Integration {
    /// The request to send; `None`: the native request (with `answer` rules read over it).
    pub request: Option<CompiledRequest>,
    /// How the reply is read; `None`: a 2xx accepts (a post). A ping always has rules: its
    /// `bid` defaults to the native protocol's `$.bid`.
    pub answer: Option<CompiledAnswer>,
}

impl Integration {
    /// Compiles a stage's `request` and `answer`, reporting every problem under `prefix`
    /// (`delivery` or `pricing`); `Ok(None)` when neither is given.
    pub fn compile(
        request: Option<&RequestSpec>,
        answer: Option<&AnswerSpec>,
        prefix: &str,
        stage: Stage,
    ) -> Result<Option<Integration>, Vec<FieldError>> {
        if request.is_none() && answer.is_none() {
            return Ok(None);
        }
        let mut errors = Vec::new();
        let request = request.and_then(|spec| {
            spec.compile(&format!("{prefix}.request"), stage).map_err(|mut found| errors.append(&mut found)).ok()
        });
        let answer = match stage {
            Stage::Ping => Some(ping_answer_spec(answer)),
            Stage::Post => answer.cloned(),
        };
        let answer = answer.and_then(|spec| {
            spec.compile(&format!("{prefix}.answer")).map_err(|mut found| errors.append(&mut found)).ok()
        });
        if errors.is_empty() {
            Ok(Some(Integration { request, answer }))
        } else {
            Err(errors)
        }
    }

    /// Whether calls send §5's native body (no `request`, or format `native`): only then
    /// need the caller build it.
    pub fn sends_native_body(&self) -> bool {
        self.request.as_ref().is_none_or(|request| request.format() == request::Format::Native)
    }

    /// Reads a post's reply: the answer rules, or else any 2xx accepts.
    pub fn read_post(&self, status: u16, body: &[u8]) -> PostReading {
        match &self.answer {
            Some(answer) => answer.read_post(status, body),
            None => PostReading { accepted: (200..300).contains(&status), reason: None, reference: None },
        }
    }

    /// Reads a ping's reply by the answer rules (compiled for every ping integration).
    pub fn read_ping(&self, status: u16, body: &[u8]) -> PingReading {
        match &self.answer {
            Some(answer) => answer.read_ping(status, body),
            None => PingReading { bid: None, token: None, reason: None },
        }
    }
}

/// A ping's answer rules with the native protocol's `bid` where the campaign names none:
/// a buyer that takes our ping in its own format may still answer `{"bid": "12.50"}`.
fn ping_answer_spec(answer: Option<&AnswerSpec>) -> AnswerSpec {
    let mut spec = answer.cloned().unwrap_or_default();
    if spec.bid.is_none() {
        spec.bid = Some(Extract { json: Some("$.bid".into()), ..Extract::default() });
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(request: Option<serde_json::Value>, answer: Option<serde_json::Value>) -> Integration {
        let request: Option<RequestSpec> = request.map(|r| serde_json::from_value(r).expect("request"));
        let answer: Option<AnswerSpec> = answer.map(|a| serde_json::from_value(a).expect("answer"));
        Integration::compile(request.as_ref(), answer.as_ref(), "delivery", Stage::Post)
            .expect("compiles")
            .expect("some")
    }

    #[test]
    fn only_native_requests_need_the_native_body() {
        let reference = serde_json::json!({"reference": {"json": "$.id"}});
        assert!(integration(None, Some(reference)).sends_native_body(), "answer rules over a native request");
        let native = serde_json::json!({"format": "native", "headers": {"X-Key": "k"}});
        assert!(integration(Some(native), None).sends_native_body());
        let json = serde_json::json!({"format": "json", "fields": [{"name": "e", "value": "{{ lead.email }}"}]});
        assert!(!integration(Some(json), None).sends_native_body());
    }
}
