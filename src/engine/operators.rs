//! Operator accounts (DESIGN §15): added, replaced and removed as admin changes (journaled,
//! shared between nodes, replayed at start like any other), listed without their hashes,
//! and a sign-in verified against the stored Argon2id hash.

use std::sync::OnceLock;

use super::accounts::Accounts;
use super::EngineError;
use crate::domain::market::ConfigChange;
use crate::domain::model::FieldError;
use crate::domain::operator::{Actor, OperatorName, OperatorPut, OperatorView, PasswordHash};

/// Sign-ins verified at once on one node; the rest wait their turn.
pub(super) const VERIFYING_AT_ONCE: usize = 4;

impl Accounts {
    /// Adds operator `name` with `password_hash` (an Argon2id PHC string), or replaces the
    /// hash of an existing one; answers the operator and whether it is new. A bad name or
    /// hash is a 422 naming the field (`name`, `password_hash`).
    pub async fn put_operator(
        &self,
        name: &str,
        password_hash: &str,
        by: &Actor,
    ) -> Result<(OperatorView, bool), EngineError> {
        let name = OperatorName::parse(name, "name");
        let password_hash = PasswordHash::parse(password_hash, "password_hash");
        let (name, password_hash) = match (name, password_hash) {
            (Ok(name), Ok(hash)) => (name, hash),
            (name, hash) => {
                let errors: Vec<FieldError> = [name.err(), hash.err()].into_iter().flatten().collect();
                return Err(EngineError::Invalid(errors));
            }
        };
        let existed = self.core.market().operator(name.as_str()).is_some();
        let put = OperatorPut { name: name.clone(), password_hash, at: self.core.clock.now() };
        self.configure(ConfigChange::PutOperator(Box::new(put)), by).await?;
        let view = self.operator(name.as_str()).ok_or(EngineError::NotFound("operator"))?;
        Ok((view, !existed))
    }

    /// Removes operator `name` (404 when there is none). Its console sessions end: the
    /// console checks the operator still exists on every request (`operator`).
    pub async fn remove_operator(&self, name: &str, by: &Actor) -> Result<(), EngineError> {
        let name = OperatorName::parse(name, "name").map_err(|_| EngineError::NotFound("operator"))?;
        self.configure(ConfigChange::DeleteOperator(name), by).await
    }

    /// Every operator, by name, without hashes.
    pub fn operators(&self) -> Vec<OperatorView> {
        self.core.market().operators().iter().map(|operator| operator.view()).collect()
    }

    /// One operator, without its hash.
    pub fn operator(&self, name: &str) -> Option<OperatorView> {
        self.core.market().operator(name).map(|operator| operator.view())
    }

    /// Checks a sign-in: the operator's name when `password` is its password, `None`
    /// otherwise. The password is compared with the stored Argon2id hash in constant time;
    /// an unknown name is checked against a hash of the same cost, so how long the answer
    /// takes does not tell which names exist. The work runs on the blocking pool, at most
    /// `VERIFYING_AT_ONCE` at a time per node.
    pub async fn verify_operator(&self, name: &str, password: &str) -> Option<OperatorName> {
        let stored =
            self.core.market().operator(name).map(|operator| (operator.name.clone(), operator.password_hash.clone()));
        let _turn = self.verifying.acquire().await.ok()?;
        let password = password.to_string();
        let verified = tokio::task::spawn_blocking(move || match stored {
            Some((name, hash)) => hash.verify(&password).then_some(name),
            None => {
                // The same work as a known name's, and the same answer as a wrong password.
                let _ = dummy_hash().map(|dummy| dummy.verify(&password));
                None
            }
        });
        verified.await.ok().flatten()
    }
}

/// What an unknown name's password is checked against: a hash of a random password at
/// the recommended cost, made once per process (on the blocking pool, by the first sign-in
/// with an unknown name).
fn dummy_hash() -> Option<&'static PasswordHash> {
    static DUMMY: OnceLock<Option<PasswordHash>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let password = hex::encode(rand::random::<[u8; 32]>());
            PasswordHash::create(&password, rand::random()).ok()
        })
        .as_ref()
}
