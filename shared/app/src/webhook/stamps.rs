//! `/stamps` and `/stamps/{id}`: register, list, show, change, remove and test stamps.

use super::App;
use super::body::{JsonBody, StampPath, Verify};
use super::problem::Problem;
use crate::registrar::{ConnectionReport, RegistrationError, StampPatch, StampView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use azs_core::registration::StampRegistration;

pub async fn register(
    State(app): State<App>,
    Verify(verify): Verify,
    JsonBody(input): JsonBody<StampRegistration>,
) -> Result<Response, Problem> {
    let (input, before_1677) = representable_collect_from(input);
    let view = app.registrar.register(input, verify).await.map_err(|e| match e {
        RegistrationError::Invalid(mut errors) if before_1677 => {
            errors
                .0
                .iter_mut()
                .filter(|e| e.field == "collectFrom")
                .for_each(|e| e.rule = "must not be before 1677".into());
            Problem::invalid_fields(errors)
        }
        e => Problem::from_registration(e, &app.base),
    })?;
    let location = app.stamp_location(&view.stamp.id);
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(view)).into_response())
}

pub async fn list(State(app): State<App>) -> Result<Json<Vec<StampView>>, Problem> {
    app.registrar.list().await.map(Json).map_err(|e| Problem::from_registration(e, &app.base))
}

pub async fn get(State(app): State<App>, StampPath(id): StampPath) -> Result<Json<StampView>, Problem> {
    app.registrar.get(&id).await.map(Json).map_err(|e| Problem::from_registration(e, &app.base))
}

pub async fn update(
    State(app): State<App>,
    StampPath(id): StampPath,
    Verify(verify): Verify,
    JsonBody(patch): JsonBody<StampPatch>,
) -> Result<Json<StampView>, Problem> {
    app.registrar
        .update(&id, patch, verify)
        .await
        .map(Json)
        .map_err(|e| Problem::from_registration(e, &app.base))
}

pub async fn remove(State(app): State<App>, StampPath(id): StampPath) -> Result<StatusCode, Problem> {
    app.registrar.remove(&id).await.map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(StatusCode::NO_CONTENT)
}

/// 200 with what the stamp answered, or 422 when it could not be reached, refused us, or the stored
/// credential is gone (the request itself had nothing invalid, so that is no 400).
pub async fn test(
    State(app): State<App>,
    StampPath(id): StampPath,
) -> Result<Json<ConnectionReport>, Problem> {
    app.registrar.test(&id).await.map(Json).map_err(|e| match e {
        RegistrationError::Invalid(errors) => {
            let mut p = Problem::invalid_fields(errors);
            p.status = StatusCode::UNPROCESSABLE_ENTITY;
            p.title = "The stored stamp cannot be tested".into();
            p
        }
        other => Problem::from_registration(other, &app.base),
    })
}

/// The latest whole hour chrono can truncate: core's whole-hour check panics on later (and on
/// pre-1677) instants. Such a `collectFrom` is swapped for this one, which validation refuses as "in
/// the future" while still reporting every other field.
// TODO(core): make `window::is_whole_hour`/`floor_hour` total, then drop this.
const LAST_REPRESENTABLE_HOUR: &str = "2262-04-11T00:00:00Z";

/// The registration with an unrepresentable `collectFrom` replaced, and whether it lay before 1677.
fn representable_collect_from(mut input: StampRegistration) -> (StampRegistration, bool) {
    let parsed = input.collect_from.as_deref().map(|s| chrono::DateTime::parse_from_rfc3339(s.trim()));
    match parsed {
        Some(Ok(t)) if t.timestamp_nanos_opt().is_none() => {
            input.collect_from = Some(LAST_REPRESENTABLE_HOUR.to_owned());
            (input, t.timestamp() < 0)
        }
        _ => (input, false),
    }
}
