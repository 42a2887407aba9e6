//! IDM's encrypted values, `{"$crypto": {"type": "x-simple-encryption", "value": {…}}}`, opened
//! with a key an administrator exported from IDM's keystore (`openidm-sym-default`), so that
//! `ferridm import` can take users whose passwords IDM stored encrypted rather than hashed.
//!
//! IDM encrypts the JSON text of the value with AES/CBC/PKCS5Padding. Since IDM 5 the value
//! carries a `salt` and a `mac`: the AES key and a MAC key are derived from the keystore key by
//! HKDF-SHA256 (that salt; info `AES` for a key as long as the keystore key, `HmacSHA256` for a
//! 32-byte MAC key), and `mac` is HMAC-SHA256 over the value's other fields (name, then text,
//! in name order), cut to 16 bytes. Older values have neither and use the keystore key as is.
//! Values IDM encrypted with a key pair (a `key` object) are not supported.

use std::collections::BTreeMap;
use std::path::Path;

use aes::cipher::{BlockDecryptMut as _, KeyIvInit as _, block_padding::Pkcs7};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;

/// The `$crypto` type of values IDM encrypted with its own keys.
pub const IDM_ENCRYPTION: &str = "x-simple-encryption";
/// The one cipher IDM's symmetric encryption uses.
const CIPHER: &str = "AES/CBC/PKCS5Padding";
/// Bytes of the MAC IDM keeps (half of HMAC-SHA256).
const MAC_BYTES: usize = 16;
/// Bytes of the derived MAC key.
const MAC_KEY_BYTES: usize = 32;

/// Keys for IDM's encrypted values: by keystore alias, and one for any alias.
#[derive(Default, Clone)]
pub struct IdmKeys {
    by_alias: BTreeMap<String, Vec<u8>>,
    any_alias: Option<Vec<u8>>,
}

impl std::fmt::Debug for IdmKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdmKeys")
            .field("aliases", &self.by_alias.keys().collect::<Vec<_>>())
            .field("any_alias", &self.any_alias.is_some())
            .finish()
    }
}

impl IdmKeys {
    /// True when no key was given.
    pub fn is_empty(&self) -> bool {
        self.by_alias.is_empty() && self.any_alias.is_none()
    }

    /// Adds a key from `[ALIAS=]FILE`: the file holds the raw AES key (16, 24 or 32 bytes) in
    /// base64. Without an alias the key opens values of any alias not named by another key.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (alias, file) = match spec.split_once('=') {
            Some((alias, file)) if !alias.is_empty() && !Path::new(spec).exists() => (Some(alias), file),
            _ => (None, spec),
        };
        let text = std::fs::read_to_string(file).map_err(|error| format!("{file}: {error}"))?;
        let key = STANDARD
            .decode(text.trim())
            .map_err(|error| format!("{file}: the key is not base64: {error}"))?;
        if ![16, 24, 32].contains(&key.len()) {
            return Err(format!(
                "{file}: an AES key has 16, 24 or 32 bytes, this one has {}",
                key.len()
            ));
        }
        match alias {
            Some(alias) => {
                self.by_alias.insert(alias.to_owned(), key);
            }
            None => self.any_alias = Some(key),
        }
        Ok(())
    }

    /// Opens the `value` of an `x-simple-encryption` `$crypto` object to the JSON value IDM
    /// encrypted, or says why it cannot be opened.
    pub fn decrypt(&self, value: &Value) -> Result<Value, String> {
        let fields = value
            .as_object()
            .ok_or_else(|| "its encrypted value is not an object".to_owned())?;
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("its encrypted value has no \"{name}\""))
        };
        let bytes = |name: &str| {
            text(name).and_then(|encoded| {
                STANDARD
                    .decode(encoded)
                    .map_err(|_| format!("its encrypted value's \"{name}\" is not base64"))
            })
        };
        let cipher = text("cipher")?;
        if cipher != CIPHER {
            return Err(format!("its cipher {cipher} is not supported (only {CIPHER})"));
        }
        let alias = match fields.get("key").or_else(|| fields.get("stableId")) {
            Some(Value::String(alias)) => alias.as_str(),
            Some(Value::Object(_)) => return Err("it is encrypted with a key pair, which is not supported".to_owned()),
            _ => return Err("its encrypted value names no key".to_owned()),
        };
        let key = self
            .by_alias
            .get(alias)
            .or(self.any_alias.as_ref())
            .ok_or_else(|| format!("no key was given for its key alias \"{alias}\""))?;
        let data = bytes("data")?;
        let iv = bytes("iv")?;
        let aes_key = match (fields.get("salt"), fields.get("mac")) {
            (None, None) => key.clone(),
            (Some(_), Some(_)) => {
                let hkdf = Hkdf::<Sha256>::new(Some(&bytes("salt")?), key);
                let mut aes_key = vec![0; key.len()];
                let mut mac_key = [0; MAC_KEY_BYTES];
                hkdf.expand(b"AES", &mut aes_key)
                    .and_then(|()| hkdf.expand(b"HmacSHA256", &mut mac_key))
                    .map_err(|_| "its key cannot be derived".to_owned())?;
                verify_mac(fields, &mac_key, &bytes("mac")?)?;
                aes_key
            }
            _ => return Err("its encrypted value has a salt or a MAC without the other".to_owned()),
        };
        let plain = decrypt_cbc(&aes_key, &iv, &data)?;
        serde_json::from_slice(&plain)
            .map_err(|_| "it does not open to JSON with the given key (is it the right key?)".to_owned())
    }
}

/// Checks IDM's MAC: HMAC-SHA256 over every field but `mac`, in name order (each name, then
/// its text; an object's fields likewise), compared on its first 16 bytes in constant time.
fn verify_mac(fields: &serde_json::Map<String, Value>, mac_key: &[u8], expected: &[u8]) -> Result<(), String> {
    fn feed(mac: &mut Hmac<Sha256>, fields: &serde_json::Map<String, Value>) {
        let sorted: BTreeMap<&String, &Value> = fields.iter().filter(|(name, _)| *name != "mac").collect();
        for (name, value) in sorted {
            mac.update(name.as_bytes());
            match value {
                Value::Object(inner) => feed(mac, inner),
                Value::String(text) => mac.update(text.as_bytes()),
                other => mac.update(other.to_string().as_bytes()),
            }
        }
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(mac_key).map_err(|_| "its MAC key is unusable".to_owned())?;
    feed(&mut mac, fields);
    if expected.len() != MAC_BYTES {
        return Err(format!("its MAC has {} bytes, not {MAC_BYTES}", expected.len()));
    }
    mac.verify_truncated_left(expected)
        .map_err(|_| "its MAC does not match: it was encrypted with another key, or altered".to_owned())
}

/// AES-CBC with PKCS#7 padding, for the three AES key sizes.
fn decrypt_cbc(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let refused = |_| "it does not decrypt with the given key (is it the right key?)".to_owned();
    let bad_iv = |_| "its IV or key has the wrong length".to_owned();
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(bad_iv)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(refused),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .map_err(bad_iv)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(refused),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(bad_iv)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(refused),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Values made by `tests/support/idm-encryption/make_vectors.py` (Python's `cryptography`).
    const KEY_128: &str = "AAECAwQFBgcICQoLDA0ODw==";
    const KEY_256: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";

    fn keys(spec: &[(&str, &str)]) -> IdmKeys {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = IdmKeys::default();
        for (index, (alias, key)) in spec.iter().enumerate() {
            let file = dir.path().join(format!("key{index}"));
            std::fs::write(&file, format!("{key}\n")).unwrap();
            let file = file.display().to_string();
            keys.add(&if alias.is_empty() {
                file
            } else {
                format!("{alias}={file}")
            })
            .unwrap();
        }
        keys
    }

    fn salted_128() -> Value {
        json!({"cipher": "AES/CBC/PKCS5Padding", "key": "openidm-sym-default", "data": "EXjBJg/xGF9XDg65RfFnCA==",
            "iv": "L8lhkVzFtZ5k97IwkECbxw==", "salt": "nqNYWdu0BKDuGTfLTe+5LQ==", "mac": "naHGG+UnUWRzeY68ERfxHA=="})
    }

    #[test]
    fn idm_values_open_to_what_was_encrypted() {
        assert_eq!(keys(&[("", KEY_128)]).decrypt(&salted_128()), Ok(json!("Passw0rd!")));
        let legacy = json!({"cipher": "AES/CBC/PKCS5Padding", "key": "openidm-sym-default",
            "data": "4Aya0yLAtn6WaQcjD1I7sw==", "iv": "pSp7q93IH+h2Q9dYmqzFWQ=="});
        assert_eq!(keys(&[("", KEY_128)]).decrypt(&legacy), Ok(json!("Passw0rd!")));
        let aes_256 = json!({"cipher": "AES/CBC/PKCS5Padding", "key": "openidm-sym-default",
            "data": "5CnUgsgypv6XzB4aqDaD8SXkCr6d+i2jNfWK5xkUTZ0=", "iv": "c0jZl6RqxCV3pppVMFrQ+Q==",
            "salt": "0KOPYHq+N2sS+q56hjlYDg==", "mac": "RldG9XcAm7Lk9fhcjhq40A=="});
        assert_eq!(keys(&[("", KEY_256)]).decrypt(&aes_256), Ok(json!({"answer": "blue"})));
        // A key named for the alias is preferred over the one for any alias.
        let both = keys(&[("", KEY_256), ("openidm-sym-default", KEY_128)]);
        assert_eq!(both.decrypt(&salted_128()), Ok(json!("Passw0rd!")));
    }

    #[test]
    fn a_wrong_key_or_an_altered_value_is_refused() {
        let wrong = keys(&[("", "AQECAwQFBgcICQoLDA0ODw==")]);
        let refusal = wrong.decrypt(&salted_128()).unwrap_err();
        assert!(refusal.contains("MAC does not match"), "{refusal}");
        let mut altered = salted_128();
        altered["iv"] = json!("M8lhkVzFtZ5k97IwkECbxw==");
        let refusal = keys(&[("", KEY_128)]).decrypt(&altered).unwrap_err();
        assert!(refusal.contains("MAC does not match"), "{refusal}");
        let mut unsalted = salted_128();
        unsalted.as_object_mut().unwrap().remove("salt");
        assert!(
            keys(&[("", KEY_128)])
                .decrypt(&unsalted)
                .unwrap_err()
                .contains("without the other")
        );
        let other_alias = keys(&[("another-alias", KEY_128)]);
        let refusal = other_alias.decrypt(&salted_128()).unwrap_err();
        assert_eq!(refusal, "no key was given for its key alias \"openidm-sym-default\"");
        let mut pair = salted_128();
        pair["key"] = json!({"cipher": "RSA/ECB/OAEPWithSHA1AndMGF1Padding", "key": "openidm-localhost", "data": "x"});
        assert!(keys(&[("", KEY_128)]).decrypt(&pair).unwrap_err().contains("key pair"));
        let mut gcm = salted_128();
        gcm["cipher"] = json!("AES/GCM/NoPadding");
        assert!(
            keys(&[("", KEY_128)])
                .decrypt(&gcm)
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn key_files_hold_a_base64_aes_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("short");
        std::fs::write(&file, "AAECAw==").unwrap();
        let refusal = IdmKeys::default().add(&file.display().to_string()).unwrap_err();
        assert!(
            refusal.ends_with("an AES key has 16, 24 or 32 bytes, this one has 4"),
            "{refusal}"
        );
        std::fs::write(&file, "not base64!").unwrap();
        assert!(
            IdmKeys::default()
                .add(&file.display().to_string())
                .unwrap_err()
                .contains("not base64")
        );
        assert!(IdmKeys::default().add("alias=/nonexistent/key").is_err());
        assert!(IdmKeys::default().is_empty());
    }
}
