//! Protocol tests of the built-in OCI registry (distribution spec v1.1) over HTTP, against a real
//! server and a real Postgres (one database per test). The harness is the one of `tests/api`, but
//! registry requests go through [`Reg`], a plain client: `/v2/` is not in the OpenAPI document.

#[path = "../api/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "../api/fake_agent.rs"]
#[allow(dead_code)]
mod fake_agent;

mod auth;
mod gc;
mod protocol;
mod pull_secrets;
mod roundtrip;
mod tags;
mod usage;

use std::path::{Path, PathBuf};

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{TestApp, TestUser};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A tiny image: a config blob, one layer of random bytes, and its OCI manifest (pretty-printed,
/// so a server that re-serialises it instead of keeping the exact bytes changes its digest).
pub struct Image {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    /// Digest of `manifest`.
    pub digest: String,
}

impl Image {
    pub fn new(layer_len: usize) -> Self {
        let layer = random_bytes(layer_len);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
        }))
        .unwrap();
        let manifest = manifest_bytes(OCI_MANIFEST, &config, &[&layer]);
        let digest = digest(&manifest);
        Image {
            config,
            layer,
            manifest,
            digest,
        }
    }
}

/// An image manifest of `media_type` (OCI or Docker v2) for a config and layers.
pub fn manifest_bytes(media_type: &str, config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let docker = media_type == DOCKER_MANIFEST;
    let (config_type, layer_type) = if docker {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": layer_type, "digest": digest(l), "size": l.len()}))
        .collect();
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": digest(config), "size": config.len()},
        "layers": layers,
    }))
    .unwrap()
}

/// An index (OCI index or Docker manifest list) of one amd64 manifest.
pub fn index_bytes(media_type: &str, manifest_type: &str, manifest: &[u8]) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [{
            "mediaType": manifest_type,
            "digest": digest(manifest),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap()
}

pub fn header(res: &Response, name: &str) -> Option<String> {
    header_of(res.headers(), name)
}

pub fn header_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

/// The files under `dir` (recursively; none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A server whose registry limit is `max_blob_bytes` (when given), and its registry directory.
pub async fn spawn_with_dir(max_blob_bytes: Option<u64>) -> (TestApp, PathBuf) {
    let mut dir = None;
    let app = TestApp::spawn_with(|c| {
        if let Some(max) = max_blob_bytes {
            c.registry_max_blob_bytes = max;
        }
        dir = Some(c.registry_dir.clone());
    })
    .await;
    (app, dir.unwrap())
}

/// Asserts the registry's error shape and returns `(status, first error code)`.
pub async fn oci_error(res: Response) -> (StatusCode, String) {
    let status = res.status();
    let content_type = header(&res, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "error Content-Type {content_type:?} ({status})"
    );
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {status} {text:?}"));
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {status} {text}"));
    assert!(!errors.is_empty(), "empty errors array: {status} {text}");
    for e in errors {
        assert!(e["code"].is_string(), "error without code: {text}");
        assert!(e["message"].is_string(), "error without message: {text}");
    }
    (status, errors[0]["code"].as_str().unwrap().to_owned())
}

/// Asserts an error answer of `status` and `code`.
pub async fn expect_error(res: Response, status: u16, code: &str, what: &str) {
    let url = res.url().clone();
    let (s, c) = oci_error(res).await;
    assert_eq!((s.as_u16(), c.as_str()), (status, code), "{what} ({url})");
}

/// A registry client: Basic auth with an e-mail and a token secret or password, or nothing.
#[derive(Clone)]
pub struct Reg {
    pub base: String,
    pub client: Client,
    pub auth: Option<(String, String)>,
}

impl Reg {
    pub fn new(app: &TestApp, email: &str, secret: &str) -> Self {
        Reg {
            base: app.base.clone(),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            auth: Some((email.to_owned(), secret.to_owned())),
        }
    }

    pub fn anonymous(app: &TestApp) -> Self {
        Reg {
            auth: None,
            ..Self::new(app, "", "")
        }
    }

    /// A client of `user` with a fresh API token of `role` in `team`.
    pub async fn token(app: &TestApp, user: &TestUser, team: &str, role: &str) -> Self {
        let secret = user.token(team, role).await;
        Self::new(app, &user.email, &secret)
    }

    /// `/path` or an absolute URL (a `Location`) → absolute URL.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            assert!(path.starts_with('/'), "relative location {path:?}");
            format!("{}{path}", self.base)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.client.request(method, self.url(path));
        match &self.auth {
            Some((user, pass)) => req.basic_auth(user, Some(pass)),
            None => req,
        }
    }

    pub async fn send(&self, method: Method, path: &str) -> Response {
        self.req(method, path).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path).await
    }

    pub async fn head(&self, path: &str) -> Response {
        self.send(Method::HEAD, path).await
    }

    /// `GET` with a `Range` header (`bytes=a-b`).
    pub async fn get_range(&self, path: &str, range: &str) -> Response {
        self.req(Method::GET, path)
            .header("range", range)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(Method::DELETE, path).await
    }

    /// `POST /v2/<repo>/blobs/uploads/`: a new upload session.
    pub async fn start_upload(&self, repo: &str) -> Response {
        self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .header("content-length", "0")
            .send()
            .await
            .unwrap()
    }

    /// A new upload session; asserts 202 and returns its `Location`.
    pub async fn upload_location(&self, repo: &str) -> String {
        let res = self.start_upload(repo).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "start upload in {repo}");
        header(&res, "location").expect("upload Location")
    }

    /// `PATCH <location>` with a chunk, with `Content-Range: start-end` when `start` is given.
    pub async fn patch(&self, location: &str, chunk: &[u8], start: Option<usize>) -> Response {
        let mut req = self
            .req(Method::PATCH, location)
            .header("content-type", "application/octet-stream")
            .body(chunk.to_vec());
        if let Some(start) = start {
            let end = start + chunk.len() - 1;
            req = req.header("content-range", format!("{start}-{end}"));
        }
        req.send().await.unwrap()
    }

    /// `PUT <location>?digest=<digest>` with an optional last chunk.
    pub async fn finish(&self, location: &str, digest: &str, last: Option<&[u8]>) -> Response {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let mut req = self.req(Method::PUT, &url);
        req = match last {
            Some(b) => req
                .header("content-type", "application/octet-stream")
                .body(b.to_vec()),
            None => req.header("content-length", "0"),
        };
        req.send().await.unwrap()
    }

    /// Monolithic upload: `POST /v2/<repo>/blobs/uploads/?digest=<digest>` with the blob.
    pub async fn post_blob(&self, repo: &str, digest: &str, bytes: &[u8]) -> Response {
        self.req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
    }

    /// Pushes a blob monolithically; asserts 201 and returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = digest(bytes);
        let res = self.post_blob(repo, &d, bytes).await;
        let status = res.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "push blob to {repo}: {}",
            res.text().await.unwrap()
        );
        d
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`.
    pub async fn mount(&self, repo: &str, digest: &str, from: &str) -> Response {
        self.req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
        )
        .header("content-length", "0")
        .send()
        .await
        .unwrap()
    }

    /// `PUT /v2/<repo>/manifests/<reference>`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", content_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a manifest; asserts 201 and the digest header.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: &str,
        bytes: &[u8],
    ) {
        let res = self
            .put_manifest(repo, reference, content_type, bytes)
            .await;
        let status = res.status();
        let got = header(&res, "docker-content-digest");
        assert_eq!(
            status,
            StatusCode::CREATED,
            "push manifest {repo}:{reference}: {}",
            res.text().await.unwrap()
        );
        assert_eq!(got.as_deref(), Some(digest(bytes).as_str()));
    }

    /// Pushes the image's blobs and its manifest under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) {
        self.push_blob(repo, &image.config).await;
        self.push_blob(repo, &image.layer).await;
        self.push_manifest(repo, tag, OCI_MANIFEST, &image.manifest)
            .await;
    }

    /// `GET /v2/<repo>/tags/list` (with an optional query, without the `?`): status and body.
    pub async fn tags(&self, repo: &str, query: &str) -> Response {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.get(&format!("/v2/{repo}/tags/list{q}")).await
    }

    /// The tag names of `repo`, asserting 200 and the body's `name`.
    pub async fn tag_names(&self, repo: &str) -> Vec<String> {
        let res = self.tags(repo, "").await;
        assert_eq!(res.status(), StatusCode::OK, "tags of {repo}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["name"], repo);
        tag_array(&body)
    }

    /// The repositories of `GET /v2/_catalog`, asserting 200.
    pub async fn catalog(&self) -> Vec<String> {
        let res = self.get("/v2/_catalog").await;
        assert_eq!(res.status(), StatusCode::OK, "catalog");
        let body: Value = res.json().await.unwrap();
        body["repositories"]
            .as_array()
            .expect("repositories array")
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    }
}

/// `tags` of a tag list (`null` counts as none).
pub fn tag_array(body: &Value) -> Vec<String> {
    if body["tags"].is_null() {
        return Vec::new();
    }
    body["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("tags is not an array: {body}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}
