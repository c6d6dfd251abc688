//! Serde for enums written as a map with exactly one key, the way Argo writes a step
//! (`{setWeight: 20}`) or a metric provider (`{prometheus: {…}}`).
//!
//! Serde's derive would do this for JSON, but YAML libraries (serde_norway) read and write
//! such enums as YAML tags (`!setWeight 20`), which no Kubernetes manifest uses. The impls
//! here produce and accept a plain one-key map with every serde format, and say clearly when
//! a map has no key, two keys, or an unknown one.

/// Implements `Serialize` and `Deserialize` for an enum of newtype variants as a one-key map.
///
/// `what` names one value in error messages ("a canary step"); each `Variant => "key"` pair
/// must match the JSON name the enum's schema gives the variant.
macro_rules! one_key_map {
    ($ty:ident, $what:literal, { $($variant:ident => $key:literal),+ $(,)? }) => {
        // Entry-level reading and writing, also for a map that holds several of them (a canary
        // step with several actions); not every enum needs them.
        #[allow(dead_code)]
        impl $ty {
            /// The manifest keys of the variants.
            pub(crate) const KEYS: &'static [&'static str] = &[$($key),+];

            /// Writes this value as one entry of a map.
            pub(crate) fn serialize_entry<M: ::serde::ser::SerializeMap>(
                &self,
                map: &mut M,
            ) -> Result<(), M::Error> {
                match self {
                    $(Self::$variant(value) => map.serialize_entry($key, value),)+
                }
            }

            /// Reads the value of a map entry whose key is `key`.
            pub(crate) fn from_entry<'de, A: ::serde::de::MapAccess<'de>>(
                key: &str,
                map: &mut A,
            ) -> Result<Self, A::Error> {
                Ok(match key {
                    $($key => Self::$variant(map.next_value()?),)+
                    other => return Err(::serde::de::Error::unknown_variant(other, Self::KEYS)),
                })
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                self.serialize_entry(&mut map)?;
                map.end()
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct OneKeyVisitor;

                impl<'de> ::serde::de::Visitor<'de> for OneKeyVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        write!(f, "{} with exactly one of: {}", $what, $ty::KEYS.join(", "))
                    }

                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        use ::serde::de::Error;
                        let Some(key) = map.next_key::<String>()? else {
                            return Err(A::Error::custom(format!(
                                "{} is empty; it needs exactly one of: {}", $what, $ty::KEYS.join(", ")
                            )));
                        };
                        let value = $ty::from_entry(&key, &mut map)?;
                        if let Some(extra) = map.next_key::<String>()? {
                            return Err(A::Error::custom(format!(
                                "{} has exactly one key, but both {key:?} and {extra:?} are set",
                                $what
                            )));
                        }
                        Ok(value)
                    }
                }

                deserializer.deserialize_map(OneKeyVisitor)
            }
        }
    };
}

pub(crate) use one_key_map;
