//! Settings that name one of a fixed set (`action: hash`, `on_invalid:
//! reject`). The set is the serde enum the setting is read into: its variants
//! are the names a file may use, and the list an error offers. A name that is
//! not among them is kept for an error at compile time, beside every other
//! error of the file, instead of ending the parse at the first.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};

/// A setting read as one of `T`'s variants, or the name that was not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice<T>(Result<T, String>);

impl<T: DeserializeOwned> Choice<T> {
    /// The variant, or the message for a name that is none of them:
    /// "unknown `what` `name`; expected one of …".
    pub fn get(&self, what: &str) -> Result<&T, String> {
        self.0.as_ref().map_err(|name| {
            format!(
                "unknown {what} `{name}`; expected one of {}",
                names::<T>().join(", ")
            )
        })
    }

    /// The variant, if the name was one.
    pub fn value(&self) -> Option<&T> {
        self.0.as_ref().ok()
    }

    /// The name as written, when it is none of `T`'s.
    pub fn unknown(&self) -> Option<&str> {
        self.0.as_ref().err().map(String::as_str)
    }
}

impl<T> From<T> for Choice<T> {
    fn from(value: T) -> Self {
        Choice(Ok(value))
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let value = T::deserialize(name.as_str().into_deserializer())
            .map_err(|_: de::value::Error| name.clone());
        Ok(Choice(value))
    }
}

/// The names `T`'s `Deserialize` accepts, in declaration order: what serde's
/// derive hands to `deserialize_enum`, caught by a deserializer that reads
/// nothing else.
pub fn names<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(VariantNames) {
        Err(Caught(names)) => names,
        Ok(_) => &[],
    }
}

struct VariantNames;

#[derive(Debug)]
struct Caught(&'static [&'static str]);

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("variant names")
    }
}

impl std::error::Error for Caught {}

impl de::Error for Caught {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Caught(&[])
    }
}

impl<'de> Deserializer<'de> for VariantNames {
    type Error = Caught;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Caught> {
        Err(Caught(variants))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Caught> {
        Err(Caught(&[]))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Colour {
        Red,
        DarkBlue,
    }

    #[test]
    fn reads_a_variant_and_keeps_an_unknown_name_for_later() {
        let good: Choice<Colour> = serde_saphyr::from_str("dark_blue").unwrap();
        assert_eq!(good.get("colour"), Ok(&Colour::DarkBlue));
        let bad: Choice<Colour> = serde_saphyr::from_str("green").unwrap();
        assert_eq!(bad.unknown(), Some("green"));
        assert_eq!(
            bad.get("colour"),
            Err("unknown colour `green`; expected one of red, dark_blue".to_owned())
        );
        assert_eq!(names::<Colour>(), ["red", "dark_blue"]);
    }

    /// Where the code shows a name (metric labels, `scrim check`), it is
    /// the name a file writes.
    #[test]
    fn every_name_read_is_the_name_shown() {
        fn each<T: DeserializeOwned>(shown: impl Fn(&T) -> String) {
            for name in names::<T>() {
                let value: T = serde_saphyr::from_str(name).unwrap();
                assert_eq!(&shown(&value), name);
            }
        }
        use crate::config::Decision;
        use crate::transform::{ActionKind, Encoding, Guard, Normalizer};
        each::<ActionKind>(|v| v.as_str().to_owned());
        each::<Encoding>(|v| v.as_str().to_owned());
        each::<Guard>(|v| v.as_str().to_owned());
        each::<Decision>(|v| v.as_str().to_owned());
        each::<Normalizer>(|v| v.name().to_owned());
        each::<crate::transform::Shape>(|v| v.as_str().to_owned());
        assert_eq!(names::<ActionKind>().len(), 14);
        assert_eq!(names::<Normalizer>().len(), 13);
    }

    #[test]
    fn a_name_must_be_text() {
        assert!(serde_saphyr::from_str::<Choice<Colour>>("[red]").is_err());
    }
}
