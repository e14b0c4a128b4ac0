//! Where Redis is and how to reach it: URL parsing for standalone, Cluster and Sentinel
//! deployments, the password from the environment or a file, and `redacted_url()` so
//! that no password ever reaches a log line.
//!
//! URL forms:
//! - `redis://[:password@]host:port[/db]`, `rediss://…` (TLS), `redis+unix:///path`;
//! - `redis+cluster://[:password@]host:port,host:port,…` (or `rediss+cluster://`): seed
//!   nodes of a Cluster;
//! - `redis+sentinel://[:password@]host:port,host:port,…/service[/db]` (or
//!   `rediss+sentinel://`): Sentinels and the monitored service name. The password (if
//!   any) is the data nodes' password.

use redis::{ConnectionInfo, IntoConnectionInfo};

/// A parsed Redis target.
#[derive(Debug, Clone)]
pub enum Target {
    Standalone(ConnectionInfo),
    Cluster(Vec<ConnectionInfo>),
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        service: String,
        /// Settings (db, password) for the data nodes the Sentinels name.
        node: redis::RedisConnectionInfo,
        tls: bool,
    },
}

/// A Redis URL tokengate cannot use. Never holds the URL (it may carry a password).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL (expected redis://, rediss://, redis+cluster://, redis+sentinel://)")]
    NotUrl,
    #[error("unsupported scheme {0}://")]
    Scheme(String),
    #[error("{0}")]
    Shape(&'static str),
    #[error("{source}")]
    Parse {
        #[source]
        source: redis::RedisError,
    },
}

fn parse_error(source: redis::RedisError) -> UrlError {
    UrlError::Parse { source }
}

/// Parses `url`; `password` (from `password_env`/`password_file`) overrides any in the URL.
pub fn parse(url: &str, password: Option<&str>) -> Result<Target, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotUrl)?;
    let with_password = |info: ConnectionInfo| match password {
        Some(p) => {
            let settings = info.redis_settings().clone().set_password(p);
            info.set_redis_settings(settings)
        }
        None => info,
    };
    match scheme {
        "redis" | "rediss" | "redis+unix" | "unix" => {
            let info = url.into_connection_info().map_err(parse_error)?;
            Ok(Target::Standalone(with_password(info)))
        }
        "redis+cluster" | "rediss+cluster" => {
            let base = if scheme.starts_with("rediss") {
                "rediss"
            } else {
                "redis"
            };
            let (userinfo, hosts, _) = split(rest);
            let nodes = hosts
                .iter()
                .map(|h| node_url(base, userinfo, h, ""))
                .map(|u| u.as_str().into_connection_info().map(with_password))
                .collect::<Result<Vec<_>, _>>()
                .map_err(parse_error)?;
            if nodes.is_empty() {
                return Err(UrlError::Shape("no cluster node in the URL"));
            }
            Ok(Target::Cluster(nodes))
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let tls = scheme.starts_with("rediss");
            let (userinfo, hosts, path) = split(rest);
            let mut segments = path.split('/').filter(|s| !s.is_empty());
            let service = segments
                .next()
                .ok_or(UrlError::Shape(
                    "the sentinel URL needs the service name as its path",
                ))?
                .to_string();
            let db = segments.next().unwrap_or("0");
            let sentinels = hosts
                .iter()
                .map(|h| node_url(if tls { "rediss" } else { "redis" }, None, h, ""))
                .map(|u| u.as_str().into_connection_info())
                .collect::<Result<Vec<_>, _>>()
                .map_err(parse_error)?;
            let node_info = node_url("redis", userinfo, "127.0.0.1:6379", db)
                .as_str()
                .into_connection_info()
                .map(with_password)
                .map_err(parse_error)?;
            Ok(Target::Sentinel {
                sentinels,
                service,
                node: node_info.redis_settings().clone(),
                tls,
            })
        }
        other => Err(UrlError::Scheme(other.to_string())),
    }
}

/// Splits `[userinfo@]h1,h2/path` into its parts.
fn split(rest: &str) -> (Option<&str>, Vec<&str>, &str) {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let hosts = hosts.split(',').filter(|h| !h.is_empty()).collect();
    (userinfo, hosts, path)
}

fn node_url(scheme: &str, userinfo: Option<&str>, host: &str, db: &str) -> String {
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{host}/{db}"),
        None => format!("{scheme}://{host}/{db}"),
    }
}

/// The URL with any password replaced by `***`, for logs and readiness bodies.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(invalid url)".into();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{}", &rest[at + 1..]),
            // A user name alone (the password comes from password_env/_file).
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redacted_url("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            redacted_url("redis+cluster://u:p@a:1,b:2"),
            "redis+cluster://u:***@a:1,b:2"
        );
        assert_eq!(redacted_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            redacted_url("rediss://tokengate@h:6380/0"),
            "rediss://tokengate@h:6380/0"
        );
    }

    #[test]
    fn forms_parse() {
        assert!(matches!(
            parse("redis://127.0.0.1:6379/0", None),
            Ok(Target::Standalone(_))
        ));
        match parse("redis+cluster://a:7000,b:7001", Some("pw")) {
            Ok(Target::Cluster(nodes)) => {
                assert_eq!(nodes.len(), 2);
                assert_eq!(nodes[1].redis_settings().password(), Some("pw"));
            }
            other => panic!("{other:?}"),
        }
        match parse("redis+sentinel://a:26379,b:26379/mymaster/2", None) {
            Ok(Target::Sentinel {
                sentinels,
                service,
                node,
                ..
            }) => {
                assert_eq!(sentinels.len(), 2);
                assert_eq!(service, "mymaster");
                assert_eq!(node.db(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("http://x", None).is_err());
        assert!(parse("redis+sentinel://a:1", None).is_err());
    }
}
