//! `/stamps/{id}/subscriptions` and `/stamps/{id}/unmapped`: which billing subscription each tenant
//! subscription of a stamp is invoiced under, and which have usage but no mapping yet.

use super::App;
use super::body::{ExternalSubscriptionPath, JsonBody, StampPath};
use super::caller::Caller;
use super::page::PageRequest;
use super::problem::Problem;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use azs_core::mapping::{SubscriptionMapping, UnmappedSubscription};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingInput {
    pub billing_subscription_id: String,
}

/// The mapping as stored, and how many already collected rows it back-filled.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingSet {
    #[serde(flatten)]
    pub mapping: SubscriptionMapping,
    pub backfilled_rows: u64,
}

pub async fn set(
    State(app): State<App>,
    Caller(by): Caller,
    StampPath(id): StampPath,
    ExternalSubscriptionPath(external): ExternalSubscriptionPath,
    JsonBody(input): JsonBody<MappingInput>,
) -> Result<Json<MappingSet>, Problem> {
    let (mapping, backfilled_rows) = app
        .mapper
        .set_mapping(&id, &external, &input.billing_subscription_id, &by)
        .await
        .map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(Json(MappingSet { mapping, backfilled_rows }))
}

pub async fn remove(
    State(app): State<App>,
    Caller(by): Caller,
    StampPath(id): StampPath,
    ExternalSubscriptionPath(external): ExternalSubscriptionPath,
) -> Result<StatusCode, Problem> {
    app.mapper
        .remove_mapping(&id, &external, &by)
        .await
        .map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    State(app): State<App>,
    StampPath(id): StampPath,
    page: PageRequest,
) -> Result<Response, Problem> {
    let mappings =
        app.mapper.mappings(Some(&id)).await.map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(page.answer(mappings, |m: &SubscriptionMapping| m.external_subscription_id.clone()))
}

pub async fn unmapped(
    State(app): State<App>,
    StampPath(id): StampPath,
    page: PageRequest,
) -> Result<Response, Problem> {
    let unmapped =
        app.mapper.unmapped(Some(&id)).await.map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(page.answer(unmapped, |u: &UnmappedSubscription| u.external_subscription_id.clone()))
}
