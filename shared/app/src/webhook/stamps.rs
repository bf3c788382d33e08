//! `/stamps` and `/stamps/{id}`: register, list, show, change, remove and test stamps.

use super::App;
use super::body::{JsonBody, StampPath, Verify};
use super::caller::Caller;
use super::page::PageRequest;
use super::problem::Problem;
use crate::registrar::{ConnectionReport, RegistrationError, StampPatch, StampView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use azs_core::ports::PullStage;
use azs_core::registration::StampRegistration;
use serde::Serialize;

pub async fn register(
    State(app): State<App>,
    Caller(by): Caller,
    Verify(verify): Verify,
    JsonBody(input): JsonBody<StampRegistration>,
) -> Result<Response, Problem> {
    let view = app
        .registrar
        .register(input, verify, &by)
        .await
        .map_err(|e| Problem::from_registration(e, &app.base))?;
    let location = app.stamp_location(&view.stamp.id);
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(view)).into_response())
}

pub async fn list(State(app): State<App>, page: PageRequest) -> Result<Response, Problem> {
    let views = app.registrar.list().await.map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(page.answer(views, |v: &StampView| v.stamp.id.to_string()))
}

pub async fn get(State(app): State<App>, StampPath(id): StampPath) -> Result<Json<StampView>, Problem> {
    app.registrar.get(&id).await.map(Json).map_err(|e| Problem::from_registration(e, &app.base))
}

pub async fn update(
    State(app): State<App>,
    Caller(by): Caller,
    StampPath(id): StampPath,
    Verify(verify): Verify,
    JsonBody(patch): JsonBody<StampPatch>,
) -> Result<Json<StampView>, Problem> {
    app.registrar
        .update(&id, patch, verify, &by)
        .await
        .map(Json)
        .map_err(|e| Problem::from_registration(e, &app.base))
}

pub async fn remove(
    State(app): State<App>,
    Caller(by): Caller,
    StampPath(id): StampPath,
) -> Result<StatusCode, Problem> {
    app.registrar.remove(&id, &by).await.map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(StatusCode::NO_CONTENT)
}

/// What `POST /stamps/{id}/test` answers: the request is valid whatever the stamp does, so a stamp
/// that cannot be reached or refuses us is a negative *result* (200, `ok: false`, the step that failed),
/// not a rejection of the request. Only a stored stamp that cannot be tested at all (its credential
/// gone from the secret store) is a 422.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub ok: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub report: Option<ConnectionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<TestFailure>,
}

/// The step a connection test stopped at, with the typed reason (never the stamp's own text).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestFailure {
    pub stage: PullStage,
    pub upstream_status: Option<u16>,
    pub upstream_code: Option<String>,
    pub transient: bool,
    pub detail: String,
}

pub async fn test(
    State(app): State<App>,
    Caller(by): Caller,
    StampPath(id): StampPath,
) -> Result<Json<TestResult>, Problem> {
    match app.registrar.test(&id, &by).await {
        Ok(report) => Ok(Json(TestResult { ok: true, report: Some(report), failure: None })),
        Err(RegistrationError::Unverified(pull)) => Ok(Json(TestResult {
            ok: false,
            report: None,
            failure: Some(TestFailure {
                stage: pull.stage,
                upstream_status: pull.http_status,
                upstream_code: pull.upstream_code,
                transient: pull.transient,
                detail: pull.message,
            }),
        })),
        Err(RegistrationError::Unusable(errors)) => {
            let mut p = Problem::unusable_fields(errors);
            p.title = "The stored stamp cannot be tested".into();
            Err(p)
        }
        Err(other) => Err(Problem::from_registration(other, &app.base)),
    }
}
