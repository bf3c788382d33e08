//! Which price book a billing subscription rates with: a default for everyone, and overrides per
//! billing subscription, each effective from a UTC hour. An override, once in force, wins over the
//! default for that subscription; a later override replaces an earlier one.

use super::book::is_book_id;
use crate::error::ValidationErrors;
use crate::mapping::{BILLING_SUBSCRIPTION_ID_RULE, is_billing_subscription_id};
use crate::window::{EFFECTIVE_HOUR_RULE, is_effective_hour};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One assignment as imported: no `billingSubscriptionId` makes it the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Assignment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_subscription_id: Option<String>,
    pub book_id: String,
    /// The first usage hour rated with this book (a whole UTC hour).
    pub effective_from: DateTime<Utc>,
}

impl Assignment {
    pub fn validated(self) -> Result<Assignment, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(id) = &self.billing_subscription_id
            && !is_billing_subscription_id(id)
        {
            errors.push("billingSubscriptionId", BILLING_SUBSCRIPTION_ID_RULE);
        }
        if !is_book_id(&self.book_id) {
            errors.push("bookId", "must name a price book");
        }
        if !is_effective_hour(self.effective_from) {
            errors.push("effectiveFrom", EFFECTIVE_HOUR_RULE);
        }
        errors.into_result(self)
    }
}

/// Every assignment, ready to answer "which book at this hour".
#[derive(Debug, Clone, Default)]
pub struct Assignments {
    defaults: Vec<(DateTime<Utc>, String)>,
    overrides: HashMap<String, Vec<(DateTime<Utc>, String)>>,
}

impl Assignments {
    pub fn new(assignments: impl IntoIterator<Item = Assignment>) -> Self {
        let mut this = Self::default();
        for a in assignments {
            let entry = (a.effective_from, a.book_id);
            match a.billing_subscription_id {
                None => this.defaults.push(entry),
                Some(sub) => this.overrides.entry(sub).or_default().push(entry),
            }
        }
        this.defaults.sort();
        this.overrides.values_mut().for_each(|o| o.sort());
        this
    }

    /// The book `billing_subscription_id` rates with at `hour`, if any is in force.
    pub fn book_at(&self, billing_subscription_id: &str, hour: DateTime<Utc>) -> Option<&str> {
        fn in_force(list: &[(DateTime<Utc>, String)], hour: DateTime<Utc>) -> Option<&str> {
            let after = list.partition_point(|(from, _)| *from <= hour);
            after.checked_sub(1).map(|i| list[i].1.as_str())
        }
        self.overrides
            .get(billing_subscription_id)
            .and_then(|o| in_force(o, hour))
            .or_else(|| in_force(&self.defaults, hour))
    }

    /// Every hour at which some subscription's book changes.
    pub fn change_points(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.defaults.iter().chain(self.overrides.values().flatten()).map(|(from, _)| *from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn a(sub: Option<&str>, book: &str, from: &str) -> Assignment {
        Assignment {
            billing_subscription_id: sub.map(str::to_owned),
            book_id: book.into(),
            effective_from: t(from),
        }
    }

    #[test]
    fn an_override_wins_from_its_hour_and_the_default_applies_before_and_to_everyone_else() {
        let assignments = Assignments::new([
            a(None, "base", "2026-01-01T00:00:00Z"),
            a(Some("cust-1"), "gold", "2026-03-10T05:00:00Z"),
            a(None, "base2", "2026-04-01T00:00:00Z"),
        ]);
        assert_eq!(assignments.book_at("cust-1", t("2026-03-10T04:00:00Z")), Some("base"));
        assert_eq!(assignments.book_at("cust-1", t("2026-03-10T05:00:00Z")), Some("gold"));
        assert_eq!(assignments.book_at("cust-1", t("2026-05-01T00:00:00Z")), Some("gold"));
        assert_eq!(assignments.book_at("cust-2", t("2026-05-01T00:00:00Z")), Some("base2"));
        assert_eq!(assignments.book_at("cust-2", t("2025-12-31T23:00:00Z")), None);
    }

    #[test]
    fn an_assignment_names_each_broken_rule() {
        let err = a(Some("=cmd"), "", "2026-01-01T00:30:00Z").validated().unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["billingSubscriptionId", "bookId", "effectiveFrom"]);
    }
}
