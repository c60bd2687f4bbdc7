//! Profile encoding for stores: one format byte, then MessagePack (rmp-serde, compact
//! positional form). The format byte lets a later release read older values. Format 2
//! keeps id rings as packed 32-bit fingerprints and one timestamp for all affinities;
//! format 1 was never released.

use crate::domain::Profile;

use super::StoreError;

pub const FORMAT: u8 = 2;

pub fn encode(profile: &Profile) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT);
    rmp_serde::encode::write(&mut out, profile).map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Profile, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| StoreError::Codec(e.to_string()))
        }
        Some((other, _)) => Err(StoreError::Codec(format!("unknown profile format {other}"))),
        None => Err(StoreError::Codec("empty profile value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::profile::{Behaviour, ProfileOp};
    use crate::domain::{Currency, Money};

    #[test]
    fn a_profile_round_trips_and_its_rings_stay_packed() {
        let mut p = Profile::default();
        for i in 0..40u64 {
            p.apply(&ProfileOp::Event {
                id: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                at: 1_700_000_000 + i as i64,
                behaviour: if i % 8 == 7 {
                    Behaviour::Purchase
                } else {
                    Behaviour::View
                },
                product_id: Some(format!("p{i:06}")),
                category: Some(format!("c/{}", i % 3)),
                quantity: 1,
                price: Some(Money::new(999, Currency::parse("EUR").unwrap())),
                query: None,
                order: None,
                counts_order: true,
            });
        }
        let bytes = encode(&p).unwrap();
        assert_eq!(decode(&bytes).unwrap(), p);
        // 40 applied ids and 5 orders (each counted line by line), 4 bytes each, plus
        // 2-byte headers, and no cancelled order; a view count per recently viewed
        // product, one byte each.
        assert_eq!(p.applied.len(), 40);
        let rings = 40 * 4 + 2 + 5 * 4 + 2 + 5 * 4 + 2 + 2 + 30 + 1;
        assert!(
            bytes.len() < 30 * 8 + 5 * 16 + 3 * 10 + rings + 60,
            "{}",
            bytes.len()
        );
    }

    #[test]
    fn a_profile_stored_before_the_shown_list_still_reads() {
        // The same profile without its last field, as stored before `shown` existed.
        let p = Profile::default();
        let mut fields: Vec<rmpv::Value> = match rmpv::ext::to_value(&p).unwrap() {
            rmpv::Value::Array(a) => a,
            other => panic!("{other:?}"),
        };
        fields.pop();
        let mut bytes = vec![FORMAT];
        rmpv::encode::write_value(&mut bytes, &rmpv::Value::Array(fields)).unwrap();
        assert_eq!(decode(&bytes).unwrap(), p);
    }

    #[test]
    fn unknown_formats_and_empty_values_are_errors() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[1, 0x90]).is_err());
        assert!(decode(&[FORMAT, 0xc1]).is_err());
    }
}
