//! Sealed tokens: state handed to clients that carries user data (self-service process state
//! with the password being registered, auto-login credentials) is encrypted and authenticated
//! with AES-256-GCM under the shared `tokenKey`, bound to its purpose, and expires. Any node with
//! the key can open it; a changed byte, another purpose or an old token is refused.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::secrets::Key;

const NONCE_LENGTH: usize = 12;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not a token at all (bad encoding, too short).
    #[error("the token cannot be decoded")]
    Undecodable,
    /// Tampered with, sealed with another key, or for another purpose.
    #[error("the token is not authentic")]
    Forged,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    exp: u64,
    data: T,
}

/// Seals `data` for `purpose`, valid until `expires` (seconds since the epoch).
pub fn seal<T: Serialize>(key: &Key, purpose: &str, data: &T, expires: u64) -> Option<String> {
    let plaintext = serde_json::to_vec(&Envelope { exp: expires, data }).ok()?;
    let cipher = Aes256Gcm::new_from_slice(&key.0).ok()?;
    let nonce: [u8; NONCE_LENGTH] = rand::random();
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: purpose.as_bytes(),
            },
        )
        .ok()?;
    let mut bytes = Vec::with_capacity(NONCE_LENGTH + sealed.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Opens a token sealed for `purpose`, checking it has not expired at `now`.
pub fn open<T: DeserializeOwned>(key: &Key, purpose: &str, token: &str, now: u64) -> Result<T, SealError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| SealError::Undecodable)?;
    if bytes.len() <= NONCE_LENGTH {
        return Err(SealError::Undecodable);
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LENGTH);
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|_| SealError::Forged)?;
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: purpose.as_bytes(),
            },
        )
        .map_err(|_| SealError::Forged)?;
    let envelope: Envelope<T> = serde_json::from_slice(&plaintext).map_err(|_| SealError::Forged)?;
    if envelope.exp <= now {
        return Err(SealError::Expired);
    }
    Ok(envelope.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_the_same_key_and_purpose() {
        let token = seal(&Key([3; 32]), "process", &"secret".to_owned(), 100).unwrap();
        assert!(!token.contains("secret"));
        assert_eq!(open::<String>(&Key([3; 32]), "process", &token, 99).unwrap(), "secret");
        assert_eq!(
            open::<String>(&Key([4; 32]), "process", &token, 99),
            Err(SealError::Forged)
        );
        assert_eq!(
            open::<String>(&Key([3; 32]), "login", &token, 99),
            Err(SealError::Forged)
        );
        assert_eq!(
            open::<String>(&Key([3; 32]), "process", &token, 100),
            Err(SealError::Expired)
        );
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let token = seal(&Key([3; 32]), "p", &42_u32, 100).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(open::<u32>(&Key([3; 32]), "p", &tampered, 1), Err(SealError::Forged));
        assert_eq!(
            open::<u32>(&Key([3; 32]), "p", "garbage!", 1),
            Err(SealError::Undecodable)
        );
        assert_eq!(open::<u32>(&Key([3; 32]), "p", "abc", 1), Err(SealError::Undecodable));
    }
}
