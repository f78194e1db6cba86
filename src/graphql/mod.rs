//! The GraphQL API: schema, resolvers and the mapping of domain results to result unions.
//!
//! The schema is built without a database (so `twofold schema` and the SDL test need none);
//! each request carries its service handle, caller and correlation id as [`RequestData`].

mod types;

use async_graphql::{Context, EmptySubscription, ErrorExtensions, Object, SDLExportOptions, Schema};

use crate::assertion::{NONCE_RULE, Nonce};
use crate::auth::{AuthError, Viewer};
use crate::service::{AdminError, Internal, TwoFactor};
pub use types::*;

/// Query depth limit (the standard introspection queries fit).
pub const MAX_DEPTH: usize = 20;
/// Query complexity limit.
pub const MAX_COMPLEXITY: usize = 1_000;
/// Operations allowed in one batch.
pub const MAX_BATCH: usize = 10;

pub type TwofoldSchema = Schema<Query, Mutation, EmptySubscription>;

/// Per-request context handed to resolvers.
pub struct RequestData {
    pub service: TwoFactor,
    pub viewer: Result<Viewer, AuthError>,
    pub correlation_id: String,
}

/// Builds the schema with its limits. Needs no database.
pub fn build_schema() -> TwofoldSchema {
    Schema::build(Query, Mutation::default(), EmptySubscription)
        .register_output_type::<UserError>()
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(64)
        .limit_directives(50)
        .finish()
}

/// The SDL exported to `schema.graphql`.
pub fn sdl() -> String {
    build_schema().sdl_with_options(
        SDLExportOptions::new().sorted_fields().sorted_arguments().sorted_enum_items().include_specified_by(),
    )
}

/// A top-level `UNAUTHENTICATED` error (Apollo's convention).
pub fn unauthenticated() -> async_graphql::Error {
    async_graphql::Error::new("Authentication required: send a valid `Authorization: Bearer <token>` header.")
        .extend_with(|_, ext| ext.set("code", "UNAUTHENTICATED"))
}

/// A top-level `INTERNAL_SERVER_ERROR` with the correlation id and no internal detail; the
/// detail is logged here, once.
pub fn internal_error(correlation_id: &str, error: &Internal) -> async_graphql::Error {
    tracing::error!(%error, "internal error in GraphQL resolver");
    let cid = correlation_id.to_owned();
    async_graphql::Error::new("Internal server error").extend_with(move |_, ext| {
        ext.set("code", "INTERNAL_SERVER_ERROR");
        ext.set("correlationId", cid.clone());
    })
}

/// A top-level `BAD_USER_INPUT` error.
fn bad_input(message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", "BAD_USER_INPUT"))
}

/// The caller, who must be an admin (SPEC §8): without a valid token `UNAUTHENTICATED`, with a
/// token lacking the `twofold:admin` scope `FORBIDDEN`.
fn admin<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<(&'a RequestData, &'a Viewer)> {
    let (data, viewer) = caller(ctx)?;
    if !viewer.admin {
        return Err(async_graphql::Error::new(format!(
            "Forbidden: this field needs a token with the `{}` scope.",
            crate::auth::ADMIN_SCOPE
        ))
        .extend_with(|_, ext| ext.set("code", "FORBIDDEN")));
    }
    Ok((data, viewer))
}

/// A user id argument: 1–255 bytes, as a token's `sub`.
fn user_id_arg(user_id: &str) -> async_graphql::Result<&str> {
    if !crate::auth::is_user_id(user_id) {
        return Err(bad_input("userId must be 1–255 bytes (a `sub` of the host application)."));
    }
    Ok(user_id)
}

/// Cursors are opaque: the user id, base64url-encoded behind a version tag.
fn cursor_of(user_id: &str) -> String {
    format!("c1.{}", data_encoding::BASE64URL_NOPAD.encode(user_id.as_bytes()))
}

fn user_of_cursor(cursor: &str) -> async_graphql::Result<String> {
    cursor
        .strip_prefix("c1.")
        .and_then(|b64| data_encoding::BASE64URL_NOPAD.decode(b64.as_bytes()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad_input("`after` is not a cursor of this list."))
}

fn caller<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<(&'a RequestData, &'a Viewer)> {
    let data = ctx.data::<RequestData>()?;
    match &data.viewer {
        Ok(viewer) => Ok((data, viewer)),
        Err(_) => Err(unauthenticated()),
    }
}

pub struct Query;

/// Reads. `twoFactor` needs a bearer token, the `admin…` fields one with the `twofold:admin`
/// scope; introspection and `__typename` work without one.
#[Object]
impl Query {
    /// Any user's two-factor status (admins only; a user never enrolled reads as state `NONE`).
    async fn admin_two_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (their token's `sub`).")] user_id: String,
    ) -> async_graphql::Result<TwoFactorStatus> {
        let (data, _) = admin(ctx)?;
        data.service
            .status(user_id_arg(&user_id)?)
            .await
            .map(TwoFactorStatus)
            .map_err(|e| internal_error(&data.correlation_id, &e))
    }

    /// The users who have a credential (pending, enabled or locked), in a stable order, a page
    /// at a time (admins only). Pages stay correct while users are added or removed between
    /// calls.
    async fn admin_two_factors(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size (clamped to 1–100).")] first: i64,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only users in this state (`NONE` matches nobody).")] state: Option<TwoFactorState>,
    ) -> async_graphql::Result<TwoFactorStatusConnection> {
        use crate::service::StateFilter;
        let (data, _) = admin(ctx)?;
        let after = after.as_deref().map(user_of_cursor).transpose()?;
        let filter = match state {
            None => Some(StateFilter::All),
            Some(TwoFactorState::None) => None,
            Some(TwoFactorState::Pending) => Some(StateFilter::Pending),
            Some(TwoFactorState::Enabled) => Some(StateFilter::Enabled),
            Some(TwoFactorState::Locked) => Some(StateFilter::Locked),
        };
        let internal = |e| internal_error(&data.correlation_id, &e);
        let Some(filter) = filter else {
            let page_info = PageInfo { has_next_page: false, end_cursor: None };
            return Ok(TwoFactorStatusConnection { edges: Vec::new(), page_info, total_count: 0 });
        };
        let (page, has_next_page) = data.service.admin_list(first, after.as_deref(), filter).await.map_err(internal)?;
        // Counting reads the whole state index: only when asked for.
        let total = match ctx.look_ahead().field("totalCount").exists() {
            true => data.service.admin_count(filter).await.map_err(internal)?,
            false => 0,
        };
        let edges: Vec<TwoFactorStatusEdge> = page
            .into_iter()
            .map(|status| TwoFactorStatusEdge { cursor: cursor_of(&status.user_id), node: TwoFactorStatus(status) })
            .collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(TwoFactorStatusConnection {
            edges,
            page_info: PageInfo { has_next_page, end_cursor },
            total_count: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    /// The caller's two-factor status (needs a bearer token).
    async fn two_factor(&self, ctx: &Context<'_>) -> async_graphql::Result<TwoFactorStatus> {
        let (data, viewer) = caller(ctx)?;
        data.service
            .status(&viewer.user_id)
            .await
            .map(TwoFactorStatus)
            .map_err(|e| internal_error(&data.correlation_id, &e))
    }
}

/// The root mutation type: the user's lifecycle and the admin actions.
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(UserMutation, AdminMutation);

#[derive(Default)]
pub struct UserMutation;

#[derive(Default)]
pub struct AdminMutation;

/// The two-factor lifecycle (SPEC §2): begin enrolment, enable, verify at login, use a recovery
/// code, regenerate recovery codes, disable. Every field needs a bearer token; expected failures
/// are members of each field's result union, and a request runs at most 10 mutation fields.
#[Object]
impl UserMutation {
    /// Starts (or restarts) enrolment and returns only the secret (Cloudreve's "prepare").
    /// Replaces any pending secret; fails with `TotpAlreadyEnabled` while two-factor is enabled.
    async fn prepare_two_factor(&self, ctx: &Context<'_>) -> async_graphql::Result<PrepareTwoFactorResult> {
        let (data, viewer) = caller(ctx)?;
        match data.service.begin_enrolment(viewer, false, &data.correlation_id).await {
            Ok(e) => Ok(PrepareTwoFactorResult::TwoFactorSecret(TwoFactorSecret {
                secret: e.secret,
                expires_at: DateTime(e.expires_at),
            })),
            Err(e) => PrepareTwoFactorResult::from_error(e, &data.correlation_id),
        }
    }

    /// Starts (or restarts) enrolment: a new pending secret with its otpauth URI and QR code.
    /// Replaces any pending secret; fails with `TotpAlreadyEnabled` while two-factor is enabled.
    async fn setup_totp(&self, ctx: &Context<'_>) -> async_graphql::Result<SetupTotpResult> {
        let (data, viewer) = caller(ctx)?;
        match data.service.begin_enrolment(viewer, true, &data.correlation_id).await {
            Ok(e) => Ok(SetupTotpResult::TotpSetup(TotpSetup {
                secret: e.secret,
                qr_code: e.qr_code.unwrap_or_default(),
                otpauth_uri: e.otpauth_uri,
                expires_at: DateTime(e.expires_at),
            })),
            Err(e) => SetupTotpResult::from_error(e, &data.correlation_id),
        }
    }

    /// Enables two-factor with a code from the pending secret. Returns 10 recovery codes, once.
    async fn enable_totp(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A current code from the authenticator app.")] code: String,
    ) -> async_graphql::Result<EnableTotpResult> {
        let (data, viewer) = caller(ctx)?;
        match data.service.enable(viewer, &code, &data.correlation_id).await {
            Ok(e) => Ok(EnableTotpResult::TotpEnabled(TotpEnabled {
                recovery_codes: e.recovery_codes,
                enabled_at: DateTime(e.enabled_at),
                user_id: viewer.user_id.clone(),
            })),
            Err(e) => EnableTotpResult::from_error(e, &data.correlation_id),
        }
    }

    /// Verifies a TOTP code (the login step). Each code's time step is accepted once. A success
    /// carries a signed `assertion` for the host application's backend.
    async fn verify_totp(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A current code from the authenticator app.")] code: String,
        #[graphql(desc = "Echoed in the assertion's `nonce` claim (1–255 characters of visible ASCII), so the \
                          backend can tie the assertion to the login it started.")]
        nonce: Option<String>,
    ) -> async_graphql::Result<VerifyTotpResult> {
        let (data, viewer) = caller(ctx)?;
        let nonce = parse_nonce(nonce.as_deref())?;
        match data.service.verify(viewer, &code, nonce.as_ref(), &data.correlation_id).await {
            Ok(v) => Ok(VerifyTotpResult::TotpVerified(verified(v, viewer))),
            Err(e) => VerifyTotpResult::from_error(e, &data.correlation_id),
        }
    }

    /// Verifies with a single-use recovery code instead of a TOTP code (with an `assertion`, as
    /// `verifyTotp`).
    async fn use_recovery_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "One unused recovery code, in any case, with or without dashes.")] code: String,
        #[graphql(desc = "Echoed in the assertion's `nonce` claim (1–255 characters of visible ASCII).")] nonce: Option<
            String,
        >,
    ) -> async_graphql::Result<VerifyTotpResult> {
        let (data, viewer) = caller(ctx)?;
        let nonce = parse_nonce(nonce.as_deref())?;
        match data.service.use_recovery_code(viewer, &code, nonce.as_ref(), &data.correlation_id).await {
            Ok(v) => Ok(VerifyTotpResult::TotpVerified(verified(v, viewer))),
            Err(e) => VerifyTotpResult::from_error(e, &data.correlation_id),
        }
    }

    /// Disables two-factor with a current TOTP code or an unused recovery code; deletes the
    /// secret and all recovery codes.
    async fn disable_totp(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A current TOTP code or an unused recovery code.")] code: String,
    ) -> async_graphql::Result<DisableTotpResult> {
        let (data, viewer) = caller(ctx)?;
        match data.service.disable(viewer, &code, &data.correlation_id).await {
            Ok(at) => Ok(DisableTotpResult::TotpDisabled(TotpDisabled {
                disabled_at: DateTime(at),
                user_id: viewer.user_id.clone(),
            })),
            Err(e) => DisableTotpResult::from_error(e, &data.correlation_id),
        }
    }

    /// Replaces the recovery codes with a new set of 10; needs a current TOTP code.
    async fn regenerate_recovery_codes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A current code from the authenticator app.")] code: String,
    ) -> async_graphql::Result<RegenerateRecoveryCodesResult> {
        let (data, viewer) = caller(ctx)?;
        match data.service.regenerate_recovery_codes(viewer, &code, &data.correlation_id).await {
            Ok(codes) => Ok(RegenerateRecoveryCodesResult::RecoveryCodes(RecoveryCodes { recovery_codes: codes })),
            Err(e) => RegenerateRecoveryCodesResult::from_error(e, &data.correlation_id),
        }
    }
}

/// Operator actions (SPEC §8): admins only (a token with the `twofold:admin` scope).
#[Object]
impl AdminMutation {
    /// Removes a user's credential (enabled or pending), used steps and recovery codes, as
    /// `disableTotp` does but without a code, so the user can enrol again at once. Writes
    /// `ADMIN_RESET` with the admin as `actor`; the `reason` is kept with the event and never
    /// shown to the user. `TotpNotEnabled` when the user has no credential.
    async fn admin_reset_two_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (their token's `sub`).")] user_id: String,
        #[graphql(desc = "Why (at most 500 bytes; kept for operators, never shown to the user).")] reason: Option<
            String,
        >,
    ) -> async_graphql::Result<AdminResetTwoFactorResult> {
        let (data, viewer) = admin(ctx)?;
        let user_id = user_id_arg(&user_id)?;
        if reason.as_ref().is_some_and(|r| r.len() > crate::service::MAX_REASON_BYTES) {
            return Err(bad_input("reason must be at most 500 bytes."));
        }
        let reset =
            data.service.admin_reset(user_id, &viewer.user_id, reason.as_deref(), Some(&data.correlation_id)).await;
        match reset {
            Ok(at) => {
                let status =
                    data.service.status(user_id).await.map_err(|e| internal_error(&data.correlation_id, &e))?;
                Ok(AdminResetTwoFactorResult::TwoFactorReset(TwoFactorReset {
                    reset_at: DateTime(at),
                    status: TwoFactorStatus(status),
                }))
            }
            Err(e @ AdminError::TotpNotEnabled) => {
                Ok(AdminResetTwoFactorResult::TotpNotEnabled(no_credential(e.to_string())))
            }
            Err(AdminError::Internal(e)) => Err(internal_error(&data.correlation_id, &e)),
        }
    }

    /// Clears a user's failure counter and any lockout, so the right code works at once. Writes
    /// `ADMIN_UNLOCKED` with the admin as `actor`. `TotpNotEnabled` when the user has no
    /// credential.
    async fn admin_unlock_two_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (their token's `sub`).")] user_id: String,
    ) -> async_graphql::Result<AdminUnlockTwoFactorResult> {
        let (data, viewer) = admin(ctx)?;
        let user_id = user_id_arg(&user_id)?;
        match data.service.admin_unlock(user_id, &viewer.user_id, Some(&data.correlation_id)).await {
            Ok(()) => {
                let status =
                    data.service.status(user_id).await.map_err(|e| internal_error(&data.correlation_id, &e))?;
                Ok(AdminUnlockTwoFactorResult::TwoFactorUnlocked(TwoFactorUnlocked { status: TwoFactorStatus(status) }))
            }
            Err(e @ AdminError::TotpNotEnabled) => {
                Ok(AdminUnlockTwoFactorResult::TotpNotEnabled(no_credential(e.to_string())))
            }
            Err(AdminError::Internal(e)) => Err(internal_error(&data.correlation_id, &e)),
        }
    }
}

fn verified(v: crate::service::Verified, viewer: &Viewer) -> TotpVerified {
    TotpVerified {
        verified_at: DateTime(v.at),
        method: v.method.into(),
        assertion: v.assertion,
        user_id: viewer.user_id.clone(),
    }
}

/// A valid nonce, or a top-level `BAD_USER_INPUT` error (nothing is checked or counted).
fn parse_nonce(nonce: Option<&str>) -> async_graphql::Result<Option<Nonce>> {
    match nonce {
        None => Ok(None),
        Some(text) => Nonce::parse(text).map(Some).ok_or_else(|| {
            async_graphql::Error::new(NONCE_RULE).extend_with(|_, ext| ext.set("code", "BAD_USER_INPUT"))
        }),
    }
}
