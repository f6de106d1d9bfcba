//! Where backups are kept: a directory (`file:///path` or a plain path) or an S3 bucket and
//! prefix (`s3://bucket/prefix`), with the S3 endpoint, region and credentials given apart.

use std::path::PathBuf;

use super::BackupError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c);
            if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
                return Err(BackupError::Location(format!(
                    "{text}: `{bucket}` is not an S3 bucket name (3-63 lowercase letters, digits, \
                     dots and hyphens)"
                )));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") {
                return Err(BackupError::Location(format!(
                    "{text}: the prefix may not hold `.` or `..`"
                )));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if let Some((scheme, _)) = text.split_once("://")
            && scheme != "file"
        {
            return Err(BackupError::Location(format!(
                "{text}: a destination is s3://bucket/prefix, file:///path or a path"
            )));
        }
        if path.is_empty() {
            return Err(BackupError::Location("an empty destination".into()));
        }
        let path = PathBuf::from(path);
        Ok(Self::Dir(std::path::absolute(&path).unwrap_or(path)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(path) => write!(f, "{}", path.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// The environment variables (and the keys of a Kubernetes credentials Secret) that hold an
/// S3 key.
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// An access key for S3, read from a file of `KEY=value` lines (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, the names the AWS tools use), never from the command line,
/// where every process could read it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Credentials({}, <secret>)", self.access_key)
    }
}

impl S3Credentials {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut access_key = None;
        let mut secret_key = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                format!(
                    "`{}` is not KEY=value",
                    line.split('=').next().unwrap_or("")
                )
            })?;
            let value = value.trim().trim_matches('"').to_string();
            match key.trim().trim_start_matches("export ").trim() {
                "AWS_ACCESS_KEY_ID" => access_key = Some(value),
                "AWS_SECRET_ACCESS_KEY" => secret_key = Some(value),
                _ => {}
            }
        }
        match (access_key, secret_key) {
            (Some(access_key), Some(secret_key)) => Ok(Self {
                access_key,
                secret_key,
            }),
            _ => Err("it needs AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… lines".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            Location::parse("s3://backups/shop/daily/").unwrap(),
            Location::S3 {
                bucket: "backups".into(),
                prefix: "shop/daily".into()
            }
        );
        assert_eq!(
            Location::parse("s3://backups").unwrap(),
            Location::S3 {
                bucket: "backups".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("file:///var/backups").unwrap(),
            Location::Dir("/var/backups".into())
        );
        assert_eq!(
            Location::parse("/var/backups").unwrap(),
            Location::Dir("/var/backups".into())
        );
        for bad in ["s3://B", "s3://a/../b", "gs://x/y", "", "s3://under_score"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Location::parse("s3://b-1/p").unwrap().to_string(),
            "s3://b-1/p"
        );
    }

    #[test]
    fn credentials_file() {
        let c = S3Credentials::parse(
            "# comment\nexport AWS_ACCESS_KEY_ID=AKIA1\nAWS_SECRET_ACCESS_KEY=\"s/e=cret\"\n",
        )
        .unwrap();
        assert_eq!(c.access_key, "AKIA1");
        assert_eq!(c.secret_key, "s/e=cret");
        assert!(!format!("{c:?}").contains("s/e="));
        assert!(S3Credentials::parse("AWS_ACCESS_KEY_ID=x\n").is_err());
    }
}
