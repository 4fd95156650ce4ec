//! Bearer tokens: researchers and administrators present one in the `authorization`
//! metadata (`Bearer <token>`, or `Basic` with the token as password); the node keeps
//! only each token's SHA-256.

use std::collections::HashMap;

use base64::Engine as _;
use rand::RngCore;
use tonic::{Request, Status};

use crate::{
    node::config::{Role, Token},
    node::store::sha256_hex,
};

/// The configured tokens, by hash.
pub struct Tokens(HashMap<String, (String, Role)>);

/// Makes a new random token (`zkf_` and 64 hex digits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("zkf_{}", hex::encode(bytes))
}

impl Tokens {
    /// The tokens of a configuration.
    pub fn new(tokens: &[Token]) -> Self {
        Self(
            tokens
                .iter()
                .map(|t| (t.sha256.to_lowercase(), (t.name.clone(), t.role)))
                .collect(),
        )
    }

    /// The name of the caller if its token has `role` (an admin has every role):
    /// UNAUTHENTICATED without a known token, PERMISSION_DENIED with too small a role.
    pub fn require<T>(&self, request: &Request<T>, role: Role) -> Result<String, Status> {
        let token = presented_token(request)?;
        let (name, granted) = self
            .0
            .get(&sha256_hex(token.trim().as_bytes()))
            .ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
        if role == Role::Admin && *granted != Role::Admin {
            return Err(Status::permission_denied(format!(
                "token `{name}` has the researcher role; this call needs admin"
            )));
        }
        Ok(name.clone())
    }
}

/// The token a call presents in its `authorization` metadata: `Bearer <token>`, or
/// `Basic` with the token as the password (for clients that only know user names and
/// passwords, such as Flight SQL's JDBC driver; the user name is ignored).
pub fn presented_token<T>(request: &Request<T>) -> Result<String, Status> {
    let header = request.metadata().get("authorization").ok_or_else(|| {
        Status::unauthenticated("no bearer token: send `authorization: Bearer <token>`")
    })?;
    let malformed =
        || Status::unauthenticated("malformed authorization: expected `Bearer <token>`");
    let header = header.to_str().map_err(|_| malformed())?;
    if let Some(token) = header.strip_prefix("Bearer ") {
        return Ok(token.to_string());
    }
    let basic = header.strip_prefix("Basic ").ok_or_else(malformed)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(malformed)?;
    let (_user, token) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(token.to_string())
}
