//! The patient record as a request carries it, parsed field by field.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use opd_shared::domain::{Note, PatientId, Text, WholeNumber};

/// The body of `POST /opd/patient/register` and `PUT /opd/patient/update` (the book's
/// `RegistrationRequest`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "full_name": "chanaka fernando",
    "address": "44, sw19, london",
    "id": 200,
    "sex": "male",
    "phone": 222_222_222
}))]
pub struct PatientForm {
    pub id: PatientId,
    pub full_name: Text<100>,
    #[serde(default)]
    pub address: Note<255>,
    #[serde(default)]
    #[schema(nullable)]
    pub sex: Option<Sex>,
    #[serde(default)]
    #[schema(nullable)]
    pub email: Option<Email>,
    #[serde(default)]
    #[schema(nullable)]
    pub phone: Option<Phone>,
    #[serde(default)]
    pub remarks: Note<1000>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Sex {
    Male,
    Female,
    Other,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Male => "male",
            Self::Female => "female",
            Self::Other => "other",
        }
    }
}

impl TryFrom<String> for Sex {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "male" => Ok(Self::Male),
            "female" => Ok(Self::Female),
            "other" => Ok(Self::Other),
            other => Err(format!(
                "expected one of \"male\", \"female\", \"other\", got {other:?}"
            )),
        }
    }
}

impl From<Sex> for &'static str {
    fn from(sex: Sex) -> Self {
        sex.as_str()
    }
}

/// An e-mail address, checked for shape only: one `@` with something on both sides, no ASCII
/// white space (see [`opd_shared::domain`] on why ASCII) and no NUL, at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(String);

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let valid = value.chars().count() <= 254
            && !value.contains(|c: char| c.is_ascii_whitespace() || c == '\x0b' || c == '\0')
            && matches!(value.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if valid {
            Ok(Self(value))
        } else {
            Err(format!("{value:?} is not an e-mail address"))
        }
    }
}

/// A phone number as the book sends it: digits in a JSON number, at most 15 (E.164).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "WholeNumber")]
pub struct Phone(i64);

impl Phone {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<WholeNumber> for Phone {
    type Error = String;
    fn try_from(WholeNumber(value): WholeNumber) -> Result<Self, Self::Error> {
        if (0..1_000_000_000_000_000).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("a phone number has at most 15 digits, got {value}"))
        }
    }
}

impl utoipa::PartialSchema for Sex {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["male", "female", "other"]))
            .into()
    }
}

impl ToSchema for Sex {}

impl utoipa::PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(254))
            .pattern(Some(r"^[^@\x00\t\n\x0b\f\r ]+@[^@\x00\t\n\x0b\f\r ]+$"))
            .examples([json!("chanaka@example.com")])
            .into()
    }
}

impl ToSchema for Email {}

impl utoipa::PartialSchema for Phone {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(999_999_999_999_999_i64))
            .description(Some("Digits only, at most 15 (E.164)"))
            .into()
    }
}

impl ToSchema for Phone {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sex_is_one_of_three_lowercase_words() {
        assert_eq!(Sex::try_from("male".to_owned()), Ok(Sex::Male));
        assert!(Sex::try_from("Male".to_owned()).is_err());
        assert!(Sex::try_from("unknown".to_owned()).is_err());
    }

    #[test]
    fn email_needs_one_at_sign_with_both_sides() {
        assert!(Email::try_from("a@b.lk".to_owned()).is_ok());
        for bad in ["a", "@b", "a@", "a b@c", "a@b@c", " a@b", "a@b\t"] {
            assert!(Email::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn phone_numbers_are_bounded() {
        assert!(Phone::try_from(WholeNumber(222_222_222)).is_ok());
        assert!(Phone::try_from(WholeNumber(-1)).is_err());
        assert!(Phone::try_from(WholeNumber(10_i64.pow(15))).is_err());
    }
}
