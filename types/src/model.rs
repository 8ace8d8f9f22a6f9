//! How a vertical sells its leads (DESIGN §3), as the ledger stream and billing name it.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Model {
    PingPost,
    Bidding,
    RoundRobin,
    PingTree,
}

impl Model {
    pub const ALL: [Model; 4] = [Model::PingPost, Model::Bidding, Model::RoundRobin, Model::PingTree];

    pub fn as_str(self) -> &'static str {
        match self {
            Model::PingPost => "ping_post",
            Model::Bidding => "bidding",
            Model::RoundRobin => "round_robin",
            Model::PingTree => "ping_tree",
        }
    }
}

/// A name no model has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model {0:?}")]
pub struct UnknownModel(pub String);

impl FromStr for Model {
    type Err = UnknownModel;

    fn from_str(text: &str) -> Result<Model, UnknownModel> {
        Model::ALL.into_iter().find(|model| model.as_str() == text).ok_or_else(|| UnknownModel(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_reads_back_from_its_name_in_text_and_in_json() {
        for model in Model::ALL {
            assert_eq!(model.as_str().parse::<Model>(), Ok(model));
            assert_eq!(serde_json::to_value(model).unwrap(), serde_json::json!(model.as_str()));
        }
        assert_eq!("PingPost".parse::<Model>(), Err(UnknownModel("PingPost".into())));
        assert!("".parse::<Model>().is_err());
    }
}
