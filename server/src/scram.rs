//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: the client proves it knows the token
//! without sending it. The server keeps a [`Verifier`] per token: derived at start from `--token`,
//! or read from a tenants file, where tokens are stored only as verifiers, in PostgreSQL's own
//! format (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64). The native
//! protocol sends the token itself (over TLS where configured); it is checked against the same
//! verifier.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// PBKDF2 iterations (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;
/// The mechanism name announced in AuthenticationSASL.
pub const MECHANISM: &str = "SCRAM-SHA-256";

fn hmac(key: &[u8], msg: &[u8]) -> Result<Vec<u8>, String> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|e| e.to_string())?;
    m.update(msg);
    Ok(m.finalize().into_bytes().to_vec())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("no random source: {e}"))?;
    Ok(b)
}

/// What the server keeps of a token: enough to check a proof of it, not enough to present it.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl Verifier {
    /// The verifier of `token` with `salt`.
    pub fn with_salt(token: &str, salt: &[u8], iterations: u32) -> Result<Verifier, String> {
        let mut salted = vec![0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(token.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key")?;
        Ok(Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(&client_key).to_vec(),
            server_key: hmac(&salted, b"Server Key")?,
        })
    }

    /// The verifier of `token` with a fresh random salt.
    pub fn new(token: &str) -> Result<Verifier, String> {
        Self::with_salt(token, &random_bytes::<16>()?, ITERATIONS)
    }

    /// Reads PostgreSQL's text form.
    pub fn parse(text: &str) -> Result<Verifier, String> {
        let bad = || {
            "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>; \
             `journeydb tenants hash-token` makes one)"
                .to_string()
        };
        let rest = text.trim().strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (head, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = head.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: u32 = iterations.parse().map_err(|_| bad())?;
        if !(1..=10_000_000).contains(&iterations) {
            return Err(bad());
        }
        let d = |s: &str| B64.decode(s).map_err(|_| bad());
        let v = Verifier {
            iterations,
            salt: d(salt)?,
            stored_key: d(stored)?,
            server_key: d(server)?,
        };
        if v.stored_key.len() != 32 || v.server_key.len() != 32 || v.salt.is_empty() {
            return Err(bad());
        }
        Ok(v)
    }

    /// True when `token` is the token this verifier was made from (constant time in the keys).
    pub fn matches(&self, token: &str) -> bool {
        Self::with_salt(token, &self.salt, self.iterations)
            .is_ok_and(|v| constant_time_eq::constant_time_eq(&v.stored_key, &self.stored_key))
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }
}

/// The server's side of one exchange, between the client's first and final messages.
pub struct Exchange {
    client_first_bare: String,
    server_first: String,
    nonce: String,
    verifier: Verifier,
}

/// Reads the client-first-message and answers the server-first-message.
pub fn first(verifier: &Verifier, client_first: &[u8]) -> Result<Exchange, String> {
    let msg = std::str::from_utf8(client_first).map_err(|_| "SCRAM message is not UTF-8")?;
    // gs2 header: "n,," (no channel binding) or "y,," (client could but thinks we cannot).
    let bare = msg
        .strip_prefix("n,,")
        .or_else(|| msg.strip_prefix("y,,"))
        .ok_or("SCRAM channel binding is not supported (use sslmode=disable or channel_binding=disable)")?;
    let cnonce = bare
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_graphic() && c != ','))
        .ok_or("SCRAM client-first-message without a nonce")?;
    let nonce = format!("{cnonce}{}", B64.encode(random_bytes::<18>()?));
    let server_first = format!(
        "r={nonce},s={},i={}",
        B64.encode(&verifier.salt),
        verifier.iterations
    );
    Ok(Exchange {
        client_first_bare: bare.to_string(),
        server_first,
        nonce,
        verifier: verifier.clone(),
    })
}

impl Exchange {
    /// The server-first-message to send.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client-final-message's proof; on success, the server-final-message to send.
    pub fn verify(&self, client_final: &[u8]) -> Result<String, String> {
        let msg = std::str::from_utf8(client_final).map_err(|_| "SCRAM message is not UTF-8")?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or("SCRAM client-final-message without a proof")?;
        let nonce = without_proof
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .ok_or("SCRAM client-final-message without a nonce")?;
        if nonce != self.nonce {
            return Err("SCRAM nonce mismatch".into());
        }
        let proof = B64.decode(proof).map_err(|_| "SCRAM proof is not base64")?;
        let auth = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let stored_key = &self.verifier.stored_key;
        let signature = hmac(stored_key, auth.as_bytes())?;
        if proof.len() != signature.len() {
            return Err("password authentication failed".into());
        }
        let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq::constant_time_eq(&Sha256::digest(&recovered), stored_key) {
            return Err("password authentication failed".into());
        }
        Ok(format!(
            "v={}",
            B64.encode(hmac(&self.verifier.server_key, auth.as_bytes())?)
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A client per RFC 5802, to check the server against.
    fn client_final(token: &str, ex: &Exchange, cfirst_bare: &str, tamper: bool) -> String {
        let sf = ex.server_first();
        let nonce = sf.split(',').find_map(|a| a.strip_prefix("r=")).unwrap();
        let salt = B64
            .decode(sf.split(',').find_map(|a| a.strip_prefix("s=")).unwrap())
            .unwrap();
        let mut salted = vec![0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(token.as_bytes(), &salt, ITERATIONS, &mut salted);
        let without = format!("c=biws,r={nonce}");
        let auth = format!("{cfirst_bare},{sf},{without}");
        let ck = hmac(&salted, b"Client Key").unwrap();
        let sig = hmac(&Sha256::digest(&ck), auth.as_bytes()).unwrap();
        let mut proof: Vec<u8> = ck.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        if tamper {
            proof[0] ^= 1;
        }
        format!("{without},p={}", B64.encode(proof))
    }

    #[test]
    fn right_token_passes_wrong_token_and_tampering_fail() {
        let bare = "n=,r=abcdefghijklmnop";
        // Through its text form, as a tenants file keeps it.
        let v = Verifier::parse(&Verifier::new("s3cret").unwrap().to_string()).unwrap();
        assert!(v.matches("s3cret") && !v.matches("s3cret ") && !v.matches(""));
        let ex = first(&v, format!("n,,{bare}").as_bytes()).unwrap();
        assert!(ex
            .verify(client_final("s3cret", &ex, bare, false).as_bytes())
            .is_ok());
        let ex = first(&v, format!("n,,{bare}").as_bytes()).unwrap();
        assert!(ex
            .verify(client_final("wrong", &ex, bare, false).as_bytes())
            .is_err());
        let ex = first(&v, format!("n,,{bare}").as_bytes()).unwrap();
        assert!(ex
            .verify(client_final("s3cret", &ex, bare, true).as_bytes())
            .is_err());
        assert!(first(&v, b"p=tls-server-end-point,,n=,r=x").is_err());
        assert!(first(&v, b"n,,n=,").is_err());
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$0:AA==$AA==:AA==",
            "SCRAM-SHA-256$4096:AA==$AA==:AA==",
        ] {
            assert!(Verifier::parse(bad).is_err(), "{bad}");
        }
    }
}
