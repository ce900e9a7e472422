//! Domain newtypes shared by the services. Each one parses its input once, at the edge (serde
//! calls `TryFrom` while decoding a request or an event), so the code behind it never sees an
//! invalid value, and a bad field is reported by name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A patient's national identification number, the book's `id`: a positive integer, at most
/// 2^53 - 1, so that every JSON client (JavaScript's numbers included) holds it exactly.
///
/// Personal data: `Debug` (what `?id` in a log line and `#[tracing::instrument]` arguments
/// use) shows it masked, as [`PatientId::masked`] does; `Display` shows it whole, for answers
/// and messages to the client who sent it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "WholeNumber", into = "i64")]
pub struct PatientId(i64);

impl PatientId {
    pub fn get(self) -> i64 {
        self.0
    }

    /// The id as logs show it: its last two digits only (`**00` for 200), enough to tell two
    /// requests apart by eye; the request id and trace id are what correlate log lines.
    pub fn masked(self) -> Masked {
        Masked(self.0)
    }
}

impl fmt::Debug for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PatientId({})", self.masked())
    }
}

/// A number as logs may show it: `**` and its last two digits.
#[derive(Clone, Copy)]
pub struct Masked(i64);

impl fmt::Display for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "**{:02}", self.0.rem_euclid(100))
    }
}

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The largest integer every JSON client holds exactly (JavaScript's numbers are doubles): the
/// most an id in the API may be.
pub const JSON_SAFE_MAX: i64 = (1 << 53) - 1;

impl PatientId {
    pub const MAX: i64 = JSON_SAFE_MAX;
}

impl TryFrom<i64> for PatientId {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!(
                "a patient id is a positive integer of at most {}, got {value}",
                Self::MAX
            ))
        }
    }
}

impl TryFrom<WholeNumber> for PatientId {
    type Error = String;
    fn try_from(value: WholeNumber) -> Result<Self, Self::Error> {
        Self::try_from(value.0)
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

/// A JSON number with no fractional part, read as `i64`. JSON Schema's `integer` (what the
/// OpenAPI document promises) includes `200.0`; serde's `i64` alone refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WholeNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<WholeNumber, E> {
                i64::try_from(v)
                    .map(WholeNumber)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<WholeNumber, E> {
                // Beyond 2^53 a decimal number may already have been rounded to a neighbouring
                // whole number: refuse it rather than read another value than was meant.
                const LIMIT: f64 = 9_007_199_254_740_992.0;
                if v.fract() == 0.0 && (-LIMIT..=LIMIT).contains(&v) {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(WholeNumber(v as i64))
                } else {
                    Err(E::custom(format!("expected a whole number, got {v}")))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The limit applies to the text as sent, before trimming, so that it is the `maxLength` of the
/// OpenAPI document.
fn check_length<const MAX: usize>(text: &str) -> Result<(), String> {
    let length = text.chars().count();
    if length > MAX {
        Err(format!("must be at most {MAX} characters, got {length}"))
    } else {
        Ok(())
    }
}

/// Surrounding ASCII white space (space, tab, line feed, form feed, carriage return) is dropped.
/// ASCII only, because the OpenAPI document states the rule as a regular expression and the
/// regex dialects of clients disagree about which Unicode characters are white space.
fn trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_ascii_whitespace())
}

/// PostgreSQL text cannot hold NUL characters; catching them here makes them a 422 naming the
/// field instead of a failed insert.
pub(crate) fn reject_nul(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err("must not contain NUL characters (\\u0000)".into())
    } else {
        Ok(())
    }
}

/// Free text that must be present and not blank, at most `MAX` characters. Surrounding ASCII
/// white space (space, tab, line feed, form feed, carriage return) is dropped.
///
/// Names, addresses and clinical notes are personal data: `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> fmt::Debug for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({} characters)", self.0.chars().count())
    }
}

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
        check_length::<MAX>(&value)?;
        reject_nul(&value)?;
        let trimmed = trim(&value);
        if trimmed.is_empty() {
            return Err("must not be empty".into());
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
/// Use as `#[serde(default)] field: Note<N>`. Like [`Text`], `Debug` shows only the length.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Option<String>", into = "Option<String>")]
pub struct Note<const MAX: usize>(Option<String>);

impl<const MAX: usize> fmt::Debug for Note<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(text) => write!(f, "Note({} characters)", text.chars().count()),
            None => f.write_str("Note(none)"),
        }
    }
}

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
        let Some(value) = value else {
            return Ok(Self(None));
        };
        check_length::<MAX>(&value)?;
        reject_nul(&value)?;
        let trimmed = trim(&value);
        Ok(Self((!trimmed.is_empty()).then(|| trimmed.to_owned())))
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
    fn logs_see_patient_ids_masked() {
        let id = PatientId::try_from(987_654_321).map_err(|e| e.to_string());
        assert_eq!(
            id.map(|id| format!("{id:?} {}", id.masked())).as_deref(),
            Ok("PatientId(**21) **21")
        );
        let short = PatientId::try_from(7).map(|id| id.masked().to_string());
        assert_eq!(short.as_deref(), Ok("**07"));
        let text = Text::<10>::try_from("Kusum".to_owned()).map(|t| format!("{t:?}"));
        assert_eq!(text.as_deref(), Ok("Text(5 characters)"));
    }

    #[test]
    fn patient_ids_are_positive() {
        assert!(PatientId::try_from(0).is_err());
        assert!(PatientId::try_from(-4).is_err());
        assert_eq!(PatientId::try_from(200).map(PatientId::get), Ok(200));
        assert!("abc".parse::<PatientId>().is_err());
        let from_json = |text: &str| serde_json::from_str::<PatientId>(text).map(PatientId::get);
        assert_eq!(from_json("200.0").ok(), Some(200));
        assert_eq!(
            from_json("2046606483675293.0").ok(),
            Some(2_046_606_483_675_293)
        );
        assert!(from_json("9007199254740993").is_err());
        assert!(from_json("200.5").is_err());
        assert!(from_json("1e30").is_err());
        assert!(from_json("\"200\"").is_err());
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(
            Text::<6>::try_from("  abc ".to_owned()).map(Text::into_inner),
            Ok("abc".to_owned())
        );
        assert!(Text::<5>::try_from("  abc ".to_owned()).is_err());
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
        match value.as_str() {
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

/// The OpenAPI schemas of the newtypes state the same rules as their `TryFrom`, so that a client
/// generating data from the document meets exactly the server's checks.
mod schemas {
    use std::borrow::Cow;

    use serde_json::json;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, schema::SchemaType};
    use utoipa::{PartialSchema, ToSchema};

    use super::{Disposition, Note, PatientId, Text};

    /// Not blank (a character other than ASCII white space) and no NUL anywhere.
    const PRESENT: &str = r"^[^\x00]*[^\x00\t\n\f\r ][^\x00]*$";
    const NO_NUL: &str = r"^[^\x00]*$";

    impl PartialSchema for PatientId {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .maximum(Some(PatientId::MAX))
                .description(Some("The patient's national identification number"))
                .examples([json!(200)])
                .into()
        }
    }

    impl ToSchema for PatientId {}

    impl<const MAX: usize> PartialSchema for Text<MAX> {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX))
                .pattern(Some(PRESENT))
                .description(Some(format!(
                    "Required text, at most {MAX} characters; surrounding white space is dropped"
                )))
                .into()
        }
    }

    impl<const MAX: usize> ToSchema for Text<MAX> {
        fn name() -> Cow<'static, str> {
            Cow::Owned(format!("Text{MAX}"))
        }
    }

    impl<const MAX: usize> PartialSchema for Note<MAX> {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .max_length(Some(MAX))
                .pattern(Some(NO_NUL))
                .description(Some(format!(
                    "Optional text, at most {MAX} characters; absent, null and blank all mean \
                     \"not given\""
                )))
                .into()
        }
    }

    impl<const MAX: usize> ToSchema for Note<MAX> {
        fn name() -> Cow<'static, str> {
            Cow::Owned(format!("Note{MAX}"))
        }
    }

    impl PartialSchema for Disposition {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["discharge", "admission"]))
                .description(Some(
                    "Home (`discharge`) or into the hospital (`admission`)",
                ))
                .into()
        }
    }

    impl ToSchema for Disposition {}
}

/// The site that handed out a token: the hospital itself, or a clinic joined to it by a leaf
/// node (docs/architecture.md, "Sites"). Tokens count per site and day, so a token means
/// something only with its site; every event, answer and screen that shows a token shows it.
///
/// A site's name is also its JetStream domain (`$JS.<site>.API`), hence the narrow alphabet:
/// lowercase ASCII letters, digits and hyphens, starting with a letter, at most 32.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Site(String);

impl Site {
    /// The main site: events without a `site` (the book's, and ours from before there were
    /// sites) were all given there.
    pub const HOSPITAL: &'static str = "hospital";

    pub fn hospital() -> Self {
        Self(Self::HOSPITAL.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Site {
    fn default() -> Self {
        Self::hospital()
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Site {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let mut chars = value.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_fits = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if starts_with_letter && rest_fits && value.len() <= 32 {
            Ok(Self(value))
        } else {
            Err(format!(
                "a site is 1 to 32 lowercase letters, digits or hyphens, starting with a letter; got {value:?}"
            ))
        }
    }
}

impl std::str::FromStr for Site {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<Site> for String {
    fn from(site: Site) -> Self {
        site.0
    }
}

#[cfg(test)]
mod site_tests {
    use super::Site;

    #[test]
    fn a_site_name_fits_a_jetstream_domain() {
        for good in ["hospital", "clinic", "north-2"] {
            assert_eq!(good.parse::<Site>().map(String::from), Ok(good.to_owned()));
        }
        for bad in ["", "Clinic", "2nd", "a.b", "a b", "a>", &"x".repeat(33)] {
            assert!(bad.parse::<Site>().is_err(), "{bad:?} was taken");
        }
        assert_eq!(Site::default().as_str(), "hospital");
    }
}
