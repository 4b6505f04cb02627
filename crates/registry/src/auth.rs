//! Who may pull and push: htpasswd (bcrypt) basic auth, bearer tokens from the built-in
//! `/token` endpoint (the Docker token flow, so `docker login` works), and optional
//! anonymous pull. Authenticated users may pull, push and delete everywhere; tokens
//! carry repository-scoped actions and are HS256 JWTs signed with the configured secret.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::config::{Config, TokenConfig};
use crate::error::{OciCode, OciError, RegistryError};
use crate::names::RepoName;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// How long a successful bcrypt check is remembered (bcrypt is slow on purpose, and
/// clients using basic auth send the password with every request).
const VERIFIED_TTL: Duration = Duration::from_secs(300);
const VERIFIED_MAX: usize = 4096;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// The authorizer.
#[derive(Debug)]
pub(crate) struct Auth {
    /// user -> bcrypt hash; `None` means authentication is off.
    users: Option<HashMap<String, String>>,
    anonymous_pull: bool,
    token: Option<TokenConfig>,
    // std Mutex: map lookups only, never across .await.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Grant>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Grant {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Auth {
    pub(crate) fn from_config(cfg: &Config) -> Result<Auth, RegistryError> {
        let users = match &cfg.htpasswd {
            None => None,
            Some(path) => Some(load_htpasswd(path)?),
        };
        Ok(Auth {
            users,
            anonymous_pull: cfg.anonymous_pull,
            token: cfg.token.clone(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.users.is_some()
    }

    /// Allows the request or answers 401 with a challenge the client can follow.
    /// `repo` is `None` for the base endpoint `/v2/`.
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        repo: Option<&RepoName>,
        action: Action,
    ) -> Result<(), OciError> {
        if !self.enabled() {
            return Ok(());
        }
        match credentials(headers) {
            Credentials::Basic(user, pass) => {
                if self.check_password(&user, &pass).await {
                    return Ok(());
                }
                Err(self
                    .challenge(headers, repo, action, None)
                    .detail("invalid username or password"))
            }
            Credentials::Bearer(token) => {
                let Some(claims) = self.verify_token(&token) else {
                    return Err(self.challenge(headers, repo, action, Some("invalid_token")));
                };
                let Some(repo) = repo else { return Ok(()) };
                let allowed = claims.access.iter().any(|g| {
                    g.kind == "repository"
                        && g.name == repo.as_str()
                        && g.actions.iter().any(|a| a == action.as_str() || a == "*")
                });
                if allowed {
                    Ok(())
                } else {
                    Err(self.challenge(headers, Some(repo), action, Some("insufficient_scope")))
                }
            }
            Credentials::None => {
                if action == Action::Pull && repo.is_some() && self.anonymous_pull {
                    return Ok(());
                }
                Err(self.challenge(headers, repo, action, None))
            }
        }
    }

    fn challenge(
        &self,
        headers: &HeaderMap,
        repo: Option<&RepoName>,
        action: Action,
        error: Option<&str>,
    ) -> OciError {
        let value = match &self.token {
            Some(t) => {
                let realm = t.realm.clone().unwrap_or_else(|| {
                    let host = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("localhost");
                    format!("http://{host}/token")
                });
                let mut v = format!("Bearer realm=\"{realm}\",service=\"{}\"", t.service);
                if let Some(repo) = repo {
                    let actions = match action {
                        Action::Pull => "pull",
                        Action::Push => "pull,push",
                        Action::Delete => "delete",
                    };
                    v.push_str(&format!(",scope=\"repository:{repo}:{actions}\""));
                }
                if let Some(e) = error {
                    v.push_str(&format!(",error=\"{e}\""));
                }
                v
            }
            None => "Basic realm=\"geoha-registry\"".to_owned(),
        };
        OciError::new(OciCode::Unauthorized).header(header::WWW_AUTHENTICATE, &value)
    }

    async fn check_password(&self, user: &str, pass: &str) -> bool {
        let Some(hash) = self.users.as_ref().and_then(|u| u.get(user)).cloned() else {
            return false;
        };
        let key: [u8; 32] = Sha256::digest(format!("{user}\0{pass}\0{hash}").as_bytes()).into();
        {
            let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.get(&key).is_some_and(|t| t.elapsed() < VERIFIED_TTL) {
                return true;
            }
        }
        let pass = pass.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= VERIFIED_MAX {
                cache.clear();
            }
            cache.insert(key, Instant::now());
        }
        ok
    }

    // === tokens ===

    /// `GET /token?service=..&scope=repository:NAME:pull,push`: issues a token for the
    /// requested scopes, narrowed to what the caller may do.
    pub(crate) async fn issue_token(
        &self,
        headers: &HeaderMap,
        query: &str,
    ) -> Result<serde_json::Value, OciError> {
        let Some(cfg) = &self.token else {
            return Err(OciError::new(OciCode::Unsupported)
                .status(StatusCode::NOT_FOUND)
                .detail("no token service configured"));
        };
        let subject = match credentials(headers) {
            Credentials::Basic(user, pass) => {
                if !self.check_password(&user, &pass).await {
                    return Err(OciError::new(OciCode::Unauthorized)
                        .header(header::WWW_AUTHENTICATE, "Basic realm=\"geoha-registry\"")
                        .detail("invalid username or password"));
                }
                Some(user)
            }
            _ => None,
        };
        let mut access = Vec::new();
        for (k, v) in form_pairs(query) {
            if k != "scope" {
                continue;
            }
            for scope in v.split(' ') {
                let mut parts = scope.rsplitn(2, ':');
                let (Some(actions), Some(rest)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Some(("repository", name)) = rest.split_once(':') else {
                    continue;
                };
                if RepoName::parse(name).is_none() {
                    continue;
                }
                let granted: Vec<String> = actions
                    .split(',')
                    .filter(|a| match (*a, &subject) {
                        ("pull" | "push" | "delete" | "*", Some(_)) => true,
                        ("pull", None) => !self.enabled() || self.anonymous_pull,
                        _ => false,
                    })
                    .map(str::to_owned)
                    .collect();
                access.push(Grant {
                    kind: "repository".into(),
                    name: name.to_owned(),
                    actions: granted,
                });
            }
        }
        let now = crate::now_ms() / 1000;
        let claims = Claims {
            iss: cfg.service.clone(),
            sub: subject.unwrap_or_default(),
            aud: cfg.service.clone(),
            exp: now + cfg.lifetime.as_secs(),
            nbf: now.saturating_sub(5),
            iat: now,
            jti: crate::names::new_upload_id(),
            access,
        };
        let token = sign(&cfg.secret, &claims);
        Ok(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": cfg.lifetime.as_secs(),
            "issued_at": rfc3339(now),
        }))
    }

    fn verify_token(&self, token: &str) -> Option<Claims> {
        let cfg = self.token.as_ref()?;
        let (signed, sig) = token.rsplit_once('.')?;
        let sig = B64.decode(sig).ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(cfg.secret.as_bytes()).ok()?;
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let (_, payload) = signed.split_once('.')?;
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        let now = crate::now_ms() / 1000;
        (claims.aud == cfg.service && claims.exp > now && claims.nbf <= now).then_some(claims)
    }
}

fn sign(secret: &str, claims: &Claims) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{header}.{payload}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credentials::None;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok();
        let text = decoded.and_then(|d| String::from_utf8(d).ok());
        match text.as_deref().and_then(|t| t.split_once(':')) {
            Some((u, p)) => Credentials::Basic(u.to_owned(), p.to_owned()),
            None => Credentials::Basic(String::new(), String::new()),
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Credentials::Bearer(rest.trim().to_owned())
    } else {
        Credentials::None
    }
}

/// `k=v&k=v` pairs with `%XX` and `+` decoded.
pub(crate) fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn rfc3339(secs: u64) -> String {
    // RFC 3339 in UTC without a date library: civil-from-days (Howard Hinnant).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn load_htpasswd(path: &Path) -> Result<HashMap<String, String>, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
        what: "reading htpasswd",
        path: path.to_owned(),
        source,
    })?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: &str| RegistryError::Htpasswd {
            path: path.to_owned(),
            line: i + 1,
            message: message.to_owned(),
        };
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| err("expected user:hash"))?;
        if user.is_empty() {
            return Err(err("empty user name"));
        }
        if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
            return Err(err("only bcrypt entries are supported (htpasswd -B)"));
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_query_decoding() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            form_pairs("scope=repository%3Aa%2Fb%3Apull%2Cpush&service=x+y"),
            vec![
                ("scope".into(), "repository:a/b:pull,push".into()),
                ("service".into(), "x y".into())
            ]
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let auth = Auth {
            users: Some(HashMap::new()),
            anonymous_pull: false,
            token: Some(TokenConfig {
                secret: "0123456789abcdef".into(),
                service: "svc".into(),
                realm: None,
                lifetime: Duration::from_secs(60),
            }),
            verified: Mutex::new(HashMap::new()),
        };
        let now = crate::now_ms() / 1000;
        let claims = Claims {
            iss: "svc".into(),
            sub: "u".into(),
            aud: "svc".into(),
            exp: now + 60,
            nbf: now - 1,
            iat: now,
            jti: "j".into(),
            access: vec![],
        };
        let t = sign("0123456789abcdef", &claims);
        assert!(auth.verify_token(&t).is_some());
        assert!(auth
            .verify_token(&sign("another secret!!", &claims))
            .is_none());
        let expired = Claims {
            exp: now - 1,
            ..claims
        };
        assert!(auth
            .verify_token(&sign("0123456789abcdef", &expired))
            .is_none());
    }
}
