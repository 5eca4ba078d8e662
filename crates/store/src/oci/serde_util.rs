//! Serde helpers that make parsing forgiving (Docker writes `null` where OCI omits a field)
//! while keeping serialization canonical (empty values omitted, maps sorted).

use std::collections::{BTreeMap, BTreeSet};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Treats `null` like an absent field.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `map[string]struct{}` in Go (ExposedPorts, Volumes): a set written as `{"k":{}}`.
pub(crate) mod set_as_map {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Empty {}
        let map: BTreeMap<&str, Empty> = set.iter().map(|k| (k.as_str(), Empty {})).collect();
        map.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeSet<String>, D::Error> {
        let map: Option<BTreeMap<String, IgnoredAny>> = Option::deserialize(d)?;
        Ok(map.unwrap_or_default().into_keys().collect())
    }
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_zero(n: &i64) -> bool {
    *n == 0
}
