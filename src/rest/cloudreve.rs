//! Cloudreve v4 dialect: HTTP 200 always, the outcome in the envelope's `code`.
//!
//! * `GET /user/setting/2fa`, `GET /api/v4/user/setting/2fa` → `{"code":0,"data":"<SECRET>","msg":""}`
//! * `PATCH /user/setting`, `PATCH /api/v4/user/setting` with `two_fa_enabled` / `two_fa_code`
//!   → `{"code":0,"msg":""}`
//! * errors → `{"code":N,"msg":"…","correlation_id":"…"}` (+ `error` when `TWOFOLD_DEBUG=true`)

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{JsonBodyError, from_object, read_json};
use crate::auth::AuthError;
use crate::service::{CheckError, EnableError, EnrolError, Internal};
use crate::web::{AppState, AuthRejection, Caller, CorrelationId};

pub const LOGIN_REQUIRED: (i32, &str) = (401, "Login required");
pub const INVALID_TOKEN_TYPE: (i32, &str) = (40020, "Invalid token type");
pub const ALREADY_ENABLED: (i32, &str) = (409, "Two-factor authentication is already enabled");
pub const INCORRECT_CODE: (i32, &str) = (40022, "Incorrect 2FA code");
pub const NO_SESSION: (i32, &str) = (50005, "You have not initiated 2FA session");
pub const PARAMETER_ERROR: (i32, &str) = (40001, "Parameter error");
pub const TOO_MANY_ATTEMPTS: i32 = 429;
pub const DATABASE_ERROR: (i32, &str) = (50001, "Database error");
pub const INTERNAL_ERROR: (i32, &str) = (50000, "Internal error");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user/setting/2fa", get(prepare))
        .route("/api/v4/user/setting/2fa", get(prepare))
        .route("/user/setting", patch(update_settings))
        .route("/api/v4/user/setting", patch(update_settings))
}

/// Cloudreve's response envelope (always HTTP 200). Absent keys are omitted, never `null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope {
    /// 0 on success; otherwise 401 `Login required`, 40020 `Invalid token type`, 409 `Two-factor
    /// authentication is already enabled`, 40022 `Incorrect 2FA code`, 50005 `You have not
    /// initiated 2FA session`, 40001 `Parameter error`, 429 `Too many attempts, retry in N seconds`,
    /// 50001 `Database error`.
    #[schema(example = 0)]
    pub code: i32,
    /// The Base32 secret (prepare only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub data: Option<String>,
    /// Empty on success; the error message otherwise.
    pub msg: String,
    /// Internal detail, only when `TWOFOLD_DEBUG=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On errors: the request's correlation id (the client's `X-Cr-Correlation-Id` if sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// The 2FA fields of Cloudreve's settings PATCH (other settings may be present and are ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SettingsPatch {
    /// `true` enables, `false` disables two-factor; absent: nothing changes.
    pub two_fa_enabled: Option<bool>,
    /// A current TOTP code (for disable also an unused recovery code); required with `two_fa_enabled`.
    // Any non-string counts as absent: without `two_fa_enabled` it is ignored like other settings,
    // with it the change is refused (`Parameter error`) as a missing code is.
    #[serde(default, deserialize_with = "string_or_none")]
    #[schema(example = "123456")]
    pub two_fa_code: Option<String>,
}

/// A string, or `None` for any other JSON value.
fn string_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

fn success(data: Option<String>) -> Response {
    Json(Envelope { code: 0, data, msg: String::new(), error: None, correlation_id: None }).into_response()
}

struct Failure {
    code: i32,
    msg: String,
    detail: Option<String>,
}

impl Failure {
    fn new((code, msg): (i32, &str)) -> Self {
        Failure { code, msg: msg.to_owned(), detail: None }
    }

    fn respond(self, state: &AppState, cid: &CorrelationId) -> Response {
        Json(Envelope {
            code: self.code,
            data: None,
            msg: self.msg,
            error: if state.options.debug { self.detail } else { None },
            correlation_id: Some(cid.0.clone()),
        })
        .into_response()
    }
}

/// Cloudreve answers an unauthenticated request in its envelope, HTTP 200.
pub struct Cloudreve;

impl AuthRejection for Cloudreve {
    fn reject(e: AuthError, parts: &axum::http::request::Parts, state: &AppState) -> Response {
        let failure = match e {
            AuthError::WrongTokenType => Failure::new(INVALID_TOKEN_TYPE),
            AuthError::Missing | AuthError::Invalid | AuthError::Expired => Failure::new(LOGIN_REQUIRED),
        };
        let cid = parts
            .extensions
            .get::<CorrelationId>()
            .cloned()
            .unwrap_or_else(|| CorrelationId(uuid::Uuid::new_v4().to_string()));
        failure.respond(state, &cid)
    }
}

fn too_many_attempts(retry_after_seconds: u64) -> Failure {
    Failure {
        code: TOO_MANY_ATTEMPTS,
        msg: format!("Too many attempts, retry in {retry_after_seconds} seconds"),
        detail: None,
    }
}

/// An unexpected failure: logged once here, `50001 Database error` when the database is the
/// cause, else the internal error; the detail only with `TWOFOLD_DEBUG`.
fn internal(error: &Internal) -> Failure {
    tracing::error!(%error, "internal error");
    let code = if error.is_database() { DATABASE_ERROR } else { INTERNAL_ERROR };
    Failure { detail: Some(error.to_string()), ..Failure::new(code) }
}

/// The Cloudreve answer to each failure of each operation (one exhaustive `match` per family).
impl From<EnrolError> for Failure {
    fn from(e: EnrolError) -> Self {
        match e {
            EnrolError::TotpAlreadyEnabled => Failure::new(ALREADY_ENABLED),
            EnrolError::Internal(e) => internal(&e),
        }
    }
}

impl From<EnableError> for Failure {
    fn from(e: EnableError) -> Self {
        match e {
            EnableError::TotpAlreadyEnabled => Failure::new(ALREADY_ENABLED),
            EnableError::NoPendingSetup => Failure::new(NO_SESSION),
            EnableError::InvalidCode { .. } => Failure::new(INCORRECT_CODE),
            EnableError::TooManyAttempts { retry_after_seconds } => too_many_attempts(retry_after_seconds),
            EnableError::Internal(e) => internal(&e),
        }
    }
}

impl From<CheckError> for Failure {
    fn from(e: CheckError) -> Self {
        match e {
            // Cloudreve answers a disable while 2FA is off like a wrong code.
            CheckError::TotpNotEnabled | CheckError::InvalidCode { .. } | CheckError::CodeAlreadyUsed { .. } => {
                Failure::new(INCORRECT_CODE)
            }
            CheckError::TooManyAttempts { retry_after_seconds } => too_many_attempts(retry_after_seconds),
            CheckError::Internal(e) => internal(&e),
        }
    }
}

/// "Prepare enabling 2FA": a new pending secret, returned as `data`.
#[utoipa::path(get, path = "/user/setting/2fa", tag = "Cloudreve",
    summary = "Prepare enabling 2FA (also at /api/v4/user/setting/2fa)",
    description = "Starts (or restarts) enrolment and returns the Base32 secret as `data`. HTTP status is always 200; the outcome is `code`.",
    security(("bearer" = [])),
    params(("X-Cr-Correlation-Id" = Option<String>, Header, description = "Echoed as `correlation_id` on errors")),
    responses((status = 200, description = "Envelope: success `{\"code\":0,\"data\":\"<SECRET>\",\"msg\":\"\"}`; errors 401, 40020, 409, 50001", body = Envelope,
        examples(
            ("success" = (value = json!({"code": 0, "data": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "msg": ""}))),
            ("already enabled" = (value = json!({"code": 409, "msg": "Two-factor authentication is already enabled", "correlation_id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"}))),
            ("not logged in" = (value = json!({"code": 401, "msg": "Login required", "correlation_id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"}))),
        ))))]
pub(crate) async fn prepare(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Cloudreve>,
) -> Response {
    match state.service.begin_enrolment(&viewer, false, &cid.0).await {
        Ok(enrolment) => success(Some(enrolment.secret)),
        Err(e) => Failure::from(e).respond(&state, &cid),
    }
}

/// The parts of Cloudreve's settings PATCH that Twofold handles.
enum SettingsChange {
    /// Neither 2FA field: other settings, nothing for Twofold to do.
    Nothing,
    Enable(String),
    Disable(String),
}

/// The change a [`SettingsPatch`] body asks for; `None` (`Parameter error`) for a body that is not
/// an object, a `two_fa_enabled` that is not a boolean (null is absent), or `two_fa_enabled`
/// without a string `two_fa_code`.
fn parse_settings_change(body: &Value) -> Option<SettingsChange> {
    let SettingsPatch { two_fa_enabled, two_fa_code } = from_object(body)?;
    let Some(enabled) = two_fa_enabled else {
        return Some(SettingsChange::Nothing);
    };
    let code = two_fa_code?;
    Some(if enabled { SettingsChange::Enable(code) } else { SettingsChange::Disable(code) })
}

/// Enables (`two_fa_enabled: true`) or disables (`false`) 2FA with `two_fa_code`.
#[utoipa::path(patch, path = "/user/setting", tag = "Cloudreve",
    summary = "Enable or disable 2FA (also at /api/v4/user/setting)",
    description = "`two_fa_enabled: true` enables with a code of the pending secret; `false` disables with a current code or a recovery code; neither field: nothing changes. HTTP status is always 200; the outcome is `code`.",
    security(("bearer" = [])),
    params(("X-Cr-Correlation-Id" = Option<String>, Header, description = "Echoed as `correlation_id` on errors")),
    request_body = SettingsPatch,
    responses((status = 200, description = "Envelope: success `{\"code\":0,\"msg\":\"\"}`; errors 401, 40020, 409, 40022, 50005, 40001, 429, 50001", body = Envelope,
        examples(
            ("success" = (value = json!({"code": 0, "msg": ""}))),
            ("wrong code" = (value = json!({"code": 40022, "msg": "Incorrect 2FA code", "correlation_id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"}))),
            ("no pending setup" = (value = json!({"code": 50005, "msg": "You have not initiated 2FA session", "correlation_id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"}))),
            ("malformed body" = (value = json!({"code": 40001, "msg": "Parameter error", "correlation_id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"}))),
            ("locked out" = (value = json!({"code": 429, "msg": "Too many attempts, retry in 300 seconds", "correlation_id": "1b4e28ba-2fa1-4d2b-883f-0016d3cca427"}))),
        ))))]
pub(crate) async fn update_settings(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    Caller(viewer, _): Caller<Cloudreve>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let change = match read_json(&headers, body).await {
        Ok(json) => parse_settings_change(&json),
        Err(JsonBodyError::TooLarge | JsonBodyError::Malformed) => None,
    };
    let result = match change {
        None => return Failure::new(PARAMETER_ERROR).respond(&state, &cid),
        Some(SettingsChange::Nothing) => Ok(()),
        Some(SettingsChange::Enable(code)) => {
            state.service.enable(&viewer, &code, &cid.0).await.map(drop).map_err(Failure::from)
        }
        Some(SettingsChange::Disable(code)) => {
            state.service.disable(&viewer, &code, &cid.0).await.map(drop).map_err(Failure::from)
        }
    };
    match result {
        Ok(()) => success(None),
        Err(failure) => failure.respond(&state, &cid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(body: Value) -> String {
        match parse_settings_change(&body) {
            None => "parameter error".to_owned(),
            Some(SettingsChange::Nothing) => "nothing".to_owned(),
            Some(SettingsChange::Enable(code)) => format!("enable {code}"),
            Some(SettingsChange::Disable(code)) => format!("disable {code}"),
        }
    }

    /// The body rules of SPEC §4, edge cases included (they used to be hand-written on a `Value`).
    #[test]
    fn settings_patch_bodies() {
        assert_eq!(change(json!({"two_fa_enabled": true, "two_fa_code": "1", "nick": "x"})), "enable 1");
        assert_eq!(change(json!({"two_fa_enabled": false, "two_fa_code": ""})), "disable ");
        // No `two_fa_enabled` (or null): nothing to do, whatever `two_fa_code` holds.
        for code in [json!(null), json!("1"), json!(1), json!({})] {
            assert_eq!(change(json!({"two_fa_code": code})), "nothing");
            assert_eq!(change(json!({"two_fa_enabled": null, "two_fa_code": code})), "nothing");
        }
        assert_eq!(change(json!({})), "nothing");
        for refused in [
            json!([true, "1"]),
            json!("x"),
            json!(null),
            json!({"two_fa_enabled": "true", "two_fa_code": "1"}),
            json!({"two_fa_enabled": 1, "two_fa_code": "1"}),
            json!({"two_fa_enabled": true}),
            json!({"two_fa_enabled": true, "two_fa_code": null}),
            json!({"two_fa_enabled": false, "two_fa_code": 123456}),
        ] {
            assert_eq!(change(refused), "parameter error");
        }
    }
}
