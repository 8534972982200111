//! What a `/v2/…` path asks for. Repository names contain slashes (`<team>/<name>`), so the
//! path is split on the distribution API's own keywords, from the right, as the reference
//! registry does.

use std::fmt;

/// A repository: the team that owns it and the rest of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoName {
    pub team: String,
    pub name: String,
}

impl RepoName {
    /// Checks a full repository name against the distribution spec's grammar, and that it has
    /// a team part. `None` when it is not a valid name.
    pub fn parse(full: &str) -> Option<Self> {
        const MAX_LEN: usize = 255;
        if full.len() > MAX_LEN {
            return None;
        }
        let (team, name) = full.split_once('/')?;
        if !full.split('/').all(path_component_ok) {
            return None;
        }
        Some(Self {
            team: team.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.team, self.name)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_ok(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A content digest: `sha256:` and 64 lower-case hex digits (the only algorithm we store).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn from_sha256(hash: &[u8]) -> Self {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in hash {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn tag_ok(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A manifest is named by a tag or by its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    fn parse(s: &str) -> Option<Self> {
        if s.contains(':') {
            Digest::parse(s).map(Self::Digest)
        } else {
            tag_ok(s).then(|| Self::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/v2/`: the API version check.
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, Reference),
    Blob(RepoName, Digest),
    /// `…/blobs/uploads/`: start an upload.
    Uploads(RepoName),
    /// `…/blobs/uploads/<id>`: an upload session (any string: unknown ids are answered as such).
    Upload(RepoName, String),
}

/// Why a path is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Not a registry endpoint at all.
    NotFound,
    /// An endpoint, but the repository name is invalid.
    NameInvalid(String),
    /// The digest or tag part is invalid.
    ReferenceInvalid(String),
    DigestInvalid(String),
}

/// Splits `path` (beginning with `/v2/`) into what it asks for.
pub fn parse(path: &str) -> Result<Target, PathError> {
    let rest = path.strip_prefix("/v2/").ok_or(PathError::NotFound)?;
    match rest {
        "" => return Ok(Target::Base),
        "_catalog" => return Ok(Target::Catalog),
        _ => {}
    }
    let repo =
        |name: &str| RepoName::parse(name).ok_or_else(|| PathError::NameInvalid(name.to_owned()));
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Target::Tags(repo(name)?));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/") {
        return Ok(Target::Uploads(repo(name)?));
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        if id.is_empty() || id.contains('/') {
            return Err(PathError::NotFound);
        }
        return Ok(Target::Upload(repo(name)?, id.to_owned()));
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        if digest.contains('/') {
            return Err(PathError::NotFound);
        }
        let name = repo(name)?;
        let digest =
            Digest::parse(digest).ok_or_else(|| PathError::DigestInvalid(digest.to_owned()))?;
        return Ok(Target::Blob(name, digest));
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        if reference.contains('/') {
            return Err(PathError::NotFound);
        }
        let name = repo(name)?;
        let reference = Reference::parse(reference)
            .ok_or_else(|| PathError::ReferenceInvalid(reference.to_owned()))?;
        return Ok(Target::Manifest(name, reference));
    }
    Err(PathError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn endpoints_are_split_from_the_right_so_names_may_hold_slashes() {
        let cases = [
            ("/v2/", Ok(Target::Base)),
            ("/v2/_catalog", Ok(Target::Catalog)),
            (
                "/v2/acme/hello/tags/list",
                Ok(Target::Tags(repo("acme/hello"))),
            ),
            (
                "/v2/acme/web/api/tags/list",
                Ok(Target::Tags(repo("acme/web/api"))),
            ),
            (
                "/v2/acme/hello/manifests/latest",
                Ok(Target::Manifest(
                    repo("acme/hello"),
                    Reference::Tag("latest".into()),
                )),
            ),
            (
                &format!("/v2/acme/hello/manifests/{D}"),
                Ok(Target::Manifest(
                    repo("acme/hello"),
                    Reference::Digest(Digest::parse(D).unwrap()),
                )),
            ),
            (
                &format!("/v2/acme/hello/blobs/{D}"),
                Ok(Target::Blob(repo("acme/hello"), Digest::parse(D).unwrap())),
            ),
            (
                "/v2/acme/hello/blobs/uploads/",
                Ok(Target::Uploads(repo("acme/hello"))),
            ),
            (
                "/v2/acme/hello/blobs/uploads/abc-123",
                Ok(Target::Upload(repo("acme/hello"), "abc-123".into())),
            ),
            // A repository may itself be called `blobs`.
            (
                &format!("/v2/acme/blobs/blobs/{D}"),
                Ok(Target::Blob(repo("acme/blobs"), Digest::parse(D).unwrap())),
            ),
            (
                "/v2/hello/tags/list",
                Err(PathError::NameInvalid("hello".into())),
            ),
            (
                "/v2/Acme/hello/tags/list",
                Err(PathError::NameInvalid("Acme/hello".into())),
            ),
            (
                "/v2/acme/hello/blobs/sha256:xyz",
                Err(PathError::DigestInvalid("sha256:xyz".into())),
            ),
            (
                "/v2/acme/hello/manifests/-bad",
                Err(PathError::ReferenceInvalid("-bad".into())),
            ),
            ("/v2/acme/hello", Err(PathError::NotFound)),
            ("/v3/", Err(PathError::NotFound)),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }

    #[test]
    fn name_components_follow_the_distribution_grammar() {
        for ok in [
            "a/b",
            "acme/hello-world",
            "acme/a.b",
            "acme/a_b",
            "acme/a__b",
            "acme/a--b",
            "t1/x/y/z",
        ] {
            assert!(RepoName::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "a", "a/", "/a", "a//b", "a/B", "a/-b", "a/b-", "a/b..c", "a/b___c", "a/b._c", "a/b c",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
        assert!(RepoName::parse(&format!("a/{}", "b".repeat(254))).is_none());
    }

    #[test]
    fn digests_and_tags() {
        assert!(Digest::parse(D).is_some());
        assert!(Digest::parse(&D.to_uppercase()).is_none());
        assert!(Digest::parse("sha512:abc").is_none());
        assert_eq!(Digest::from_sha256(&[0xab; 32]).hex(), "ab".repeat(32));
        assert!(tag_ok("latest") && tag_ok("v1.2.3_rc-1") && tag_ok("_x"));
        assert!(!tag_ok("") && !tag_ok(".x") && !tag_ok("a/b") && !tag_ok(&"a".repeat(129)));
    }
}
