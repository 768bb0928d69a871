//! Signed commands and queries: a system with a registered NATS user nkey (public key `U…`)
//! signs each command, and each query, with its seed (Ed25519); the signature travels,
//! base64url, in the `Sop-Signature` header. This binds the `actor` written in a message to a
//! key only that system holds.
//!
//! What is signed is more than the body, so a signature cannot be moved to another use:
//! - a command: its name and its exact body ([`command_message`]), so a body signed for
//!   `procedure.reject` is refused on `procedure.retire`, which takes the same payload. A
//!   re-played signed command is answered from the inbox (same id, no effect); changing
//!   anything in it, the id included, breaks the signature.
//! - a query: its name, the time it was signed (header `Sop-Signed-At`, RFC 3339) and its
//!   exact body ([`query_message`]); the worker refuses a time further than
//!   [`MAX_QUERY_SKEW_SECS`] from its clock, so a captured query cannot be replayed later to
//!   read newer data.
//!
//! The name is the command or query name, without the deployment's subject prefix: a prefix
//! can be remapped between NATS accounts on its way to the worker.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;

pub const SIGNATURE_HEADER: &str = "Sop-Signature";
/// The public key (`U…`) that made the signature, when it is not the system's registered key:
/// a bearer token's key ([`crate::wire::admin::IssueToken`]).
pub const KEY_HEADER: &str = "Sop-Key";
/// When a query was signed, RFC 3339; covered by its signature.
pub const SIGNED_AT_HEADER: &str = "Sop-Signed-At";
/// How far a signed query's time may be from the worker's clock, either way (the contract
/// and docs say 60 s).
pub const MAX_QUERY_SKEW_SECS: i64 = 60;

/// The bytes a command's signature is over: a tag, the command name, and the body.
pub fn command_message(command: &str, body: &[u8]) -> Vec<u8> {
    tagged("sop-command-v1", &[command.as_bytes()], body)
}

/// The bytes a query's signature is over: a tag, the query name, the `Sop-Signed-At` value as
/// sent, and the body.
pub fn query_message(query: &str, signed_at: &str, body: &[u8]) -> Vec<u8> {
    tagged(
        "sop-query-v1",
        &[query.as_bytes(), signed_at.as_bytes()],
        body,
    )
}

/// Newline-separated: no name or time contains one, so two different messages never give the
/// same bytes.
fn tagged(tag: &str, parts: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(tag.len() + body.len() + 64);
    message.extend_from_slice(tag.as_bytes());
    for part in parts {
        message.push(b'\n');
        message.extend_from_slice(part);
    }
    message.push(b'\n');
    message.extend_from_slice(body);
    message
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("`{0}` is not a NATS user public key (U…)")]
    NotAUserKey(String),
    #[error("`{0}` is not a NATS user seed (SU…)")]
    NotAUserSeed(String),
    #[error("the signature is not base64url")]
    Encoding,
    #[error("the signature does not verify against the system's key")]
    Mismatch,
}

/// Checks that `key` is a user public key, as registered on a system.
pub fn parse_public_key(key: &str) -> Result<KeyPair, SignatureError> {
    let key = key.trim();
    if !key.starts_with('U') {
        return Err(SignatureError::NotAUserKey(key.into()));
    }
    KeyPair::from_public_key(key).map_err(|_| SignatureError::NotAUserKey(key.into()))
}

pub fn signer(seed: &str) -> Result<KeyPair, SignatureError> {
    let seed = seed.trim();
    let pair = KeyPair::from_seed(seed).map_err(|_| SignatureError::NotAUserSeed("…".into()))?;
    if !pair.public_key().starts_with('U') {
        return Err(SignatureError::NotAUserSeed("…".into()));
    }
    Ok(pair)
}

pub fn sign(pair: &KeyPair, body: &[u8]) -> String {
    // Invariant: a key pair made from a seed holds its private key.
    URL_SAFE_NO_PAD.encode(pair.sign(body).unwrap_or_default())
}

pub fn verify(public_key: &str, body: &[u8], signature: &str) -> Result<(), SignatureError> {
    let key = parse_public_key(public_key)?;
    let raw = URL_SAFE_NO_PAD
        .decode(signature.trim())
        .map_err(|_| SignatureError::Encoding)?;
    key.verify(body, &raw).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_its_bytes() {
        let pair = KeyPair::new_user();
        let seed = pair.seed().unwrap();
        let own = signer(&seed).unwrap();
        let sig = sign(&own, b"{\"command\":1}");
        assert_eq!(verify(&pair.public_key(), b"{\"command\":1}", &sig), Ok(()));
        assert_eq!(
            verify(&pair.public_key(), b"{\"command\":2}", &sig),
            Err(SignatureError::Mismatch)
        );
        let other = KeyPair::new_user();
        assert_eq!(
            verify(&other.public_key(), b"{\"command\":1}", &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&pair.public_key(), b"x", "***"),
            Err(SignatureError::Encoding)
        );
        assert!(parse_public_key(&KeyPair::new_account().public_key()).is_err());
        assert!(signer("not a seed").is_err());
    }

    #[test]
    fn a_signature_binds_the_command_or_query_it_was_made_for() {
        let pair = KeyPair::new_user();
        let body = br#"{"procedure_id":"x","reason":"y"}"#;
        let sig = sign(&pair, &command_message("procedure.reject", body));
        let key = pair.public_key();
        assert_eq!(
            verify(&key, &command_message("procedure.reject", body), &sig),
            Ok(())
        );
        assert_eq!(
            verify(&key, &command_message("procedure.retire", body), &sig),
            Err(SignatureError::Mismatch)
        );
        let at = "2026-12-04T12:00:00Z";
        let sig = sign(&pair, &query_message("run.get", at, body));
        assert_eq!(
            verify(&key, &query_message("run.get", at, body), &sig),
            Ok(())
        );
        assert_eq!(
            verify(
                &key,
                &query_message("run.get", "2026-12-04T12:00:01Z", body),
                &sig
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&key, &query_message("procedure.get", at, body), &sig),
            Err(SignatureError::Mismatch)
        );
        assert_ne!(
            command_message("a", b"b\nc"),
            query_message("a", "b", b"c"),
            "commands and queries never sign the same bytes"
        );
    }
}
