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
    let view =
        app.registrar.register(input, verify).await.map_err(|e| Problem::from_registration(e, &app.base))?;
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
        RegistrationError::Unusable(errors) => {
            let mut p = Problem::unusable_fields(errors);
            p.title = "The stored stamp cannot be tested".into();
            p
        }
        other => Problem::from_registration(other, &app.base),
    })
}
