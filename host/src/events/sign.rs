//! Webhook deliveries signed as Standard Webhooks 1.0 says, so that a
//! receiver checks them with any of its libraries: `webhook-id` (the same
//! on every retry), `webhook-timestamp` (unix seconds) and
//! `webhook-signature`, `v1,` then the base64 HMAC-SHA256 of
//! `<id>.<timestamp>.<body>` under the secret, one per secret, separated
//! by spaces (two while a secret is being rotated). Secrets are set per
//! appid in settings, never sent in a request.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The shortest and longest key a secret may hold, in bytes (the
/// specification asks for 24 to 64).
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A signing secret, as written in settings: `whsec_` and the key in
/// base64.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_ then the key in base64")]
    Form,
    #[error("a webhook secret's key is {0} bytes; it must be 24 to 64")]
    Length(usize),
}

impl Secret {
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let key = text
            .strip_prefix("whsec_")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or(SecretError::Form)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret(key))
    }

    /// `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // Any key length is valid for HMAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The headers of a delivery signed with every one of `secrets`.
pub fn headers(
    secrets: &[Secret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect();
    [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_signed_as_the_specification_shows() {
        // The example of the Standard Webhooks specification (and of its
        // reference libraries' tests).
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let two = [secret.clone(), secret];
        let h = headers(&two, "msg_1", 1, b"{}");
        assert_eq!(h[0], ("webhook-id", "msg_1".to_string()));
        assert_eq!(h[2].1.split(' ').count(), 2);
    }

    #[test]
    fn a_secret_says_what_is_wrong_with_it() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(),
            Some(SecretError::Form)
        );
        assert_eq!(Secret::parse("whsec_!!!").err(), Some(SecretError::Form));
        assert_eq!(
            Secret::parse("whsec_c2hvcnQ=").err(),
            Some(SecretError::Length(5))
        );
        assert!(!format!(
            "{:?}",
            Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        )
        .contains("MfKQ"));
    }
}
