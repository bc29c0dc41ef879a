//! Pagination cursors: opaque and authenticated.
//!
//! A cursor is the last sort key of a page followed by a tag, base64url-encoded. The tag is
//! HMAC-SHA-256, cut to 128 bits, over the listing's partition (which names the tenant) and the
//! sort key, under a key kept in the store (`layout::cursor_secret`, created by the first
//! process that needs it and shared by all). A client can neither forge a cursor nor alter one,
//! nor use one handed out for another listing or another tenant: any of these is refused as
//! `invalid cursor` before the store is asked.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::Error;

/// Bytes of the tag.
pub const CURSOR_TAG_BYTES: usize = 16;
/// Longest sort key a cursor may carry.
pub const CURSOR_SORT_KEY_MAX: usize = 256;
/// Bytes of the key.
pub const CURSOR_KEY_BYTES: usize = 32;

/// The key cursors are tagged with.
#[derive(Clone)]
pub struct CursorKey(Zeroizing<[u8; CURSOR_KEY_BYTES]>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(<redacted>)")
    }
}

impl CursorKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; CURSOR_KEY_BYTES]) -> CursorKey {
        CursorKey(Zeroizing::new(bytes))
    }

    /// A new random key from the operating system.
    pub fn generate() -> Result<CursorKey, Error> {
        let mut bytes = Zeroizing::new([0u8; CURSOR_KEY_BYTES]);
        getrandom::fill(bytes.as_mut_slice())
            .map_err(|e| Error::Corrupt(format!("no randomness for the cursor key: {e}")))?;
        Ok(CursorKey(bytes))
    }

    /// The key's bytes, for storing it.
    pub fn bytes(&self) -> &[u8; CURSOR_KEY_BYTES] {
        &self.0
    }

    fn mac(&self, pk: &str, sk: &str) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC; this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"strongroom/cursor/v1\0");
        mac.update(&(pk.len() as u64).to_be_bytes());
        mac.update(pk.as_bytes());
        mac.update(sk.as_bytes());
        mac
    }

    /// The cursor that continues the listing of partition `pk` after sort key `sk`.
    pub fn encode(&self, pk: &str, sk: &str) -> String {
        let tag = self.mac(pk, sk).finalize().into_bytes();
        let mut raw = Vec::with_capacity(sk.len() + CURSOR_TAG_BYTES);
        raw.extend_from_slice(sk.as_bytes());
        raw.extend_from_slice(&tag[..CURSOR_TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The sort key of a cursor this key made for partition `pk`, whose sort keys start with
    /// `prefix`.
    pub fn decode(&self, cursor: &str, pk: &str, prefix: &str) -> Result<String, Error> {
        if cursor.len() > 2 * (CURSOR_SORT_KEY_MAX + CURSOR_TAG_BYTES) {
            return Err(Error::InvalidCursor);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| Error::InvalidCursor)?;
        let split = raw
            .len()
            .checked_sub(CURSOR_TAG_BYTES)
            .ok_or(Error::InvalidCursor)?;
        let (sk, tag) = raw.split_at(split);
        let sk = std::str::from_utf8(sk).map_err(|_| Error::InvalidCursor)?;
        self.mac(pk, sk)
            .verify_truncated_left(tag)
            .map_err(|_| Error::InvalidCursor)?;
        if !sk.starts_with(prefix) || sk.len() > CURSOR_SORT_KEY_MAX {
            return Err(Error::InvalidCursor);
        }
        Ok(sk.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_bound_to_its_key_partition_and_bytes() {
        let key = CursorKey::generate().expect("key");
        let pk = "T#acme#TRANSFERS";
        let cursor = key.encode(pk, "xfer_01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(
            key.decode(&cursor, pk, "xfer_").expect("decode"),
            "xfer_01ARZ3NDEKTSV4RRFFQ69G5FAV"
        );
        let refused = |c: &str, pk: &str, prefix: &str| {
            matches!(key.decode(c, pk, prefix), Err(Error::InvalidCursor))
        };
        // Another tenant, another listing, another key.
        assert!(refused(&cursor, "T#other#TRANSFERS", "xfer_"));
        assert!(refused(&cursor, "T#acme#ACCOUNTS", "xfer_"));
        let other = CursorKey::generate().expect("key");
        assert!(matches!(
            other.decode(&cursor, pk, "xfer_"),
            Err(Error::InvalidCursor)
        ));
        // Every single-byte change of the raw cursor is caught.
        let raw = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert!(
                refused(&URL_SAFE_NO_PAD.encode(&bad), pk, "xfer_"),
                "byte {i}"
            );
        }
        // A forged one: a plain sort key (the old format), junk, nothing, too long.
        assert!(refused(
            &URL_SAFE_NO_PAD.encode("xfer_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            pk,
            "xfer_"
        ));
        for junk in ["", "!!", "AAAA", &"A".repeat(10_000)] {
            assert!(refused(junk, pk, "xfer_"), "{junk:?}");
        }
        // Sort keys up to CURSOR_SORT_KEY_MAX bytes, not one more.
        let longest = format!("xfer_{}", "a".repeat(CURSOR_SORT_KEY_MAX - 5));
        assert_eq!(
            key.decode(&key.encode(pk, &longest), pk, "xfer_")
                .expect("longest"),
            longest
        );
        let over = format!("{longest}a");
        assert!(refused(&key.encode(pk, &over), pk, "xfer_"));
        // A valid tag on a sort key outside the listing's prefix is still refused.
        let outside = key.encode(pk, "zzz");
        assert!(refused(&outside, pk, "xfer_"));
        assert!(format!("{key:?}").contains("redacted"));
    }
}
