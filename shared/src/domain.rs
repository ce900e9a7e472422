//! Domain newtypes shared by the services. Each one parses its input once, at the edge (serde
//! calls `TryFrom` while decoding a request or an event), so the code behind it never sees an
//! invalid value, and a bad field is reported by name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A patient's national identification number, the book's `id`: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct PatientId(i64);

impl PatientId {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for PatientId {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(format!("a patient id is a positive integer, got {value}"))
        }
    }
}

impl From<PatientId> for i64 {
    fn from(id: PatientId) -> Self {
        id.0
    }
}

impl fmt::Display for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for PatientId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: i64 = s
            .parse()
            .map_err(|_| format!("a patient id is a positive integer, got {s:?}"))?;
        Self::try_from(value)
    }
}

/// PostgreSQL text cannot hold NUL characters; catching them here makes them a 422 naming the
/// field instead of a failed insert.
pub fn reject_nul(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err("must not contain NUL characters (\\u0000)".into())
    } else {
        Ok(())
    }
}

/// Free text that must be present and not blank, at most `MAX` characters. Surrounding white
/// space is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<const MAX: usize> TryFrom<String> for Text<MAX> {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        reject_nul(trimmed)?;
        let length = trimmed.chars().count();
        if length > MAX {
            return Err(format!("must be at most {MAX} characters, got {length}"));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl<const MAX: usize> From<Text<MAX>> for String {
    fn from(text: Text<MAX>) -> Self {
        text.0
    }
}

/// Optional free text as the book sends it: absent, `null` and `""` all mean "not given".
/// Use as `#[serde(default)] field: Note<N>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Option<String>", into = "Option<String>")]
pub struct Note<const MAX: usize>(Option<String>);

impl<const MAX: usize> Note<MAX> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
    pub fn into_inner(self) -> Option<String> {
        self.0
    }
}

impl<const MAX: usize> TryFrom<Option<String>> for Note<MAX> {
    type Error = String;
    fn try_from(value: Option<String>) -> Result<Self, Self::Error> {
        match value.as_deref().map(str::trim) {
            None | Some("") => Ok(Self(None)),
            Some(text) => {
                reject_nul(text)?;
                let length = text.chars().count();
                if length > MAX {
                    Err(format!("must be at most {MAX} characters, got {length}"))
                } else {
                    Ok(Self(Some(text.to_owned())))
                }
            }
        }
    }
}

impl<const MAX: usize> From<Note<MAX>> for Option<String> {
    fn from(note: Note<MAX>) -> Self {
        note.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_ids_are_positive() {
        assert!(PatientId::try_from(0).is_err());
        assert!(PatientId::try_from(-4).is_err());
        assert_eq!(PatientId::try_from(200).map(PatientId::get), Ok(200));
        assert!("abc".parse::<PatientId>().is_err());
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(
            Text::<5>::try_from("  abc ".to_owned()).map(Text::into_inner),
            Ok("abc".to_owned())
        );
        assert!(Text::<5>::try_from("   ".to_owned()).is_err());
        assert!(Text::<2>::try_from("abc".to_owned()).is_err());
    }

    #[test]
    fn nul_characters_are_refused() {
        assert!(Text::<5>::try_from("a\0b".to_owned()).is_err());
        assert!(Note::<5>::try_from(Some("a\0b".to_owned())).is_err());
    }

    #[test]
    fn blank_notes_are_absent() {
        assert_eq!(Note::<5>::try_from(Some(" ".to_owned())), Ok(Note(None)));
        assert_eq!(Note::<5>::try_from(None), Ok(Note(None)));
        assert!(Note::<2>::try_from(Some("abc".to_owned())).is_err());
    }
}

/// Where a patient goes when released from the OPD: home, or into the hospital.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Disposition {
    Discharge,
    Admission,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discharge => "discharge",
            Self::Admission => "admission",
        }
    }
}

impl TryFrom<String> for Disposition {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "discharge" => Ok(Self::Discharge),
            "admission" => Ok(Self::Admission),
            other => Err(format!(
                "expected \"discharge\" or \"admission\", got {other:?}"
            )),
        }
    }
}

impl From<Disposition> for &'static str {
    fn from(disposition: Disposition) -> Self {
        disposition.as_str()
    }
}
