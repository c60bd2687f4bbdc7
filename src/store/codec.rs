//! Profile encoding for stores: one format byte, then MessagePack (rmp-serde, compact
//! positional form). The format byte lets a later release read older values.

use crate::domain::Profile;

use super::StoreError;

const FORMAT_V1: u8 = 1;

pub fn encode(profile: &Profile) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT_V1);
    rmp_serde::encode::write(&mut out, profile).map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Profile, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| StoreError::Codec(e.to_string()))
        }
        Some((other, _)) => Err(StoreError::Codec(format!("unknown profile format {other}"))),
        None => Err(StoreError::Codec("empty profile value".into())),
    }
}
