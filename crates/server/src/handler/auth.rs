//! HTTP Basic on a channel: the credentials a request carries, checked against the stored hash.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::Shared;
use otaforge_store::ChannelAuth;

/// The user and password of an HTTP Basic `Authorization` header (RFC 7617: the scheme name is
/// case-insensitive).
pub(super) fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let (user, pass) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.into(), p.into()))?;
    Some((user, pass))
}

/// Checks a request's credentials against the channel's hash. Argon2 costs tens of milliseconds
/// and ~19 MiB, so it runs off the async threads, a few at a time; credentials that verified are
/// remembered (by a digest that includes the stored hash) so polling devices do not pay it each time.
pub(super) async fn authorized(shared: &Shared, header: Option<&str>, auth: &ChannelAuth) -> bool {
    let Some((user, pass)) = basic_credentials(header) else { return false };
    if pass.is_empty() {
        return false;
    }
    let key: [u8; 32] = Sha256::new()
        .chain_update(auth.password_hash.as_bytes())
        .chain_update([0])
        .chain_update(user.as_bytes())
        .chain_update([0])
        .chain_update(pass.as_bytes())
        .finalize()
        .into();
    if shared.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return true;
    }
    let Ok(Ok(_permit)) = tokio::time::timeout(shared.config.header_timeout, shared.hashing.acquire()).await
    else {
        return false;
    };
    let auth = auth.clone();
    let ok = tokio::task::spawn_blocking(move || auth.verify(&user, &pass)).await.unwrap_or(false);
    if ok {
        let mut verified = shared.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= 4096 {
            verified.clear();
        }
        verified.insert(key);
    }
    ok
}
