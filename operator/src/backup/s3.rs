//! S3 requests over hyper: objects, listings and multipart uploads in one bucket under one
//! prefix. Path-style URLs with an endpoint (what S3-compatible servers serve), virtual-host
//! style on AWS itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::BackupError;
use super::location::S3Credentials;
use super::sigv4::{self, UNSIGNED_PAYLOAD};

/// How long connecting may take: a storage that does not answer is reported, not waited on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may take to be answered (a part upload sends up to 16 MiB first).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of an error answer or a small object read.
const SMALL: usize = 4 << 20;

/// How to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// `http(s)://host[:port]` of an S3-compatible server; AWS itself when absent.
    pub endpoint: Option<String>,
    pub region: String,
    pub credentials: S3Credentials,
}

impl S3Options {
    /// The settings for `location` (none for a directory) with the key from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`: a pod takes them from a Secret, named in
    /// the error as `secret_field`).
    pub fn from_env(
        location: &super::location::Location,
        endpoint: Option<String>,
        region: String,
        secret_field: &str,
    ) -> Result<Option<Self>, String> {
        use super::location::{ACCESS_KEY_ID, Location, S3Credentials, SECRET_ACCESS_KEY};
        if matches!(location, Location::Dir(_)) {
            return Ok(None);
        }
        let (Ok(access_key), Ok(secret_key)) = (
            std::env::var(ACCESS_KEY_ID),
            std::env::var(SECRET_ACCESS_KEY),
        ) else {
            return Err(format!(
                "{location} needs credentials: {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} \
                 ({secret_field})"
            ));
        };
        Ok(Some(Self {
            endpoint,
            region,
            credentials: S3Credentials {
                access_key,
                secret_key,
            },
        }))
    }
}

#[derive(Clone)]
pub struct S3 {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: String,
    /// `host[:port]`, the `Host` header.
    authority: String,
    /// Path-style: the bucket is the path's first segment.
    path_style: bool,
    bucket: String,
    prefix: String,
    region: String,
    credentials: S3Credentials,
}

impl S3 {
    pub fn new(bucket: &str, prefix: &str, options: &S3Options) -> Result<Self, BackupError> {
        let (scheme, authority, path_style) = match &options.endpoint {
            Some(endpoint) => {
                let uri: http::Uri = endpoint
                    .parse()
                    .map_err(|e| BackupError::Location(format!("--s3-endpoint {endpoint}: {e}")))?;
                let scheme = uri.scheme_str().unwrap_or("https");
                let authority = uri.authority().map(|a| a.to_string()).ok_or_else(|| {
                    BackupError::Location(format!(
                        "--s3-endpoint {endpoint}: expected http(s)://host[:port]"
                    ))
                })?;
                if !matches!(scheme, "http" | "https") {
                    return Err(BackupError::Location(format!(
                        "--s3-endpoint {endpoint}: expected http(s)://host[:port]"
                    )));
                }
                (scheme.to_string(), authority, true)
            }
            None => (
                "https".to_string(),
                format!("{bucket}.s3.{}.amazonaws.com", options.region),
                false,
            ),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let provider = rustls::crypto::ring::default_provider();
        let tls = hyper_rustls::HttpsConnectorBuilder::new();
        // Without system roots only plain http endpoints work; https ones then fail to verify.
        let tls = match tls.with_provider_and_native_roots(provider) {
            Ok(builder) => builder,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| BackupError::Location(format!("TLS: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
        };
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::builder(TokioExecutor::new()).build(connector),
                scheme,
                authority,
                path_style,
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                region: options.region.clone(),
                credentials: options.credentials.clone(),
            }),
        })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.inner.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.inner.prefix)
        }
    }

    fn endpoint(&self) -> String {
        format!("{}://{}", self.inner.scheme, self.inner.authority)
    }

    fn describe(&self, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("s3://{}/{key}", self.inner.bucket),
            None => format!("s3://{}", self.inner.bucket),
        }
    }

    async fn send(
        &self,
        method: Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response<Incoming>, BackupError> {
        let i = &self.inner;
        let mut path = String::from("/");
        if i.path_style {
            path.push_str(&sigv4::encode(&i.bucket, false));
            if key.is_some() {
                path.push('/');
            }
        }
        if let Some(key) = key {
            path.push_str(&sigv4::encode(key, true));
        }
        let query_string = sigv4::canonical_query(query);
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let amz_date = sigv4::amz_date(secs);
        let authorization = sigv4::authorization(
            &sigv4::Request {
                method: method.as_str(),
                path: &path,
                query,
                headers: &[
                    ("host", &i.authority),
                    ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
                ],
                amz_date: &amz_date,
                region: &i.region,
            },
            &i.credentials,
        );
        let uri = if query_string.is_empty() {
            format!("{}{path}", self.endpoint())
        } else {
            format!("{}{path}?{query_string}", self.endpoint())
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("host", &i.authority)
            .header("x-amz-date", &amz_date)
            .header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
            .header("authorization", authorization)
            .header("content-length", body.len())
            .body(Full::new(body))
            .map_err(|e| BackupError::Location(format!("{uri}: {e}")))?;
        let unreachable = |detail: String| BackupError::Unreachable {
            endpoint: self.endpoint(),
            detail,
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, i.client.request(request)).await {
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            ))),
            Ok(Err(e)) => Err(unreachable(error_chain(&e))),
            Ok(Ok(response)) if response.status().is_success() => Ok(response),
            Ok(Ok(response)) => Err(self.refusal(response, key).await),
        }
    }

    /// The error an unsuccessful answer stands for.
    async fn refusal(&self, response: Response<Incoming>, key: Option<&str>) -> BackupError {
        let status = response.status();
        let body = read_small(response.into_body()).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        let code = xml_tag(&body, "Code").unwrap_or_else(|| status.to_string());
        let message = xml_tag(&body, "Message").unwrap_or_default();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => BackupError::Denied {
                endpoint: self.endpoint(),
                code,
                message,
            },
            StatusCode::NOT_FOUND => BackupError::NotFound {
                what: if code == "NoSuchBucket" {
                    format!("bucket {}", self.inner.bucket)
                } else {
                    key.unwrap_or("the object").to_string()
                },
                location: self.endpoint(),
            },
            _ => BackupError::Storage {
                location: self.describe(key),
                detail: format!("HTTP {status}, {code}: {message}"),
            },
        }
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), BackupError> {
        self.send(Method::PUT, Some(key), &[], body).await?;
        Ok(())
    }

    /// A small object (a manifest), whole.
    pub async fn get_small(&self, key: &str) -> Result<Bytes, BackupError> {
        let response = self.send(Method::GET, Some(key), &[], Bytes::new()).await?;
        read_small(response.into_body())
            .await
            .map_err(|detail| self.broken(key, detail))
    }

    /// An object's body, to read as it arrives.
    pub async fn get(&self, key: &str) -> Result<Incoming, BackupError> {
        Ok(self
            .send(Method::GET, Some(key), &[], Bytes::new())
            .await?
            .into_body())
    }

    pub fn broken(&self, key: &str, detail: String) -> BackupError {
        BackupError::Storage {
            location: self.describe(Some(key)),
            detail,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), BackupError> {
        self.send(Method::DELETE, Some(key), &[], Bytes::new())
            .await?;
        Ok(())
    }

    /// Every key under the prefix, with its size.
    ///
    /// Some S3-compatible servers check a signature against the decoded query where AWS
    /// checks the encoded one, so a `/` in a query value fails on one or the other: the
    /// listing asks for the prefix's first segment only, and the rest is filtered here.
    pub async fn list(&self) -> Result<Vec<(String, u64)>, BackupError> {
        let prefix = self.key("");
        let asked = asked_prefix(&prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", asked)];
            if let Some(token) = &token {
                query.push(("continuation-token", token.as_str()));
            }
            let response = self.send(Method::GET, None, &query, Bytes::new()).await?;
            let body = read_small(response.into_body())
                .await
                .map_err(|detail| self.broken(&prefix, detail))?;
            let body = String::from_utf8_lossy(&body);
            keys.extend(
                listed(&body)
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(&prefix)),
            );
            token = xml_tag(&body, "NextContinuationToken");
            if xml_tag(&body, "IsTruncated").as_deref() != Some("true") || token.is_none() {
                return Ok(keys);
            }
        }
    }

    pub async fn create_upload(&self, key: &str) -> Result<String, BackupError> {
        let response = self
            .send(Method::POST, Some(key), &[("uploads", "")], Bytes::new())
            .await?;
        let body = read_small(response.into_body())
            .await
            .map_err(|detail| self.broken(key, detail))?;
        xml_tag(&String::from_utf8_lossy(&body), "UploadId").ok_or_else(|| {
            self.broken(
                key,
                "the answer to a multipart upload had no UploadId".into(),
            )
        })
    }

    /// Uploads part `number` (from 1); returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload: &str,
        number: u32,
        body: Bytes,
    ) -> Result<String, BackupError> {
        let number = number.to_string();
        let response = self
            .send(
                Method::PUT,
                Some(key),
                &[("partNumber", &number), ("uploadId", upload)],
                body,
            )
            .await?;
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| self.broken(key, format!("part {number} was stored without an ETag")))?;
        // The connection is reused only once the (empty) body is read.
        let _ = read_small(response.into_body()).await;
        Ok(etag)
    }

    pub async fn complete_upload(
        &self,
        key: &str,
        upload: &str,
        etags: &[String],
    ) -> Result<(), BackupError> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (n, etag) in etags.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                n + 1,
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let response = self
            .send(
                Method::POST,
                Some(key),
                &[("uploadId", upload)],
                Bytes::from(body),
            )
            .await?;
        // S3 may answer 200 and still fail: the body then holds an Error.
        let answer = read_small(response.into_body())
            .await
            .map_err(|detail| self.broken(key, detail))?;
        let answer = String::from_utf8_lossy(&answer);
        if answer.contains("<Error>") {
            return Err(self.broken(
                key,
                format!(
                    "completing the upload failed: {}: {}",
                    xml_tag(&answer, "Code").unwrap_or_default(),
                    xml_tag(&answer, "Message").unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    pub async fn abort_upload(&self, key: &str, upload: &str) -> Result<(), BackupError> {
        self.send(
            Method::DELETE,
            Some(key),
            &[("uploadId", upload)],
            Bytes::new(),
        )
        .await?;
        Ok(())
    }
}

/// The part of `prefix` a listing asks for: up to its first `/`.
fn asked_prefix(prefix: &str) -> &str {
    prefix.split('/').next().unwrap_or_default()
}

/// The causes of a client error, outermost first ("client error (Connect): tcp connect
/// error: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A body of at most [`SMALL`] bytes.
pub async fn read_small(mut body: Incoming) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the answer: {}", error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > SMALL {
                return Err(format!("an answer over {SMALL} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// The text of the first `<tag>…</tag>`, unescaped.
pub fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml_unescape(&xml[start..end]))
}

/// Keys and sizes of a ListObjectsV2 answer.
fn listed(xml: &str) -> Vec<(String, u64)> {
    xml.split("<Contents>")
        .skip(1)
        .filter_map(|entry| {
            let key = xml_tag(entry, "Key")?;
            let size = xml_tag(entry, "Size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Some((key, size))
        })
        .collect()
}

fn xml_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_errors_are_read() {
        let list = r#"<?xml version="1.0"?><ListBucketResult><IsTruncated>true</IsTruncated>
            <Contents><Key>p/a&amp;b.json</Key><Size>12</Size></Contents>
            <Contents><Key>p/c.zst</Key><LastModified>x</LastModified><Size>99</Size></Contents>
            <NextContinuationToken>t1</NextContinuationToken></ListBucketResult>"#;
        assert_eq!(
            listed(list),
            [("p/a&b.json".to_string(), 12), ("p/c.zst".to_string(), 99)]
        );
        assert_eq!(
            xml_tag(list, "NextContinuationToken").as_deref(),
            Some("t1")
        );
        let error = "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you \
                     provided does not exist</Message></Error>";
        assert_eq!(
            xml_tag(error, "Code").as_deref(),
            Some("InvalidAccessKeyId")
        );
        assert_eq!(xml_tag(error, "Missing"), None);
        assert_eq!(xml_escape("\"e&t\""), "&quot;e&amp;t&quot;");
    }

    #[test]
    fn keys_sit_under_the_prefix() {
        let options = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "us-east-1".into(),
            credentials: S3Credentials {
                access_key: "a".into(),
                secret_key: "s".into(),
            },
        };
        let s3 = S3::new("b", "shop/daily", &options).unwrap();
        assert_eq!(s3.key("x.json"), "shop/daily/x.json");
        assert_eq!(S3::new("b", "", &options).unwrap().key("x.json"), "x.json");
        assert_eq!(asked_prefix("shop/daily/"), "shop");
        assert_eq!(asked_prefix(""), "");
        let bad = S3Options {
            endpoint: Some("ftp://h".into()),
            ..options
        };
        assert!(S3::new("b", "", &bad).is_err());
    }
}
