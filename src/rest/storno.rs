//! Storno dialect: real HTTP statuses, errors as `{"error":"…"}`, authentication failures in
//! Storno's JWT-layer shape `{"code":401,"message":"…"}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{JsonBodyError, read_json};
use crate::auth::AuthError;
use crate::service::{CheckError, EnableError, EnrolError, Internal};
use crate::web::{AppState, AuthRejection, Caller, CorrelationId};

pub const INVALID_JSON: &str = "Invalid JSON body.";
pub const BODY_TOO_LARGE: &str = "Request body too large.";
pub const MISSING_CODE: &str = "Missing code.";
pub const ALREADY_ENABLED: &str = "TOTP is already enabled.";
pub const NOT_ENABLED: &str = "MFA is not enabled.";
pub const INVALID_CODE_RETRY: &str = "Invalid code. Please try again.";
pub const INVALID_CODE: &str = "Invalid code.";
pub const INTERNAL: &str = "Internal server error.";
pub const UNAVAILABLE: &str = "Service unavailable.";

/// `POST /api/v1/me/mfa/totp/setup` → 200.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetupResponse {
    /// Base32 secret for manual entry.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// `data:image/png;base64,…` 300×300 greyscale PNG QR code of `otpauthUri`.
    #[schema(example = "data:image/png;base64,iVBORw0KGgo…")]
    pub qr_code: String,
    #[schema(
        example = "otpauth://totp/Twofold:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold&algorithm=SHA1&digits=6&period=30"
    )]
    pub otpauth_uri: String,
}

/// `{code}`: a TOTP code (or, for disable, a recovery code).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeRequest {
    #[schema(example = "123456")]
    pub code: String,
}

/// Kind of code sent to `verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CodeType {
    Totp,
    Backup,
}

/// `{code, type}` for `verify`; `type` defaults to `totp`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRequest {
    #[schema(example = "123456")]
    pub code: String,
    #[serde(rename = "type")]
    pub kind: Option<CodeType>,
}

/// `enable` → 200: the 10 recovery ("backup") codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnableResponse {
    #[schema(example = true)]
    pub enabled: bool,
    #[schema(example = json!(["7KQ2-MXR9-TDAB", "…"]))]
    pub backup_codes: Vec<String>,
}

/// `disable` → 200.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisableResponse {
    #[schema(example = true)]
    pub disabled: bool,
}

/// `backup-codes/regenerate` → 200: the new set, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupCodesResponse {
    pub backup_codes: Vec<String>,
}

/// `status` → 200.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub totp_enabled: bool,
    pub backup_codes_remaining: u64,
    /// Always 0: Twofold manages TOTP only.
    pub passkeys_count: u32,
}

/// `verify` → 200.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    #[schema(example = true)]
    pub verified: bool,
}

/// Every Storno error but authentication: `{"error": "…"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "Invalid code. Please try again.")]
    pub error: String,
}

/// Authentication failures, in Storno's JWT-layer shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct JwtErrorBody {
    #[schema(example = 401)]
    pub code: u16,
    /// `JWT Token not found`, `Invalid JWT Token` or `Expired JWT Token`.
    #[schema(example = "JWT Token not found")]
    pub message: String,
}

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
    (status, Json(ErrorBody { error: message.to_owned() })).into_response()
}

/// Storno's JWT layer answers `{"code":401,"message":…}`.
pub struct Storno;

impl AuthRejection for Storno {
    fn reject(e: AuthError, _: &axum::http::request::Parts, _: &AppState) -> Response {
        let message = match e {
            AuthError::Missing => "JWT Token not found",
            AuthError::Expired => "Expired JWT Token",
            AuthError::Invalid | AuthError::WrongTokenType => "Invalid JWT Token",
        };
        (StatusCode::UNAUTHORIZED, Json(json!({ "code": 401, "message": message }))).into_response()
    }
}

fn too_many_attempts(retry_after_seconds: u64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Too many attempts. Try again in {retry_after_seconds} seconds."),
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// An unexpected failure: logged once here, 503 when the database is the cause (the client may
/// retry), 500 otherwise; never any detail.
fn internal(e: &Internal) -> Response {
    tracing::error!(error = %e, "internal error");
    if e.is_database() {
        error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
    } else {
        error(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL)
    }
}

/// The Storno answer to each failure of each operation (one exhaustive `match` per family).
fn enrol_error(e: EnrolError) -> Response {
    match e {
        EnrolError::TotpAlreadyEnabled => error(StatusCode::CONFLICT, ALREADY_ENABLED),
        EnrolError::Internal(e) => internal(&e),
    }
}

fn enable_error(e: EnableError) -> Response {
    match e {
        EnableError::TotpAlreadyEnabled => error(StatusCode::CONFLICT, ALREADY_ENABLED),
        // Storno answers a missing setup like a wrong code.
        EnableError::NoPendingSetup | EnableError::InvalidCode { .. } => {
            error(StatusCode::UNPROCESSABLE_ENTITY, INVALID_CODE_RETRY)
        }
        EnableError::TooManyAttempts { retry_after_seconds } => too_many_attempts(retry_after_seconds),
        EnableError::Internal(e) => internal(&e),
    }
}

/// Disable and regenerate answer a wrong code 422; the login step (`verify`) answers it 401.
fn check_error(e: CheckError, login: bool) -> Response {
    match e {
        CheckError::TotpNotEnabled => error(StatusCode::BAD_REQUEST, NOT_ENABLED),
        CheckError::InvalidCode { .. } | CheckError::CodeAlreadyUsed { .. } if login => {
            error(StatusCode::UNAUTHORIZED, INVALID_CODE)
        }
        CheckError::InvalidCode { .. } | CheckError::CodeAlreadyUsed { .. } => {
            error(StatusCode::UNPROCESSABLE_ENTITY, INVALID_CODE_RETRY)
        }
        CheckError::TooManyAttempts { retry_after_seconds } => too_many_attempts(retry_after_seconds),
        CheckError::Internal(e) => internal(&e),
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

#[utoipa::path(post, path = "/api/v1/me/mfa/totp/setup", tag = "Storno",
    summary = "Setup TOTP: a new pending secret with its QR code",
    description = "Replaces any pending secret (the old QR code stops working). Refused while TOTP is enabled.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new pending secret", body = SetupResponse),
        (status = 401, description = "Missing, invalid or expired token", body = JwtErrorBody),
        (status = 409, description = "`TOTP is already enabled.`", body = ErrorBody, example = json!({"error": "TOTP is already enabled."})),
    ))]
pub(crate) async fn setup(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Storno>,
) -> Response {
    match state.service.begin_enrolment(&viewer, true, &cid.0).await {
        Ok(e) => Json(json!({ "secret": e.secret, "qrCode": e.qr_code, "otpauthUri": e.otpauth_uri })).into_response(),
        Err(e) => enrol_error(e),
    }
}

#[utoipa::path(post, path = "/api/v1/me/mfa/totp/enable", tag = "Storno",
    summary = "Enable TOTP with a code of the pending secret",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Enabled; the recovery codes are shown once", body = EnableResponse),
        (status = 400, description = "`Missing code.` or `Invalid JSON body.`", body = ErrorBody, example = json!({"error": "Missing code."})),
        (status = 401, description = "Missing, invalid or expired token", body = JwtErrorBody),
        (status = 409, description = "`TOTP is already enabled.`", body = ErrorBody, example = json!({"error": "TOTP is already enabled."})),
        (status = 422, description = "Wrong code, or no pending setup", body = ErrorBody, example = json!({"error": "Invalid code. Please try again."})),
        (status = 429, description = "Locked out after repeated failures", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds until codes are checked again")), example = json!({"error": "Too many attempts. Try again in 300 seconds."})),
    ))]
pub(crate) async fn enable(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Storno>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (code, _) = match code_from_body(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state.service.enable(&viewer, &code, &cid.0).await {
        Ok(e) => Json(EnableResponse { enabled: true, backup_codes: e.recovery_codes }).into_response(),
        Err(e) => enable_error(e),
    }
}

#[utoipa::path(post, path = "/api/v1/me/mfa/totp/disable", tag = "Storno",
    summary = "Disable TOTP with a current TOTP code or an unused recovery code",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Disabled; secret and recovery codes deleted", body = DisableResponse),
        (status = 400, description = "`Missing code.`, `MFA is not enabled.` or `Invalid JSON body.`", body = ErrorBody, example = json!({"error": "MFA is not enabled."})),
        (status = 401, description = "Missing, invalid or expired token", body = JwtErrorBody),
        (status = 422, description = "Wrong or replayed code", body = ErrorBody, example = json!({"error": "Invalid code. Please try again."})),
        (status = 429, description = "Locked out after repeated failures", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds until codes are checked again"))),
    ))]
pub(crate) async fn disable(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Storno>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (code, _) = match code_from_body(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state.service.disable(&viewer, &code, &cid.0).await {
        Ok(_) => Json(DisableResponse { disabled: true }).into_response(),
        Err(e) => check_error(e, false),
    }
}

#[utoipa::path(post, path = "/api/v1/me/mfa/backup-codes/regenerate", tag = "Storno",
    summary = "Replace the recovery codes (needs a current TOTP code)",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "The new set, shown once; the old set no longer works", body = BackupCodesResponse),
        (status = 400, description = "`Missing code.`, `MFA is not enabled.` or `Invalid JSON body.`", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = JwtErrorBody),
        (status = 422, description = "Wrong or replayed code", body = ErrorBody, example = json!({"error": "Invalid code. Please try again."})),
        (status = 429, description = "Locked out after repeated failures", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds until codes are checked again"))),
    ))]
pub(crate) async fn regenerate(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Storno>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (code, _) = match code_from_body(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state.service.regenerate_recovery_codes(&viewer, &code, &cid.0).await {
        Ok(codes) => Json(BackupCodesResponse { backup_codes: codes }).into_response(),
        Err(e) => check_error(e, false),
    }
}

#[utoipa::path(get, path = "/api/v1/me/mfa/status", tag = "Storno",
    summary = "Two-factor status",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's status", body = StatusResponse),
        (status = 401, description = "Missing, invalid or expired token", body = JwtErrorBody),
    ))]
pub(crate) async fn status(State(state): State<AppState>, Caller(viewer, _): Caller<Storno>) -> Response {
    match state.service.status(&viewer.user_id).await {
        Ok(s) => Json(StatusResponse {
            totp_enabled: s.enabled,
            backup_codes_remaining: s.recovery_codes_remaining,
            passkeys_count: 0,
        })
        .into_response(),
        Err(e) => internal(&e),
    }
}

#[utoipa::path(post, path = "/api/v1/me/mfa/verify", tag = "Storno",
    summary = "Verify a TOTP code (each time step once) or a recovery code (`type: backup`)",
    security(("bearer" = [])),
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Verified", body = VerifyResponse),
        (status = 400, description = "`Missing code.`, `MFA is not enabled.` or `Invalid JSON body.`", body = ErrorBody),
        (status = 401, description = "Wrong or replayed code (`{\"error\":\"Invalid code.\"}`), or a missing/invalid/expired token (`{\"code\":401,\"message\":…}`)", body = ErrorBody, example = json!({"error": "Invalid code."})),
        (status = 429, description = "Locked out after repeated failures", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds until codes are checked again")), example = json!({"error": "Too many attempts. Try again in 300 seconds."})),
    ))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Storno>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (code, json) = match code_from_body(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let backup = match json.get("type") {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) if t == "totp" => false,
        Some(Value::String(t)) if t == "backup" => true,
        Some(_) => return error(StatusCode::BAD_REQUEST, INVALID_JSON),
    };
    let result = if backup {
        state.service.use_recovery_code(&viewer, &code, &cid.0).await
    } else {
        state.service.verify(&viewer, &code, &cid.0).await
    };
    match result {
        Ok(_) => Json(VerifyResponse { verified: true }).into_response(),
        Err(e) => check_error(e, true),
    }
}
