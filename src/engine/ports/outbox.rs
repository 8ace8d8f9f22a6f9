//! The outbox's delivery states as operators filter them.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    DeadLetter,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "pending" => Some(Status::Pending),
            "dead_letter" => Some(Status::DeadLetter),
            _ => None,
        }
    }
}
