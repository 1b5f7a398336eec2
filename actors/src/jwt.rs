//! `private_key_jwt` client authentication (RFC 7523 §2.2): the client proves
//! itself with a short-lived JWT signed by its private key instead of a secret.
//! The key is PKCS#8 PEM, an EC P-256 key (ES256) or an RSA key (RS256). The
//! assertion is made at each token request (its own `jti`, five minutes of life).

use base64::Engine as _;
use machines::auth::AuthError;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use std::time::{SystemTime, UNIX_EPOCH};

/// `client_assertion_type` of a JWT assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

enum Key {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

fn load(pem: &str) -> Result<Key, String> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        "it is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)".to_owned()
    })?;
    let rng = SystemRandom::new();
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_pkcs8_der(),
        &rng,
    ) {
        return Ok(Key::Es256(k));
    }
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map(Key::Rs256)
        .map_err(|_| "it is neither an EC P-256 key (ES256) nor an RSA key (RS256)".to_owned())
}

/// Whether `pem` is a key this proxy can sign with; why not.
pub fn check(pem: &str) -> Result<&'static str, String> {
    load(pem).map(|k| match k {
        Key::Es256(_) => "ES256",
        Key::Rs256(_) => "RS256",
    })
}

/// A client assertion for `client_id` at the authorization server `audience`.
pub fn assertion(client_id: &str, audience: &str, pem: &str) -> Result<String, AuthError> {
    let fail = |why: String| AuthError::ClientKey(why);
    let key = load(pem).map_err(fail)?;
    let rng = SystemRandom::new();
    let mut jti = [0u8; 16];
    rng.fill(&mut jti)
        .map_err(|_| fail("no randomness for the assertion".into()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let alg = match key {
        Key::Es256(_) => "ES256",
        Key::Rs256(_) => "RS256",
    };
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": audience,
        "iat": now, "exp": now + 300,
        "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = match key {
        Key::Es256(k) => k
            .sign(&rng, input.as_bytes())
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| fail("signing failed".into()))?,
        Key::Rs256(k) => {
            let mut sig = vec![0u8; k.public().modulus_len()];
            k.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| fail("signing failed".into()))?;
            sig
        }
    };
    Ok(format!("{input}.{}", b64(&signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_named_not_echoed() {
        let e = check("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(!e.contains("c2VjcmV0"), "{e}");
        assert!(check("not pem").is_err());
    }
}
