//! Storno dialect: real HTTP statuses, errors as `{"error":"…"}`, authentication failures in
//! Storno's JWT-layer shape `{"code":401,"message":"…"}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{JsonBodyError, from_object, read_json};
use crate::assertion::Nonce;
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
pub const INVALID_NONCE: &str = "Invalid nonce.";

/// `POST /api/v1/me/mfa/totp/setup` → 200.
// Fields in alphabetical order: the body's keys have always been sent in that order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetupResponse {
    #[schema(
        example = "otpauth://totp/Twofold:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold&algorithm=SHA1&digits=6&period=30"
    )]
    pub otpauth_uri: String,
    /// `data:image/png;base64,…` 300×300 greyscale PNG QR code of `otpauthUri`.
    #[schema(example = "data:image/png;base64,iVBORw0KGgo…")]
    pub qr_code: String,
    /// Base32 secret for manual entry.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
}

/// `{code}`: a TOTP code (or, for disable, a recovery code).
// Other fields are ignored; a `code` of another JSON type is `Invalid JSON body.`
#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeRequest {
    // Absent, null or blank is answered `Missing code.` (see `required_code`), so the document
    // shows the required string it has to be.
    #[schema(value_type = String, example = "123456")]
    pub code: Option<String>,
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
    // As in `CodeRequest`.
    #[schema(value_type = String, example = "123456")]
    pub code: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "variant_name")]
    pub kind: Option<CodeType>,
    /// Echoed in the assertion's `nonce` claim: 1–255 characters of visible ASCII (`!` to `~`).
    #[schema(example = "login-7f3a9c")]
    pub nonce: Option<String>,
}

/// An optional enum field given as the name of a unit variant (or null). Serde's own enum
/// representation would also take the map form `{"totp": null}`, which is not a `type`.
fn variant_name<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(name) => T::deserialize(name.into_deserializer()).map(Some),
    }
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
    /// The signed assertion of this verification (SPEC §7): a compact JWS to check against
    /// `/.well-known/jwks.json`.
    pub assertion: String,
}

/// Every Storno error but authentication: `{"error": "…"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "Invalid code. Please try again.")]
    pub error: String,
}

/// The verify route's 401: a wrong or replayed code (`{"error":"Invalid code."}`) or an
/// authentication failure in the JWT layer's shape (`{"code":401,"message":…}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum VerifyUnauthorizedBody {
    Code(ErrorBody),
    Token(JwtErrorBody),
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
        let body = JwtErrorBody { code: StatusCode::UNAUTHORIZED.as_u16(), message: message.to_owned() };
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
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

/// `T` from a JSON body; one that is not an object, or not of `T`'s shape, is `Invalid JSON body.`
fn parse_body<'a, T: Deserialize<'a>>(json: &'a Value) -> Result<T, &'static str> {
    from_object(json).ok_or(INVALID_JSON)
}

/// The `code` of a request: absent, null or blank is `Missing code.`
fn required_code(code: Option<String>) -> Result<String, &'static str> {
    code.filter(|code| !code.trim().is_empty()).ok_or(MISSING_CODE)
}

/// The code of a [`CodeRequest`] body, or the message of the 400 answer.
fn code_request(json: &Value) -> Result<String, &'static str> {
    let CodeRequest { code } = parse_body(json)?;
    required_code(code)
}

/// The code and its kind from a [`VerifyRequest`] body, or the message of the 400 answer.
fn verify_request(json: &Value) -> Result<(String, CodeType, Option<Nonce>), &'static str> {
    match parse_body::<VerifyRequest>(json) {
        Ok(VerifyRequest { code, kind, nonce }) => {
            let code = required_code(code)?;
            let nonce = match nonce {
                None => None,
                Some(text) => Some(Nonce::parse(&text).ok_or(INVALID_NONCE)?),
            };
            Ok((code, kind.unwrap_or(CodeType::Totp), nonce))
        }
        // `code` is checked before `type`: a body without a usable code is `Missing code.`
        // whatever its `type` holds.
        Err(invalid) => {
            code_request(json)?;
            Err(invalid)
        }
    }
}

/// Reads a request body and parses it with `parse`, or answers 400 (413 when too large).
async fn request_body<T>(
    headers: &HeaderMap,
    body: Body,
    parse: impl FnOnce(&Value) -> Result<T, &'static str>,
) -> Result<T, Response> {
    let json = read_json(headers, body).await.map_err(body_error)?;
    parse(&json).map_err(|message| error(StatusCode::BAD_REQUEST, message))
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
        Ok(e) => {
            // Always `Some`: the QR code is asked for above.
            let qr_code = e.qr_code.unwrap_or_default();
            Json(SetupResponse { otpauth_uri: e.otpauth_uri, qr_code, secret: e.secret }).into_response()
        }
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
    let code = match request_body(&headers, body, code_request).await {
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
    let code = match request_body(&headers, body, code_request).await {
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
    let code = match request_body(&headers, body, code_request).await {
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
        (status = 200, description = "Verified, with the signed assertion of SPEC §7", body = VerifyResponse),
        (status = 400, description = "`Missing code.`, `MFA is not enabled.`, `Invalid nonce.` or `Invalid JSON body.`", body = ErrorBody),
        (status = 401, description = "Wrong or replayed code (`{\"error\":\"Invalid code.\"}`), or a missing/invalid/expired token (`{\"code\":401,\"message\":…}`)", body = VerifyUnauthorizedBody, example = json!({"error": "Invalid code."})),
        (status = 429, description = "Locked out after repeated failures", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds until codes are checked again")), example = json!({"error": "Too many attempts. Try again in 300 seconds."})),
    ))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Storno>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (code, kind, nonce) = match request_body(&headers, body, verify_request).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = match kind {
        CodeType::Backup => state.service.use_recovery_code(&viewer, &code, nonce.as_ref(), &cid.0).await,
        CodeType::Totp => state.service.verify(&viewer, &code, nonce.as_ref(), &cid.0).await,
    };
    match result {
        Ok(v) => Json(VerifyResponse { verified: true, assertion: v.assertion }).into_response(),
        Err(e) => check_error(e, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The body rules of SPEC §5, edge cases included (they used to be hand-written on a `Value`).
    #[test]
    fn request_bodies() {
        let code = |body: Value| code_request(&body);
        let verify =
            |body: Value| verify_request(&body).map(|(code, kind, _)| (code, matches!(kind, CodeType::Backup)));
        assert_eq!(code(json!({"code": "123456", "other": [1]})), Ok("123456".to_owned()));
        assert_eq!(code(json!({"code": " 12 "})), Ok(" 12 ".to_owned()));
        for missing in [json!({}), json!({"code": null}), json!({"code": ""}), json!({"code": " \t\u{a0}"})] {
            assert_eq!(code(missing), Err(MISSING_CODE));
        }
        for invalid in [json!(["123456"]), json!("123456"), json!(null), json!({"code": 123456}), json!({"code": {}})] {
            assert_eq!(code(invalid), Err(INVALID_JSON));
        }
        assert_eq!(verify(json!({"code": "1"})), Ok(("1".to_owned(), false)));
        assert_eq!(verify(json!({"code": "1", "type": null})), Ok(("1".to_owned(), false)));
        assert_eq!(verify(json!({"code": "1", "type": "totp"})), Ok(("1".to_owned(), false)));
        assert_eq!(verify(json!({"code": "1", "type": "backup"})), Ok(("1".to_owned(), true)));
        for invalid in [json!("Backup"), json!(""), json!(1), json!({"backup": null}), json!(["backup"])] {
            assert_eq!(verify(json!({"code": "1", "type": invalid})), Err(INVALID_JSON));
            // The code is checked first.
            assert_eq!(verify(json!({"code": " ", "type": invalid})), Err(MISSING_CODE));
            assert_eq!(verify(json!({"code": 1, "type": invalid})), Err(INVALID_JSON));
        }
        assert_eq!(verify(json!(["1", "backup"])), Err(INVALID_JSON));
    }
}
