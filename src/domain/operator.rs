//! Operator accounts (DESIGN §15): people who sign in to the console by name and password,
//! and who made each admin change (`Actor`).
//!
//! An operator is a name and an Argon2id hash of its password, as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`). The password itself never reaches the
//! server: `leadrouter operator add` hashes it where it is typed and sends the hash. The
//! hash is stored (journal, Redis, checkpoints) but never shown: its `Debug` is `***`, and
//! no answer or log carries it.
//!
//! Hashing and verifying are pure computations (no clock, no I/O; the salt is an argument),
//! but CPU-heavy by design: callers run them off the async workers.

use std::fmt;

use argon2::password_hash::{PasswordHash as Phc, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::FieldError;

/// The longest operator name.
pub const NAME_MAX: usize = 64;
/// The shortest password `leadrouter operator add` accepts.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// The longest password hashed (a bound on work, far past any real password).
pub const PASSWORD_MAX_BYTES: usize = 1_024;

/// The least work a stored hash must cost: memory (KiB) × passes. OWASP's Argon2id
/// settings all cost about this much or more (m=19456 t=2 is 38,912; m=7168 t=5 is 35,840),
/// so a hash made with weaker settings is refused.
const WORK_MIN: u64 = 7_168 * 5;
/// The most memory (KiB) a stored hash may make every sign-in spend.
const M_COST_MAX: u32 = 256 * 1024;
/// The most passes and lanes a stored hash may ask for.
const T_COST_MAX: u32 = 16;
const P_COST_MAX: u32 = 8;

/// An operator's name: 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`, beginning with a letter or a
/// digit (so it never reads as a command-line flag nor as `.` or `..` in a URL).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OperatorName(String);

impl OperatorName {
    /// The name, or why not (a message for the field `field`).
    pub fn parse(text: &str, field: &str) -> Result<OperatorName, FieldError> {
        let refuse = |message: &str| Err(FieldError::new(field, message));
        if text.is_empty() || text.len() > NAME_MAX {
            return refuse("1 to 64 characters");
        }
        if !text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
            return refuse("only a-z, 0-9, '.', '_' and '-'");
        }
        if !text.as_bytes()[0].is_ascii_alphanumeric() {
            return refuse("must begin with a letter or a digit");
        }
        Ok(OperatorName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OperatorName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OperatorName, D::Error> {
        let text = String::deserialize(deserializer)?;
        OperatorName::parse(&text, "name")
            .map_err(|e| serde::de::Error::custom(format!("operator name: {}", e.message)))
    }
}

/// An Argon2id password hash in PHC form. Built only by `parse` (what the admin API
/// accepts), `parse_stored` (what was accepted before) or `create`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// A hash the admin API accepts: Argon2id, version 19, no secret key or associated
    /// data, a salt of 8 bytes or more, an output of 16 to 64 bytes, and costs within
    /// bounds: at least OWASP's least work (memory × passes ≥ 35,840 KiB), at most 256 MiB,
    /// 16 passes and 8 lanes (every sign-in pays them).
    pub fn parse(text: &str, field: &str) -> Result<PasswordHash, FieldError> {
        let refuse = |message: String| FieldError::new(field, message);
        let params = Self::format(text).map_err(refuse)?;
        let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
        if u64::from(m) * u64::from(t) < WORK_MIN {
            return Err(refuse(format!(
                "too weak: m × t must be at least {WORK_MIN} (m=19456,t=2,p=1 is the recommended setting)"
            )));
        }
        if m > M_COST_MAX || t > T_COST_MAX || p > P_COST_MAX {
            return Err(refuse(format!("too costly: at most m={M_COST_MAX}, t={T_COST_MAX}, p={P_COST_MAX}")));
        }
        Ok(PasswordHash(text.to_string()))
    }

    /// A hash read back from the journal, Redis or a checkpoint: its form is checked (it was
    /// accepted by `parse` when it was stored), its costs are not, so bounds may change
    /// without making an old record unreadable.
    pub fn parse_stored(text: &str) -> Result<PasswordHash, String> {
        Self::format(text).map(|_| PasswordHash(text.to_string()))
    }

    /// The Argon2id parameters of a well-formed hash, or what is wrong with it.
    fn format(text: &str) -> Result<Params, String> {
        let phc = Phc::new(text).map_err(|_| "not a PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)")?;
        if phc.algorithm != argon2::ARGON2ID_IDENT {
            return Err(format!("must be an Argon2id hash, not {}", phc.algorithm));
        }
        if phc.version != Some(Version::V0x13.into()) {
            return Err("must be version 19 (v=19)".into());
        }
        if let Some((name, _)) = phc.params.iter().find(|(name, _)| !matches!(name.as_str(), "m" | "t" | "p")) {
            return Err(format!("unexpected parameter {name}: only m, t and p"));
        }
        let salt = phc.salt.ok_or("the salt is missing")?;
        let mut buffer = [0u8; 64];
        let salt_len = salt.decode_b64(&mut buffer).map_err(|_| "the salt is not valid base64")?.len();
        if salt_len < argon2::MIN_SALT_LEN {
            return Err("the salt must be at least 8 bytes".into());
        }
        let hash = phc.hash.ok_or("the hash is missing")?;
        if !(16..=64).contains(&hash.len()) {
            return Err("the hash must be 16 to 64 bytes".into());
        }
        Params::try_from(&phc).map_err(|e| format!("bad parameters: {e}"))
    }

    /// Hashes `password` under `salt` with the recommended Argon2id settings (m=19456 KiB,
    /// t=2, p=1, 32 bytes of output).
    pub fn create(password: &str, salt: [u8; 16]) -> Result<PasswordHash, String> {
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default());
        let hash = argon2.hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// Whether `password` is the one this hash was made from. The comparison is in constant
    /// time (argon2's `Output`); the cost is the hash's own settings.
    pub fn verify(&self, password: &str) -> bool {
        match Phc::new(&self.0) {
            Ok(phc) => Argon2::default().verify_password(password.as_bytes(), &phc).is_ok(),
            Err(_) => false,
        }
    }

    /// The PHC string, for storage only (journal, Redis, checkpoints).
    pub fn as_stored(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

impl Serialize for PasswordHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PasswordHash, D::Error> {
        let text = String::deserialize(deserializer)?;
        PasswordHash::parse_stored(&text).map_err(|e| serde::de::Error::custom(format!("password hash: {e}")))
    }
}

/// A password as `leadrouter operator add` takes it: at least 12 characters (and at most
/// 1 KiB); what is wrong otherwise.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(format!("the password must be at least {PASSWORD_MIN_CHARS} characters"));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(format!("the password must be at most {PASSWORD_MAX_BYTES} bytes"));
    }
    Ok(())
}

/// An operator account as the market holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub name: OperatorName,
    pub password_hash: PasswordHash,
    pub added_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
}

impl Operator {
    /// What may be shown of it: never the hash.
    pub fn view(&self) -> OperatorView {
        OperatorView { name: self.name.clone(), added_at: self.added_at, changed_at: self.changed_at }
    }
}

/// An operator as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorView {
    pub name: OperatorName,
    pub added_at: DateTime<Utc>,
    /// When its password was last set (`added_at` until it is replaced).
    pub changed_at: DateTime<Utc>,
}

/// An operator added or its password replaced (the admin change `put_operator`): `at` is
/// when, so that replaying the change gives the same `added_at` and `changed_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorPut {
    pub name: OperatorName,
    pub password_hash: PasswordHash,
    pub at: DateTime<Utc>,
}

/// Who made an admin change: `admin-token` (the admin API with the admin token), an
/// operator signed in to the console (`operator:<name>`), a buyer pausing or resuming its
/// campaign in the portal (`buyer:<id>`), the config file's opening top-ups
/// (`config-file`), or `unknown` (changes journaled before actors were recorded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Actor {
    AdminToken,
    Operator(OperatorName),
    Buyer(String),
    ConfigFile,
    #[default]
    Unknown,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::AdminToken => f.write_str("admin-token"),
            Actor::Operator(name) => write!(f, "operator:{name}"),
            Actor::Buyer(id) => write!(f, "buyer:{id}"),
            Actor::ConfigFile => f.write_str("config-file"),
            Actor::Unknown => f.write_str("unknown"),
        }
    }
}

impl Actor {
    /// Reads what `Display` wrote; anything else is `Unknown` (a record is never refused for
    /// its actor).
    pub fn parse(text: &str) -> Actor {
        match text {
            "admin-token" => Actor::AdminToken,
            "config-file" => Actor::ConfigFile,
            other => match (other.strip_prefix("operator:"), other.strip_prefix("buyer:")) {
                (Some(name), _) => OperatorName::parse(name, "by").map_or(Actor::Unknown, Actor::Operator),
                (_, Some(id)) if !id.is_empty() => Actor::Buyer(id.to_string()),
                _ => Actor::Unknown,
            },
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Actor, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Actor::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recommended settings, made once for the tests (each hash costs ~19 MiB of work).
    fn hash_of(password: &str) -> PasswordHash {
        PasswordHash::create(password, *b"0123456789abcdef").unwrap()
    }

    #[test]
    fn names_are_lowercase_letters_digits_dots_underscores_and_dashes_up_to_64() {
        for good in ["alice", "a", "ops.team_2-b", "0", &"x".repeat(64)] {
            assert_eq!(OperatorName::parse(good, "name").unwrap().as_str(), good);
        }
        for (bad, why) in [
            ("", "1 to 64"),
            (&"x".repeat(65) as &str, "1 to 64"),
            ("Alice", "only a-z"),
            ("al ice", "only a-z"),
            ("al/ice", "only a-z"),
            ("álice", "only a-z"),
            ("-bob", "begin with"),
            (".", "begin with"),
            ("..", "begin with"),
            ("_x", "begin with"),
        ] {
            let error = OperatorName::parse(bad, "name").unwrap_err();
            assert_eq!(error.field, "name");
            assert!(error.message.contains(why), "{bad:?}: {}", error.message);
        }
        assert!(serde_json::from_str::<OperatorName>("\"Bob\"").is_err(), "read back through the same rule");
    }

    #[test]
    fn a_hash_must_be_an_argon2id_phc_string_of_sound_cost() {
        let good = hash_of("correct horse battery");
        assert!(good.as_stored().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", good.as_stored());
        assert_eq!(PasswordHash::parse(good.as_stored(), "password_hash").unwrap(), good);
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let output = "mX6qEVVWgW9VxXrLgrCpIsiZ/Vt3jI8ASUPwa2f8FkU";
        let refused = [
            ("", "PHC"),
            ("hunter2hunter2", "PHC"),
            (&format!("$argon2i$v=19$m=19456,t=2,p=1${salt}${output}") as &str, "Argon2id"),
            (&format!("$argon2d$v=19$m=19456,t=2,p=1${salt}${output}"), "Argon2id"),
            (&format!("$argon2id$v=16$m=19456,t=2,p=1${salt}${output}"), "version 19"),
            (&format!("$argon2id$m=19456,t=2,p=1${salt}${output}"), "version 19"),
            (&format!("$argon2id$v=19$m=19456,t=2,p=1,keyid=AAAA${salt}${output}"), "unexpected parameter"),
            (&format!("$argon2id$v=19$m=19456,t=2,p=1${salt}"), "hash is missing"),
            (&format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${output}"), "8 bytes"),
            (&format!("$argon2id$v=19$m=19456,t=2,p=1${salt}$AAAAAAAAAAAAAAAA"), "16 to 64"),
            (&format!("$argon2id$v=19$m=4096,t=1,p=1${salt}${output}"), "too weak"),
            (&format!("$argon2id$v=19$m=1048576,t=2,p=1${salt}${output}"), "too costly"),
            (&format!("$argon2id$v=19$m=19456,t=2,p=64${salt}${output}"), "too costly"),
        ];
        for (text, why) in refused {
            let error = PasswordHash::parse(text, "password_hash").unwrap_err();
            assert_eq!(error.field, "password_hash");
            assert!(error.message.contains(why), "{text:?}: {}", error.message);
        }
        // Costs are checked when a hash is accepted, not when it is read back.
        let weak = format!("$argon2id$v=19$m=4096,t=1,p=1${salt}${output}");
        assert!(PasswordHash::parse_stored(&weak).is_ok());
        assert!(PasswordHash::parse_stored("nope").is_err());
    }

    #[test]
    fn verify_takes_the_right_password_only_and_the_hash_is_never_shown() {
        let hash = hash_of("correct horse battery");
        assert!(hash.verify("correct horse battery"));
        assert!(!hash.verify("correct horse batterY"));
        assert!(!hash.verify(""));
        assert_eq!(format!("{hash:?}"), "PasswordHash(***)");
        let put = OperatorPut {
            name: OperatorName::parse("alice", "name").unwrap(),
            password_hash: hash.clone(),
            at: DateTime::UNIX_EPOCH,
        };
        assert!(!format!("{put:?}").contains("argon2"), "{put:?}");
        let read: OperatorPut = serde_json::from_str(&serde_json::to_string(&put).unwrap()).unwrap();
        assert_eq!(read, put, "stored and read back whole");
        assert!(read.password_hash.verify("correct horse battery"));
    }

    #[test]
    fn passwords_need_twelve_characters() {
        assert!(check_password("short-pass1").is_err());
        assert!(check_password("twelve chars").is_ok());
        assert!(check_password("ääääääääääää").is_ok(), "characters, not bytes");
        assert!(check_password(&"x".repeat(2_000)).is_err());
    }

    #[test]
    fn actors_read_back_as_written_and_anything_else_as_unknown() {
        let alice = Actor::Operator(OperatorName::parse("alice", "by").unwrap());
        let buyer = Actor::Buyer("installer".into());
        for actor in [Actor::AdminToken, alice.clone(), buyer, Actor::ConfigFile, Actor::Unknown] {
            let json = serde_json::to_string(&actor).unwrap();
            assert_eq!(serde_json::from_str::<Actor>(&json).unwrap(), actor, "{json}");
        }
        assert_eq!(serde_json::to_value(&alice).unwrap(), "operator:alice");
        assert_eq!(Actor::parse("operator:Not Valid"), Actor::Unknown);
        assert_eq!(Actor::parse("someone"), Actor::Unknown);
        assert_eq!(Actor::parse("buyer:"), Actor::Unknown);
    }
}
