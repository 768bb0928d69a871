//! Signed commands: a system with a registered NATS user nkey (public key `U…`) must sign the
//! exact bytes of each command body with its seed (Ed25519); the signature travels, base64url,
//! in the `Sop-Signature` header. This binds the `actor` written in a command to a key only
//! that system holds. A re-played signed command is answered from the inbox (same id, no
//! effect); changing anything in it, the id included, breaks the signature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;

pub const SIGNATURE_HEADER: &str = "Sop-Signature";

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
}
