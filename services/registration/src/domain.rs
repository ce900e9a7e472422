//! The patient record as a request carries it, parsed field by field.

use serde::{Deserialize, Serialize};

use opd_shared::domain::{Note, PatientId, Text};

/// The body of `POST /opd/patient/register` and `PUT /opd/patient/update` (the book's
/// `RegistrationRequest`).
#[derive(Debug, Deserialize)]
pub struct PatientForm {
    pub id: PatientId,
    pub full_name: Text<100>,
    #[serde(default)]
    pub address: Note<255>,
    #[serde(default)]
    pub sex: Option<Sex>,
    #[serde(default)]
    pub email: Option<Email>,
    #[serde(default)]
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
        match value.trim().to_ascii_lowercase().as_str() {
            "male" | "m" => Ok(Self::Male),
            "female" | "f" => Ok(Self::Female),
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

/// An e-mail address, checked for shape only (one `@`, something on both sides, no spaces).
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
        let value = value.trim().to_owned();
        opd_shared::domain::reject_nul(&value)?;
        let valid = value.len() <= 254
            && !value.contains(char::is_whitespace)
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
#[serde(try_from = "i64")]
pub struct Phone(i64);

impl Phone {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Phone {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if (0..1_000_000_000_000_000).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("a phone number has at most 15 digits, got {value}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sex_is_case_insensitive_and_closed() {
        assert_eq!(Sex::try_from("Male".to_owned()), Ok(Sex::Male));
        assert!(Sex::try_from("unknown".to_owned()).is_err());
    }

    #[test]
    fn email_needs_one_at_sign_with_both_sides() {
        assert!(Email::try_from("a@b.lk".to_owned()).is_ok());
        for bad in ["a", "@b", "a@", "a b@c", "a@b@c"] {
            assert!(Email::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn phone_numbers_are_bounded() {
        assert!(Phone::try_from(222_222_222).is_ok());
        assert!(Phone::try_from(-1).is_err());
        assert!(Phone::try_from(10_i64.pow(15)).is_err());
    }
}
