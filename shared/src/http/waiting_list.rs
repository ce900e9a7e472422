//! The rule every waiting list follows. Inspection, treatment and release each keep a list of
//! patients waiting for them; a request that names a patient answers 404 when the patient was
//! never on the list, and a request that takes a patient off it answers 409 when the patient is
//! known but not waiting now. The messages say what to do instead.
//!
//! Each service finds out both facts in the one statement that takes the patient off its list
//! (`with taken as (update … returning 1) select exists (…taken), exists (…known)`), and hands them
//! to [`WaitingList::take_off`]. That statement is written out in each service rather than built
//! here: its tables and columns differ, and `sqlx::query!` checks a statement against the schema
//! only when it is one literal string.

use crate::domain::PatientId;
use crate::http::error::ApiError;

pub struct WaitingList {
    /// What the patients wait for: "for inspection".
    pub waiting_for: &'static str,
    /// How a patient gets on the list, for the 404.
    pub how_to_join: &'static str,
    /// How a patient who has left the list comes back, for the 409.
    pub how_to_return: &'static str,
}

impl WaitingList {
    /// 404: the patient was never on this list.
    pub fn unknown(&self, id: PatientId) -> ApiError {
        ApiError::NotFound(format!(
            "patient {id} has never been waiting {}; {}",
            self.waiting_for,
            with_id(self.how_to_join, id)
        ))
    }

    /// 409: the patient was on this list but is not waiting now.
    pub(crate) fn not_waiting(&self, id: PatientId) -> ApiError {
        ApiError::Conflict(format!(
            "patient {id} is not waiting {} now; {}",
            self.waiting_for,
            with_id(self.how_to_return, id)
        ))
    }

    /// The answer to a request that takes patient `id` off the list: `taken` when it did, and
    /// `known` when the patient has ever been on it.
    pub fn take_off(&self, id: PatientId, taken: bool, known: bool) -> Result<(), ApiError> {
        match (taken, known) {
            (true, _) => Ok(()),
            (false, true) => Err(self.not_waiting(id)),
            (false, false) => Err(self.unknown(id)),
        }
    }

    /// The answer to a request about patient `id` that only needs the patient to be known.
    pub fn require_known(&self, id: PatientId, known: bool) -> Result<(), ApiError> {
        if known { Ok(()) } else { Err(self.unknown(id)) }
    }
}

/// The hints may name the patient's own URL: `{id}` stands for the id.
fn with_id(hint: &str, id: PatientId) -> String {
    hint.replace("{id}", &id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: WaitingList = WaitingList {
        waiting_for: "for inspection",
        how_to_join: "register first",
        how_to_return: "get a new token with GET /token/{id}",
    };

    #[test]
    fn unknown_is_404_and_known_but_gone_is_409() -> Result<(), String> {
        let id = PatientId::try_from(7)?;
        assert!(LIST.take_off(id, true, true).is_ok());
        let conflict = LIST.take_off(id, false, true).err().map(|e| e.to_problem());
        assert_eq!(conflict.as_ref().map(|p| p.status), Some(409));
        assert!(conflict.is_some_and(|p| p.detail.contains("GET /token/7")));
        let missing = LIST
            .take_off(id, false, false)
            .err()
            .map(|e| e.to_problem());
        assert_eq!(missing.as_ref().map(|p| p.status), Some(404));
        assert!(
            missing.is_some_and(
                |p| p.detail.contains("patient 7") && p.detail.contains("register first")
            )
        );
        Ok(())
    }
}
