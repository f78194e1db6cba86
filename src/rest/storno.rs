//! Storno dialect: real HTTP statuses, errors as `{"error":"…"}`, authentication failures in
//! Storno's JWT-layer shape `{"code":401,"message":"…"}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::{JsonBodyError, read_json};
use crate::auth::{AuthError, Viewer};
use crate::http::{AppState, CorrelationId};
use crate::service::DomainError;
use crate::totp;

pub const INVALID_JSON: &str = "Invalid JSON body.";
pub const BODY_TOO_LARGE: &str = "Request body too large.";
pub const MISSING_CODE: &str = "Missing code.";
pub const ALREADY_ENABLED: &str = "TOTP is already enabled.";
pub const NOT_ENABLED: &str = "MFA is not enabled.";
pub const INVALID_CODE_RETRY: &str = "Invalid code. Please try again.";
pub const INVALID_CODE: &str = "Invalid code.";
pub const INTERNAL: &str = "Internal server error.";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/mfa/totp/setup", post(setup))
        .route("/api/v1/me/mfa/totp/enable", post(enable))
        .route("/api/v1/me/mfa/totp/disable", post(disable))
        .route("/api/v1/me/mfa/backup-codes/regenerate", post(regenerate))
        .route("/api/v1/me/mfa/status", get(status))
        .route("/api/v1/me/mfa/verify", post(verify))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn auth_error(e: AuthError) -> Response {
    let message = match e {
        AuthError::Missing => "JWT Token not found",
        AuthError::Expired => "Expired JWT Token",
        AuthError::Invalid | AuthError::WrongTokenType => "Invalid JWT Token",
    };
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "code": 401, "message": message })),
    )
        .into_response()
}

/// Which route a domain failure comes from (the answers differ per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Setup,
    Enable,
    Disable,
    Regenerate,
    Verify,
}

/// The one mapping of domain failures to Storno answers.
fn domain_error(route: Route, e: DomainError) -> Response {
    use DomainError as E;
    match (route, e) {
        (
            _,
            E::TooManyAttempts {
                retry_after_seconds,
            },
        ) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many attempts. Try again in {retry_after_seconds} seconds."),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        (_, E::TotpAlreadyEnabled) => error(StatusCode::CONFLICT, ALREADY_ENABLED),
        (Route::Enable, E::NoPendingSetup | E::InvalidCode { .. } | E::CodeAlreadyUsed { .. }) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, INVALID_CODE_RETRY)
        }
        (Route::Verify, E::InvalidCode { .. } | E::CodeAlreadyUsed { .. }) => {
            error(StatusCode::UNAUTHORIZED, INVALID_CODE)
        }
        (_, E::InvalidCode { .. } | E::CodeAlreadyUsed { .. } | E::NoPendingSetup) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, INVALID_CODE_RETRY)
        }
        (_, E::TotpNotEnabled) => error(StatusCode::BAD_REQUEST, NOT_ENABLED),
        (route, E::Database(err)) => {
            tracing::error!(error = %err, ?route, "database error");
            error(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
        }
        (route, E::Internal(err)) => {
            tracing::error!(error = %err, ?route, "internal error");
            error(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
        }
    }
}

fn body_error(e: JsonBodyError) -> Response {
    match e {
        JsonBodyError::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE),
        JsonBodyError::Malformed => error(StatusCode::BAD_REQUEST, INVALID_JSON),
    }
}

/// `{code}` (and for verify `type`) from a JSON body, or the 400 answer.
async fn code_from_body(headers: &HeaderMap, body: Body) -> Result<(String, Value), Response> {
    let json = read_json(headers, body).await.map_err(body_error)?;
    let Some(obj) = json.as_object() else {
        return Err(error(StatusCode::BAD_REQUEST, INVALID_JSON));
    };
    let code = match obj.get("code") {
        None | Some(Value::Null) => return Err(error(StatusCode::BAD_REQUEST, MISSING_CODE)),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(error(StatusCode::BAD_REQUEST, MISSING_CODE));
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(error(StatusCode::BAD_REQUEST, INVALID_JSON)),
    };
    Ok((code, json))
}

fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, Response> {
    state.authenticate(headers).map_err(auth_error)
}

async fn setup(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state.service.begin_enrolment(&viewer, &cid.0).await {
        Ok(e) => match totp::qr_data_uri(&e.otpauth_uri) {
            Ok(qr) => {
                Json(json!({ "secret": e.secret, "qrCode": qr, "otpauthUri": e.otpauth_uri }))
                    .into_response()
            }
            Err(err) => domain_error(Route::Setup, DomainError::Internal(err.to_string())),
        },
        Err(e) => domain_error(Route::Setup, e),
    }
}

async fn enable(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (code, _) = match code_from_body(&headers, body).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match state.service.enable(&viewer, &code, &cid.0).await {
        Ok(e) => Json(json!({ "enabled": true, "backupCodes": e.recovery_codes })).into_response(),
        Err(e) => domain_error(Route::Enable, e),
    }
}

async fn disable(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (code, _) = match code_from_body(&headers, body).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match state.service.disable(&viewer, &code, &cid.0).await {
        Ok(_) => Json(json!({ "disabled": true })).into_response(),
        Err(e) => domain_error(Route::Disable, e),
    }
}

async fn regenerate(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (code, _) = match code_from_body(&headers, body).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match state
        .service
        .regenerate_recovery_codes(&viewer, &code, &cid.0)
        .await
    {
        Ok(codes) => Json(json!({ "backupCodes": codes })).into_response(),
        Err(e) => domain_error(Route::Regenerate, e),
    }
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state.service.status(&viewer.user_id).await {
        Ok(s) => Json(json!({
            "totpEnabled": s.enabled,
            "backupCodesRemaining": s.recovery_codes_remaining,
            "passkeysCount": 0,
        }))
        .into_response(),
        Err(e) => domain_error(Route::Verify, e),
    }
}

async fn verify(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (code, json) = match code_from_body(&headers, body).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let backup = match json.get("type") {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) if t == "totp" => false,
        Some(Value::String(t)) if t == "backup" => true,
        Some(_) => return error(StatusCode::BAD_REQUEST, INVALID_JSON),
    };
    let result = if backup {
        state
            .service
            .use_recovery_code(&viewer, &code, &cid.0)
            .await
    } else {
        state.service.verify(&viewer, &code, &cid.0).await
    };
    match result {
        Ok(_) => Json(json!({ "verified": true })).into_response(),
        Err(e) => domain_error(Route::Verify, e),
    }
}
