//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: the client proves it knows the token
//! without sending it. The server keeps no stored verifier (the token is its configuration), so it
//! derives one per exchange with a fresh random salt.

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

/// The server's side of one exchange, between the client's first and final messages.
pub struct Exchange {
    client_first_bare: String,
    server_first: String,
    nonce: String,
    salted: Vec<u8>,
}

/// Reads the client-first-message and answers the server-first-message.
pub fn first(token: &str, client_first: &[u8]) -> Result<Exchange, String> {
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
    let salt = random_bytes::<16>()?;
    let mut salted = vec![0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(token.as_bytes(), &salt, ITERATIONS, &mut salted);
    let server_first = format!("r={nonce},s={},i={ITERATIONS}", B64.encode(salt));
    Ok(Exchange {
        client_first_bare: bare.to_string(),
        server_first,
        nonce,
        salted,
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
        let client_key = hmac(&self.salted, b"Client Key")?;
        let stored_key = Sha256::digest(&client_key);
        let signature = hmac(&stored_key, auth.as_bytes())?;
        if proof.len() != signature.len() {
            return Err("password authentication failed".into());
        }
        let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq::constant_time_eq(&Sha256::digest(&recovered), &stored_key) {
            return Err("password authentication failed".into());
        }
        let server_key = hmac(&self.salted, b"Server Key")?;
        Ok(format!(
            "v={}",
            B64.encode(hmac(&server_key, auth.as_bytes())?)
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
        let ex = first("s3cret", format!("n,,{bare}").as_bytes()).unwrap();
        assert!(ex
            .verify(client_final("s3cret", &ex, bare, false).as_bytes())
            .is_ok());
        let ex = first("s3cret", format!("n,,{bare}").as_bytes()).unwrap();
        assert!(ex
            .verify(client_final("wrong", &ex, bare, false).as_bytes())
            .is_err());
        let ex = first("s3cret", format!("n,,{bare}").as_bytes()).unwrap();
        assert!(ex
            .verify(client_final("s3cret", &ex, bare, true).as_bytes())
            .is_err());
        assert!(first("s3cret", b"p=tls-server-end-point,,n=,r=x").is_err());
        assert!(first("s3cret", b"n,,n=,").is_err());
    }
}
