//! Remote URLs: `s3://bucket/prefix` (any S3-compatible endpoint) or a directory path (a shared
//! mount), and how they are remembered in a repository's config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a remote lives and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSpec {
    /// `s3://bucket/prefix`, or an absolute directory path.
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); AWS itself when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The S3 region (default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the AWS config file, else
    /// `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl RemoteSpec {
    /// A remote at `url` with the default endpoint and region. A relative directory path is
    /// made absolute against the current directory. Fails on a URL snapstore cannot use.
    pub fn new(url: &str) -> Result<RemoteSpec> {
        let spec = RemoteSpec {
            url: url.to_string(),
            endpoint: None,
            region: None,
        };
        spec.normalized()
    }

    /// Whether `remote` is a remote's name rather than a URL: a bare word (a directory is
    /// written with a '/': `./backup`).
    pub fn is_name(remote: &str) -> bool {
        !remote.contains('/') && !remote.starts_with("s3:")
    }

    /// The same remote with an S3 endpoint.
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> RemoteSpec {
        self.endpoint = endpoint;
        self
    }

    /// The same remote with an S3 region.
    pub fn with_region(mut self, region: Option<String>) -> RemoteSpec {
        self.region = region;
        self
    }

    /// Checks the URL and makes a directory path absolute.
    pub(crate) fn normalized(mut self) -> Result<RemoteSpec> {
        match self.location()? {
            Location::S3 { .. } => {
                if let Some(e) = &self.endpoint {
                    self.endpoint = Some(endpoint_url(&self.url, e, "the endpoint")?);
                }
            }
            Location::Directory(dir) => {
                if self.endpoint.is_some() {
                    return Err(Error::BadRemoteUrl {
                        url: self.url.clone(),
                        problem: "--endpoint applies to s3:// remotes only".into(),
                    });
                }
                self.url = dir.display().to_string();
            }
        }
        Ok(self)
    }

    /// Parses the URL.
    pub(crate) fn location(&self) -> Result<Location> {
        let bad = |problem: &str| Error::BadRemoteUrl {
            url: self.url.clone(),
            problem: problem.to_string(),
        };
        let url = self.url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !bucket_ok {
                return Err(bad(
                    "the bucket name must be 3-63 lowercase letters, digits, '-' or '.'",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") {
                return Err(bad("the prefix may not hold '.' or '..' segments"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(bad("use s3://bucket/prefix or a directory path"));
        }
        // A scheme-like start (`s3:/b/x`, `S3:b`, `gs:`) is a mistyped URL, not a directory
        // named `s3:`: refused, unless written as a path (`./s3:`).
        let first = url.split('/').next().unwrap_or("");
        if let Some((scheme, _)) = first.split_once(':') {
            let scheme_like = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if scheme_like && url != "file:" && !url.starts_with("file:/") {
                return Err(bad(&format!(
                    "it starts like a URL ({scheme}:) but is not s3://bucket/prefix; a directory \
                     whose name starts so must be written ./{url}"
                )));
            }
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        let abs = std::path::absolute(path).map_err(|e| bad(&e.to_string()))?;
        Ok(Location::Directory(abs))
    }
}

/// An S3 endpoint as the client takes it: `http://` or `https://` (in any case; written lower)
/// and a host. Without a scheme the client panicked. `given` says where it came from (a flag or
/// an environment variable), for the message.
pub(crate) fn endpoint_url(url: &str, endpoint: &str, given: &str) -> Result<String> {
    let e = endpoint.trim();
    let lower = e.to_ascii_lowercase();
    match ["http://", "https://"]
        .into_iter()
        .find(|s| lower.starts_with(s))
    {
        Some(scheme) if e.len() > scheme.len() => Ok(format!("{scheme}{}", &e[scheme.len()..])),
        _ => Err(Error::BadRemoteUrl {
            url: url.to_string(),
            problem: format!(
                "{given} {e:?} is not an endpoint URL: write http://HOST:PORT or https://HOST"
            ),
        }),
    }
}

/// A parsed remote URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// An S3 bucket and a key prefix (no leading or trailing '/').
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
    /// A directory.
    Directory(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_are_refused_by_name() {
        let s3 = RemoteSpec::new("s3://my-bucket/runs/exp1/").unwrap();
        assert_eq!(
            s3.location().unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "runs/exp1".into()
            }
        );
        let d = RemoteSpec::new("relative/dir").unwrap();
        assert!(PathBuf::from(&d.url).is_absolute(), "{}", d.url);
        for bad in [
            "s3://A_B/x",
            "http://host/x",
            "s3://ok-bucket/../x",
            "",
            "s3:/b/x",
            "S3://b/x",
            "s3:b",
            "gs:/b",
        ] {
            let err = RemoteSpec::new(bad).unwrap_err().to_string();
            assert!(err.contains("invalid remote URL"), "{bad}: {err}");
        }
        let err = RemoteSpec::new("s3:/ckpt/x").unwrap_err().to_string();
        assert!(
            err.contains("starts like a URL (s3:)") && err.contains("./s3:/ckpt/x"),
            "{err}"
        );
        let d = RemoteSpec::new("./s3:/ckpt/x").unwrap();
        assert!(d.url.ends_with("s3:/ckpt/x"), "{}", d.url);
        let err = RemoteSpec {
            url: "/tmp/x".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: None,
        }
        .normalized()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--endpoint applies to s3://"), "{err}");
    }

    /// Regression: an endpoint without a scheme made the S3 client panic at the first request
    /// (and an upper-case scheme failed with "builder error").
    #[test]
    fn endpoints_need_a_scheme_and_a_host() {
        let spec = |e: &str| {
            RemoteSpec::new("s3://bkt/run")
                .unwrap()
                .with_endpoint(Some(e.into()))
                .normalized()
        };
        for bad in ["127.0.0.1:9000", "localhost", "http://", "ftp://host", ""] {
            let err = spec(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("the endpoint {bad:?} is not an endpoint URL")),
                "{bad}: {err}"
            );
        }
        let ok = spec(" HTTP://127.0.0.1:9000 ").unwrap();
        assert_eq!(ok.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        let ok = spec("https://s3.example.com").unwrap();
        assert_eq!(ok.endpoint.as_deref(), Some("https://s3.example.com"));
    }
}
