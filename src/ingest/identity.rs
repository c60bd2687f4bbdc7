//! One customer, whichever way they arrive. A platform's customer id is the key of the
//! customer's profile; an email (how a platform's order export names the buyer) is an
//! alias of it: a record under the email's keyed hash that points at the customer's
//! key. Orders imported by email before the platform told which customer has that
//! email are folded into the customer's profile when it does; the aliases are erased
//! with the customer. Emails are only ever keyed hashes.

use crate::domain::profile::ProfileOp;
use crate::store::{KeyHasher, ProfileKey, ProfileStore, StoreError};

/// The op id of "`alias` names `customer`", the same on every delivery.
fn link_id(alias: &ProfileKey, customer: &ProfileKey) -> u64 {
    let mut bytes = [0u8; 33];
    bytes[0] = b'L';
    bytes[1..17].copy_from_slice(alias.as_bytes());
    bytes[17..].copy_from_slice(customer.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Records that `email` is the customer with key `customer`'s (a webhook said so). A
/// profile kept under the email until now is folded into the customer's first.
pub async fn link_email(
    store: &dyn ProfileStore,
    hasher: &KeyHasher,
    customer: ProfileKey,
    email: &str,
    at: i64,
) -> Result<(), StoreError> {
    if email.trim().is_empty() {
        return Ok(());
    }
    let alias = hasher.email_key(email);
    match store.get(&alias).await? {
        Some(p) if p.alias_of == Some(customer.0) => {}
        Some(p) if p.alias_of.is_none() => {
            // Orders imported under the email: the customer's now (once: the fold is
            // named by the email's key), and the email's record only an alias.
            let fold = ProfileOp::Fold {
                id: alias.short_id(),
                from: Box::new(crate::domain::Profile::clone(&p)),
            };
            store.apply(&customer, std::slice::from_ref(&fold)).await?;
            store.delete(&alias).await?;
        }
        Some(_) | None => {}
    }
    let id = link_id(&alias, &customer);
    store
        .apply(
            &alias,
            &[ProfileOp::AliasOf {
                id,
                at,
                of: customer.0,
            }],
        )
        .await?;
    store
        .apply(
            &customer,
            &[ProfileOp::AddAlias {
                id,
                at,
                alias: alias.0,
            }],
        )
        .await?;
    Ok(())
}

/// The key of the buyer an export names by email: the customer the email is an alias
/// of, else the email's own (folded into the customer once a webhook links them).
pub async fn buyer(
    store: &dyn ProfileStore,
    hasher: &KeyHasher,
    email: &str,
) -> Result<ProfileKey, StoreError> {
    let key = hasher.email_key(email);
    Ok(match store.get(&key).await? {
        Some(p) => p.alias_of.map_or(key, ProfileKey),
        None => key,
    })
}

/// Erases a customer's profile and every alias of it. True when there was a profile.
pub async fn erase(store: &dyn ProfileStore, key: &ProfileKey) -> Result<bool, StoreError> {
    if let Some(p) = store.get(key).await? {
        for alias in &p.aliases {
            store.delete(&ProfileKey(*alias)).await?;
        }
    }
    store.delete(key).await
}
