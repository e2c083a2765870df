//! The keys a route verifies tokens with, loaded when the config is validated (so a SIGHUP
//! reload re-reads them): a JWKS file (RFC 7517), a PEM file of one or more public keys, or
//! an HMAC secret. Each key remembers its algorithm family, and the verifier uses a key
//! only with algorithms of that family: that is what makes algorithm confusion (an `HS256`
//! token whose "secret" is an RSA public key) impossible whatever the token says.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use std::io::Read;
use std::path::Path;

/// Key files are read whole; an identity provider's JWKS is a few KiB, so anything near
/// this is a wrong path (a log, a disk image), not a key set.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// One key a token may be verified with.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    /// The JWK's `kid`; PEM keys and secrets have none.
    pub(crate) kid: Option<String>,
    pub(crate) family: AlgorithmFamily,
    /// The one algorithm this key serves, when its JWK says so (`alg`, or an EC curve: a
    /// P-256 key can only be ES256). `None`: any algorithm of its family.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl VerifyingKey {
    /// Whether this key may verify a token of algorithm `alg` whose header names `kid`: its
    /// family and algorithm fit, and a token's `kid` selects among the keys that have one
    /// (keys without one, from PEM files, are candidates whatever the token names).
    pub(crate) fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        let kid_fits = match (kid, self.kid.as_deref()) {
            (Some(wanted), Some(own)) => wanted == own,
            _ => true,
        };
        self.family == alg.family() && self.alg.is_none_or(|own| own == alg) && kid_fits
    }
}

/// The public keys in the file at `path`: a JWKS (JSON, starting with `{`) or PEM blocks.
/// The error says what is wrong with the file, for a problem at the `keys` key.
pub(crate) fn load_keys(path: &Path) -> Result<Vec<VerifyingKey>, String> {
    let bytes = read(path)?;
    let keys = match std::str::from_utf8(&bytes) {
        Ok(text) if text.trim_start().starts_with('{') => jwks(text),
        Ok(text) => pem(text),
        Err(_) => Err("is neither a JWKS (JSON) nor a PEM file".into()),
    };
    keys.map_err(|e| format!("{} {e}", path.display()))
}

/// An HMAC secret: the file's bytes without the trailing newline an editor adds. RFC 7518
/// §3.2 wants at least as many bytes as the hash's output (`min_bytes`).
pub(crate) fn load_secret(path: &Path, min_bytes: usize) -> Result<VerifyingKey, String> {
    let mut bytes = read(path)?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    let file = path.display();
    if bytes.is_empty() {
        return Err(format!("{file} is empty"));
    }
    if bytes.len() < min_bytes {
        let n = bytes.len();
        return Err(format!("{file} holds {n} bytes; the algorithms need at least {min_bytes} (RFC 7518 §3.2)"));
    }
    let key = DecodingKey::from_secret(&bytes).map_err(|e| format!("{file} is not a usable secret: {e}"))?;
    Ok(VerifyingKey { kid: None, family: AlgorithmFamily::Hmac, alg: None, key })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!("{} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file", path.display()));
    }
    Ok(bytes)
}

fn jwks(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("is not a valid JWKS: {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let name = jwk.common.key_id.as_deref().map_or_else(|| format!("keys[{i}]"), |kid| format!("key `{kid}`"));
        if let Some(key) = from_jwk(jwk).map_err(|e| format!("{name}: {e}"))? {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err("holds no RSA, EC (P-256, P-384) or Ed25519 signature key".into());
    }
    Ok(keys)
}

/// One JWK: `Ok(None)` for a key that is not for verifying signatures or of a type wsgate
/// cannot use (an identity provider's set may hold such keys beside the ones it signs with).
fn from_jwk(jwk: &Jwk) -> Result<Option<VerifyingKey>, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let (family, curve_alg) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (AlgorithmFamily::Ec, Some(Algorithm::ES256)),
            EllipticCurve::P384 => (AlgorithmFamily::Ec, Some(Algorithm::ES384)),
            _ => return Ok(None),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (AlgorithmFamily::Ed, Some(Algorithm::EdDSA))
        }
        // A shared secret in a file of public keys is a leak waiting to happen.
        AlgorithmParameters::OctetKey(_) => {
            return Err("is a symmetric (`oct`) key: HMAC secrets go in `secret_file`".into())
        }
        _ => return Ok(None),
    };
    let alg = match jwk.common.key_algorithm.map(Algorithm::try_from) {
        None => curve_alg,
        // RSA-OAEP and the like: an encryption key without `use: enc`.
        Some(Err(_)) => return Ok(None),
        Some(Ok(alg)) if alg.family() != family || curve_alg.is_some_and(|c| c != alg) => {
            return Err(format!("`alg: {alg:?}` does not fit the key's type"));
        }
        Some(Ok(alg)) => Some(alg),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("is not a usable key: {e}"))?;
    Ok(Some(VerifyingKey { kid: jwk.common.key_id.clone(), family, alg, key }))
}

fn pem(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let mut keys = Vec::new();
    for (i, (label, block)) in pem_blocks(text)?.into_iter().enumerate() {
        let n = i + 1;
        match label {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => keys.push(
                pem_public_key(block)
                    .ok_or_else(|| format!("PEM block {n} is not an RSA, EC (P-256, P-384) or Ed25519 public key"))?,
            ),
            // `openssl ecparam -genkey` writes one before the key; it carries no key.
            "EC PARAMETERS" => {}
            _ if label.contains("PRIVATE KEY") => {
                return Err(format!(
                    "PEM block {n} is a private key: give wsgate only the public key (`openssl pkey -in KEY -pubout`)"
                ))
            }
            _ => {
                return Err(format!(
                    "PEM block {n} is a `{label}`, not a public key (for a certificate: `openssl x509 -in CERT -pubkey -noout`)"
                ))
            }
        }
    }
    if keys.is_empty() {
        return Err("is neither a JWKS (JSON) nor a PEM file with a public key".into());
    }
    Ok(keys)
}

/// A `PUBLIC KEY` block of any supported type: the crate classifies the key by its
/// algorithm identifier, so at most one of the three loaders accepts it.
fn pem_public_key(block: &str) -> Option<VerifyingKey> {
    type Loader = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
    let loaders: [(AlgorithmFamily, Loader); 3] = [
        (AlgorithmFamily::Rsa, DecodingKey::from_rsa_pem),
        (AlgorithmFamily::Ec, DecodingKey::from_ec_pem),
        (AlgorithmFamily::Ed, DecodingKey::from_ed_pem),
    ];
    loaders.into_iter().find_map(|(family, load)| {
        let key = load(block.as_bytes()).ok()?;
        Some(VerifyingKey { kid: None, family, alg: None, key })
    })
}

/// The `-----BEGIN X-----` … `-----END X-----` blocks of `text`, with their labels. The
/// crate's PEM loaders read only the first block of what they are given, so a file of
/// several keys is cut here (text framing only: the base64 inside is the crate's).
fn pem_blocks(text: &str) -> Result<Vec<(&str, &str)>, String> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let label = after.find("-----").map(|end| &after[..end]).filter(|l| !l.contains('\n'));
        let Some(label) = label else { return Err("has a `-----BEGIN` line that is not closed".into()) };
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            return Err(format!("has `BEGIN {label}` without its `END {label}`"));
        };
        let block_end = start + BEGIN.len() + end + end_marker.len();
        blocks.push((label, &rest[start..block_end]));
        rest = &rest[block_end..];
    }
    Ok(blocks)
}
