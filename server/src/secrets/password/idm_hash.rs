//! IDM's salted hashes: `{"$crypto": {"type": "salted-hash", "value": {"algorithm", "data",
//! "config"}}}`, as IDM's `secureHash` stores passwords and security answers. The message
//! digests (MD5, SHA-1, SHA-256, SHA-384, SHA-512) keep `base64(digest(text ‖ salt) ‖ salt)`;
//! PBKDF2 and SCRYPT keep `base64(hash ‖ salt)`, with the hash's length and their cost in
//! `config`; BCRYPT keeps its `$2a$…` string (as `data`, plain or base64-encoded). A value is
//! parsed once and checked in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

/// The `$crypto` type of IDM's hashes.
pub const SALTED_HASH: &str = "salted-hash";

/// Bytes of salt a new hash gets (what IDM uses).
const SALT_BYTES: usize = 16;
/// PBKDF2's output length when `config.hashLength` is absent.
const DEFAULT_HASH_LENGTH: usize = 16;
/// Most PBKDF2 iterations checked (a stored value cannot make a login run for minutes).
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Most memory one SCRYPT check may take (`128 · n · r` bytes).
const MAX_SCRYPT_BYTES: u64 = 1 << 30;

/// A hash function IDM names (`SHA-256`, `SHA3-256`, `MD5`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashFunction {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    Sha3_256,
    Sha3_384,
    Sha3_512,
}

impl HashFunction {
    /// Reads IDM's name, ignoring case and dashes (`SHA-256`, `sha256`).
    fn named(name: &str) -> Option<Self> {
        let folded: String = name
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .collect::<String>()
            .to_ascii_uppercase();
        Some(match folded.as_str() {
            "MD5" => Self::Md5,
            "SHA1" => Self::Sha1,
            "SHA256" => Self::Sha256,
            "SHA384" => Self::Sha384,
            "SHA512" => Self::Sha512,
            "SHA3256" => Self::Sha3_256,
            "SHA3384" => Self::Sha3_384,
            "SHA3512" => Self::Sha3_512,
            _ => return None,
        })
    }

    fn output_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 | Self::Sha3_256 => 32,
            Self::Sha384 | Self::Sha3_384 => 48,
            Self::Sha512 | Self::Sha3_512 => 64,
        }
    }

    /// The digest of `text ‖ salt`.
    fn digest(self, text: &[u8], salt: &[u8]) -> Vec<u8> {
        fn run<D: sha2::Digest>(text: &[u8], salt: &[u8]) -> Vec<u8> {
            D::new().chain_update(text).chain_update(salt).finalize().to_vec()
        }
        match self {
            Self::Md5 => run::<md5::Md5>(text, salt),
            Self::Sha1 => run::<sha1::Sha1>(text, salt),
            Self::Sha256 => run::<sha2::Sha256>(text, salt),
            Self::Sha384 => run::<sha2::Sha384>(text, salt),
            Self::Sha512 => run::<sha2::Sha512>(text, salt),
            Self::Sha3_256 => run::<sha3::Sha3_256>(text, salt),
            Self::Sha3_384 => run::<sha3::Sha3_384>(text, salt),
            Self::Sha3_512 => run::<sha3::Sha3_512>(text, salt),
        }
    }

    /// PBKDF2 with HMAC over this function, filling `out`.
    fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
        use pbkdf2::pbkdf2_hmac;
        match self {
            Self::Md5 => pbkdf2_hmac::<md5::Md5>(password, salt, iterations, out),
            Self::Sha1 => pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
            Self::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
            Self::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, out),
            Self::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
            Self::Sha3_256 => pbkdf2_hmac::<sha3::Sha3_256>(password, salt, iterations, out),
            Self::Sha3_384 => pbkdf2_hmac::<sha3::Sha3_384>(password, salt, iterations, out),
            Self::Sha3_512 => pbkdf2_hmac::<sha3::Sha3_512>(password, salt, iterations, out),
        }
    }
}

/// How a hash was made.
#[derive(Debug, Clone)]
enum Scheme {
    /// A message digest of the text followed by the salt.
    Digest(HashFunction),
    /// PBKDF2 with HMAC over `prf`.
    Pbkdf2 { prf: HashFunction, iterations: u32 },
    /// scrypt with its cost parameters.
    Scrypt(scrypt::Params),
    /// bcrypt; the modular-crypt string carries cost and salt.
    Bcrypt(String),
}

/// A hash IDM made, ready to check passwords (or security answers) against.
#[derive(Debug, Clone)]
pub struct IdmHash {
    scheme: Scheme,
    /// The expected hash, whose length is the output length (empty for bcrypt, whose string
    /// holds it).
    hash: Vec<u8>,
    /// The salt (empty for bcrypt).
    salt: Vec<u8>,
}

/// `config.<name>`, when present.
fn config_number(config: Option<&Value>, name: &str) -> Result<Option<u64>, String> {
    config
        .and_then(|config| config.get(name))
        .map(|value| {
            value
                .as_u64()
                .ok_or_else(|| format!("config.{name} must be a non-negative integer"))
        })
        .transpose()
}

fn required_number(config: Option<&Value>, name: &str) -> Result<u64, String> {
    config_number(config, name)?.ok_or_else(|| format!("config.{name} is missing"))
}

/// Splits `data` into the hash (its first `hash_length` bytes) and the salt (the rest).
fn split(mut data: Vec<u8>, hash_length: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
    if hash_length == 0 || data.len() <= hash_length {
        return Err(format!(
            "data holds {} bytes, too few for a {hash_length}-byte hash and a salt",
            data.len()
        ));
    }
    let salt = data.split_off(hash_length);
    Ok((data, salt))
}

impl IdmHash {
    /// Reads the `value` of a `salted-hash` `$crypto` object; the error says what is wrong.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let algorithm = value
            .get("algorithm")
            .and_then(Value::as_str)
            .ok_or("the algorithm is missing")?;
        let data = value.get("data").and_then(Value::as_str).ok_or("the data is missing")?;
        let config = value.get("config");
        if algorithm.eq_ignore_ascii_case("BCRYPT") {
            return Self::bcrypt(data);
        }
        let bytes = STANDARD
            .decode(data.trim())
            .map_err(|error| format!("the data is not base64: {error}"))?;
        if algorithm.eq_ignore_ascii_case("PBKDF2") {
            let hash_length = Self::hash_length(config)?;
            let iterations = u32::try_from(required_number(config, "iterations")?)
                .ok()
                .filter(|iterations| (1..=MAX_PBKDF2_ITERATIONS).contains(iterations))
                .ok_or_else(|| format!("config.iterations must be between 1 and {MAX_PBKDF2_ITERATIONS}"))?;
            let prf = match config.and_then(|config| config.get("hmac")) {
                None => HashFunction::Sha256,
                Some(name) => name
                    .as_str()
                    .and_then(HashFunction::named)
                    .ok_or_else(|| format!("config.hmac {name} is not a hash function ferridm knows"))?,
            };
            let (hash, salt) = split(bytes, hash_length)?;
            return Ok(Self {
                scheme: Scheme::Pbkdf2 { prf, iterations },
                hash,
                salt,
            });
        }
        if algorithm.eq_ignore_ascii_case("SCRYPT") {
            let hash_length = Self::hash_length(config)?;
            let params = Self::scrypt_params(config)?;
            let (hash, salt) = split(bytes, hash_length)?;
            return Ok(Self {
                scheme: Scheme::Scrypt(params),
                hash,
                salt,
            });
        }
        let function = HashFunction::named(algorithm)
            .ok_or_else(|| format!("the algorithm {algorithm} is not one IDM documents"))?;
        let (hash, salt) = split(bytes, function.output_len())?;
        Ok(Self {
            scheme: Scheme::Digest(function),
            hash,
            salt,
        })
    }

    fn hash_length(config: Option<&Value>) -> Result<usize, String> {
        let length = config_number(config, "hashLength")?.map_or(Ok(DEFAULT_HASH_LENGTH), usize::try_from);
        length
            .ok()
            .filter(|length| (1..=1024).contains(length))
            .ok_or_else(|| "config.hashLength must be between 1 and 1024".to_owned())
    }

    fn scrypt_params(config: Option<&Value>) -> Result<scrypt::Params, String> {
        let n = required_number(config, "n")?;
        let r = required_number(config, "r")?;
        let p = required_number(config, "p")?;
        if !n.is_power_of_two() || n < 2 {
            return Err(format!("config.n ({n}) must be a power of two above 1"));
        }
        if r.saturating_mul(n).saturating_mul(128) > MAX_SCRYPT_BYTES {
            return Err(format!("config.n ({n}) and config.r ({r}) ask for more than 1 GiB"));
        }
        let log_n = u8::try_from(n.trailing_zeros()).map_err(|error| error.to_string())?;
        let r = u32::try_from(r).map_err(|error| error.to_string())?;
        let p = u32::try_from(p).map_err(|error| error.to_string())?;
        // The length given here only matters to PHC strings; the output buffer sets the real one.
        scrypt::Params::new(log_n, r, p, scrypt::Params::RECOMMENDED_LEN)
            .map_err(|_| format!("n = {n}, r = {r}, p = {p} are not valid scrypt parameters"))
    }

    fn bcrypt(data: &str) -> Result<Self, String> {
        let modular = if data.starts_with("$2") {
            data.to_owned()
        } else {
            let decoded = STANDARD
                .decode(data.trim())
                .map_err(|error| format!("the data is neither a bcrypt string nor base64: {error}"))?;
            String::from_utf8(decoded).map_err(|_| "the data does not hold a bcrypt string".to_owned())?
        };
        if !modular.starts_with("$2") {
            return Err("the data does not hold a bcrypt string".to_owned());
        }
        Ok(Self {
            scheme: Scheme::Bcrypt(modular),
            hash: Vec::new(),
            salt: Vec::new(),
        })
    }

    /// True when `text` is what was hashed. Costs what the algorithm costs (PBKDF2, SCRYPT and
    /// BCRYPT are slow by design): call it in a hashing turn.
    pub fn verify(&self, text: &str) -> bool {
        let text = text.as_bytes();
        let computed = match &self.scheme {
            Scheme::Bcrypt(modular) => return bcrypt::verify(text, modular).unwrap_or(false),
            Scheme::Digest(function) => function.digest(text, &self.salt),
            Scheme::Pbkdf2 { prf, iterations } => {
                let mut out = vec![0; self.hash.len()];
                prf.pbkdf2(text, &self.salt, *iterations, &mut out);
                out
            }
            Scheme::Scrypt(params) => {
                let mut out = vec![0; self.hash.len()];
                if scrypt::scrypt(text, &self.salt, params, &mut out).is_err() {
                    return false;
                }
                out
            }
        };
        computed.ct_eq(&self.hash).into()
    }
}

/// `text` hashed as IDM's `secureHash` with SHA-256 does, with a fresh salt, in its `$crypto`
/// envelope.
pub fn salted_sha256(text: &str) -> Value {
    let salt: [u8; SALT_BYTES] = rand::random();
    let mut data = HashFunction::Sha256.digest(text.as_bytes(), &salt);
    data.extend_from_slice(&salt);
    json!({"$crypto": {"value": {"algorithm": "SHA-256", "data": STANDARD.encode(data)}, "type": SALTED_HASH}})
}

/// True when `text` matches a `$crypto` salted hash of any algorithm IDM documents.
pub fn matches(text: &str, stored: &Value) -> bool {
    let is_salted_hash = stored.pointer("/$crypto/type").and_then(Value::as_str) == Some(SALTED_HASH);
    is_salted_hash
        && stored
            .pointer("/$crypto/value")
            .is_some_and(|value| IdmHash::parse(value).is_ok_and(|hash| hash.verify(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed outside ferridm, with Python's hashlib:
    /// `base64(hashlib.new(alg, b"Passw0rd" + salt).digest() + salt)`, salt = bytes(range(16)).
    #[test]
    fn digests_keep_the_salt_after_the_digest() {
        let vectors = [
            ("MD5", "Ya0X0/jgeBN1siBKptcvMQABAgMEBQYHCAkKCwwNDg8="),
            ("SHA-1", "I8wjRZbzziAu56ghPKzEvHP/N4IAAQIDBAUGBwgJCgsMDQ4P"),
        ];
        for (algorithm, data) in vectors {
            let hash = IdmHash::parse(&json!({"algorithm": algorithm, "data": data})).unwrap();
            assert!(hash.verify("Passw0rd"), "{algorithm}");
            assert!(!hash.verify("passw0rd"), "{algorithm}");
        }
    }

    /// Vectors computed outside ferridm with Python's hashlib (salt = bytes(range(16))):
    /// `hashlib.pbkdf2_hmac(prf, b"Passw0rd", salt, 1000, 16)` and
    /// `hashlib.scrypt(b"Passw0rd", salt=salt, n=16, r=8, p=1, dklen=16)`, each followed by the
    /// salt; bcrypt from Python's `bcrypt` package at cost 4, also base64-encoded.
    #[test]
    fn key_derivations_read_their_parameters_from_config() {
        let pbkdf2 = |hmac: &str, data: &str| {
            json!({"algorithm": "PBKDF2", "data": data,
                "config": {"hashLength": 16, "saltLength": 16, "iterations": 1000, "hmac": hmac}})
        };
        let bcrypt = "$2a$04$CGE9sk7wS0w9nmsEEhpu5OFCEmA0WYd1AwcISA.iVcFCWgS5/WZgK";
        let vectors = [
            pbkdf2("SHA-256", "RmkjATjjtJEGaLJy+qlv6AABAgMEBQYHCAkKCwwNDg8="),
            pbkdf2("SHA3-256", "Q77YCQn6/6slHZQ8FGofQgABAgMEBQYHCAkKCwwNDg8="),
            json!({"algorithm": "SCRYPT", "data": "JKH3KOW/RZKmXaxHyIERdAABAgMEBQYHCAkKCwwNDg8=",
                "config": {"hashLength": 16, "saltLength": 16, "n": 16, "r": 8, "p": 1}}),
            json!({"algorithm": "BCRYPT", "data": bcrypt, "config": {"cost": 4}}),
            json!({"algorithm": "BCRYPT", "data": STANDARD.encode(bcrypt)}),
        ];
        for value in vectors {
            let hash = IdmHash::parse(&value).unwrap();
            assert!(hash.verify("Passw0rd"), "{value}");
            assert!(!hash.verify("Passw0rt"), "{value}");
        }
        // The PRF matters: the SHA-256 vector does not verify as SHA-512.
        let other_prf = IdmHash::parse(&pbkdf2("SHA-512", "RmkjATjjtJEGaLJy+qlv6AABAgMEBQYHCAkKCwwNDg8=")).unwrap();
        assert!(!other_prf.verify("Passw0rd"));
    }

    #[test]
    fn answers_hash_and_match_with_a_fresh_salt() {
        let stored = salted_sha256("red");
        assert!(matches("red", &stored));
        assert!(!matches("blue", &stored));
        assert_ne!(salted_sha256("red"), stored);
    }

    #[test]
    fn malformed_values_are_refused_with_a_reason() {
        let refused = [
            (json!({"data": "AAAA"}), "algorithm"),
            (json!({"algorithm": "SHA-256"}), "data"),
            (json!({"algorithm": "SHA-256", "data": "!!"}), "base64"),
            (
                json!({"algorithm": "SHA-256", "data": STANDARD.encode([0; 32])}),
                "too few",
            ),
            (json!({"algorithm": "WHIRLPOOL", "data": "AAAA"}), "WHIRLPOOL"),
            (json!({"algorithm": "PBKDF2", "data": "AAAA"}), "iterations"),
            (
                json!({"algorithm": "SCRYPT", "data": "AAAA", "config": {"n": 1000, "r": 8, "p": 1}}),
                "power of two",
            ),
            (
                json!({"algorithm": "SCRYPT", "data": "AAAA", "config": {"n": 1 << 24, "r": 128, "p": 1}}),
                "1 GiB",
            ),
            (json!({"algorithm": "BCRYPT", "data": "AAAA"}), "bcrypt"),
        ];
        for (value, reason) in refused {
            let error = IdmHash::parse(&value).unwrap_err();
            assert!(error.contains(reason), "{value}: {error}");
        }
    }
}
