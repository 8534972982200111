//! Validated names. Each type has one `parse` that says in plain words what is wrong, and
//! deserializes through it, so a request body holding an invalid name is rejected with that message.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid name; the text is shown to the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// Checks a DNS label: 1–63 of `a-z`, `0-9`, `-`, starting with a letter, not ending with `-`.
/// Apps are served at `<app>.<team>.<apps-domain>`, so both names must be labels.
fn check_dns_label(what: &str, s: &str) -> Result<(), NameError> {
    let fail = |why: &str| Err(NameError(format!("{what} {s:?} is not valid: {why}")));
    if s.is_empty() {
        return Err(NameError(format!("{what} must not be empty")));
    }
    if s.len() > 63 {
        return fail("at most 63 characters");
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return fail("it must start with a lowercase letter (a-z)");
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return fail(&format!(
            "{c:?} is not allowed; use lowercase letters, digits and '-'"
        ));
    }
    if s.ends_with('-') {
        return fail("it must not end with '-'");
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// For the checked names of other modules (a branch name, a Dockerfile path).
pub(crate) use string_newtype;

string_newtype!(
    /// A team's URL name (`acme` in `/api/v1/teams/acme` and `hello.acme.localhost`).
    TeamSlug
);
string_newtype!(
    /// An app's name inside its team: a DNS label.
    AppName
);
string_newtype!(
    /// A lower-cased e-mail address, the account's login.
    Email
);
string_newtype!(
    /// The name of an app's config var, usable as an environment variable name.
    ConfigKey
);
string_newtype!(
    /// A free-text label: a team's display name, an API token's name.
    Label
);
string_newtype!(
    /// A worker node's name (`gantry agent --name`): a DNS label, unique in its cluster.
    NodeName
);

impl TeamSlug {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_dns_label("team name", s)?;
        Ok(Self(s.to_owned()))
    }
}

impl NodeName {
    /// Routes under `/api/v1/nodes/` that a node of that name would shadow.
    pub const RESERVED: [&'static str; 2] = ["join-tokens", "stream"];

    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_dns_label("node name", s)?;
        if Self::RESERVED.contains(&s) {
            return Err(NameError(format!(
                "node name {s:?} is reserved (/api/v1/nodes/{s} is an API route): choose another with --name"
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

impl AppName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_dns_label("app name", s)?;
        Ok(Self(s.to_owned()))
    }
}

impl Email {
    pub const MAX_LEN: usize = 254;

    /// Accepts `local@domain.tld` with no spaces; stores it lower-cased so that
    /// `Alice@X.io` and `alice@x.io` are one account.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        let bad = || {
            NameError(format!(
                "{s:?} is not an e-mail address like name@example.com"
            ))
        };
        if s.len() > Self::MAX_LEN {
            return Err(NameError(format!(
                "e-mail addresses are at most {} characters",
                Self::MAX_LEN
            )));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Self(s.to_lowercase()))
    }

    /// The part before `@`, used to name a new account's personal team.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl ConfigKey {
    pub const MAX_LEN: usize = 256;

    /// Environment-variable names: letters, digits and `_`, not starting with a digit.
    /// `PORT` and `GANTRY_…` are reserved for variables the platform sets itself.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError("config var names must not be empty".into()));
        }
        if s.len() > Self::MAX_LEN {
            return Err(NameError(format!(
                "config var names are at most {} characters",
                Self::MAX_LEN
            )));
        }
        let valid_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_chars || s.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(NameError(format!(
                "config var name {s:?} is not valid: use letters, digits and '_', not starting with a digit"
            )));
        }
        if s == "PORT" {
            return Err(NameError(
                "config var name \"PORT\" is reserved: Gantry sets PORT to the app's port setting"
                    .into(),
            ));
        }
        if s.to_ascii_uppercase().starts_with("GANTRY_") {
            return Err(NameError(format!(
                "config var name {s:?} is reserved: names starting with GANTRY_ are set by the platform"
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

impl Label {
    pub const MAX_LEN: usize = 100;

    /// 1–100 characters of printable text, trimmed.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NameError("names must not be empty".into()));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(NameError(format!(
                "names are at most {} characters",
                Self::MAX_LEN
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(NameError(
                "names must not contain control characters".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A password as typed. Never serialized back out; `Debug` hides it.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let n = s.chars().count();
        if n < Self::MIN_CHARS {
            return Err(NameError(format!(
                "passwords must be at least {} characters",
                Self::MIN_CHARS
            )));
        }
        if n > Self::MAX_CHARS {
            return Err(NameError(format!(
                "passwords must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Password {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

/// Serialized only by clients sending it to the server (login, sign-up).
impl Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The OpenAPI schema of each name: the constraints its `parse` enforces, written once here so
/// that every body, path and response using the name shows them, and a client generated from
/// the document can check a value before sending it.
#[cfg(feature = "openapi")]
mod schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    use super::*;

    /// [`check_dns_label`] as a regular expression (its length bound included).
    pub const DNS_LABEL: &str = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";

    struct Text {
        description: &'static str,
        min: usize,
        max: usize,
        pattern: Option<&'static str>,
        example: &'static str,
    }

    impl Text {
        fn schema(self) -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(self.description))
                .min_length(Some(self.min))
                .max_length(Some(self.max))
                .pattern(self.pattern)
                .examples([self.example])
                .into()
        }
    }

    macro_rules! text_schema {
        ($name:ident, $text:expr) => {
            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    $text.schema()
                }
            }
            impl utoipa::ToSchema for $name {}
        };
    }

    text_schema!(
        TeamSlug,
        Text {
            description: "A team's URL name: a DNS label (lowercase letters, digits and '-', \
                starting with a letter, not ending with '-', at most 63 characters).",
            min: 1,
            max: 63,
            pattern: Some(DNS_LABEL),
            example: "acme",
        }
    );
    text_schema!(
        AppName,
        Text {
            description: "An app's name in its team: a DNS label (lowercase letters, digits and \
                '-', starting with a letter, not ending with '-', at most 63 characters).",
            min: 1,
            max: 63,
            pattern: Some(DNS_LABEL),
            example: "hello",
        }
    );
    text_schema!(
        NodeName,
        Text {
            description: "A worker node's name: a DNS label, unique in its cluster, other than `join-tokens` and `stream`.",
            min: 1,
            max: 63,
            pattern: Some(DNS_LABEL),
            example: "n1",
        }
    );
    text_schema!(
        Email,
        Text {
            description: "An e-mail address (stored lower-cased), at most 254 bytes.",
            min: 5,
            max: Email::MAX_LEN,
            pattern: Some(r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$"),
            example: "alice@example.com",
        }
    );
    text_schema!(
        ConfigKey,
        Text {
            description: "A config var's name, usable as an environment variable: letters, \
                digits and '_', not starting with a digit. `PORT` and names starting with \
                `GANTRY_` (any case) are reserved for the platform.",
            min: 1,
            max: ConfigKey::MAX_LEN,
            pattern: Some(r"^[A-Za-z_][A-Za-z0-9_]*$"),
            example: "DATABASE_URL",
        }
    );
    text_schema!(
        Label,
        Text {
            description: "Free text without control characters, trimmed, 1–100 characters.",
            min: 1,
            max: Label::MAX_LEN,
            pattern: None,
            example: "ci",
        }
    );
    text_schema!(
        Password,
        Text {
            description: "A password of 8–128 characters.",
            min: Password::MIN_CHARS,
            max: Password::MAX_CHARS,
            pattern: None,
            example: "a long passphrase",
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "hello", "hello-world", "a1", &"a".repeat(63)] {
            assert!(AppName::parse(ok).is_ok(), "{ok}");
            assert!(TeamSlug::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Hello", "lowercase"),
            ("1abc", "start with a lowercase letter"),
            ("-abc", "start with a lowercase letter"),
            ("abc-", "end with '-'"),
            ("a_b", "'_' is not allowed"),
            ("a.b", "'.' is not allowed"),
            ("héllo", "'é' is not allowed"),
            (&"a".repeat(64), "63"),
        ] {
            let err = AppName::parse(bad).unwrap_err().0;
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn node_names_are_dns_labels_but_not_the_routes_beside_them() {
        assert!(NodeName::parse("n1").is_ok());
        assert!(NodeName::parse("N1").is_err());
        for reserved in NodeName::RESERVED {
            let err = NodeName::parse(reserved).unwrap_err().0;
            assert!(err.contains("reserved"), "{reserved}: {err}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        assert_eq!(Email::parse("a.b@x.io").unwrap().local_part(), "a.b");
        for bad in [
            "", "alice", "@x.io", "a@b", "a@@b.io", "a b@x.io", "a@x.io.", "a@.x.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(250))).is_err());
    }

    #[test]
    fn config_keys() {
        for ok in ["DATABASE_URL", "_X", "a1"] {
            assert!(ConfigKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "A B",
            "GANTRY_X",
            "gantry_port",
            "PORT",
            &"A".repeat(257),
        ] {
            assert!(ConfigKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"é".repeat(128)).is_ok());
        assert!(Password::parse(&"a".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-pass").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<AppName>("\"Bad Name\"").unwrap_err();
        assert!(err.to_string().contains("app name"), "{err}");
        let ok: AppName = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(ok.as_str(), "web");
    }

    #[test]
    fn labels() {
        assert_eq!(Label::parse("  CI token ").unwrap().as_str(), "CI token");
        assert!(Label::parse("   ").is_err());
        assert!(Label::parse("a\nb").is_err());
        assert!(Label::parse(&"x".repeat(101)).is_err());
    }
}
