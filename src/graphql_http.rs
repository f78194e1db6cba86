//! GraphQL over HTTP: `POST /graphql` (one operation or a batch) and `GET /graphql` (queries),
//! with the checks SPEC §10 puts before any execution.
//!
//! Not built on `async-graphql-axum`: its extractor parses the body (serde_json, recursing up to
//! 128 levels) as it extracts, before a handler could bound the nesting (SPEC §10: refused at 64,
//! before any recursive parse), and `Schema::execute_batch` runs a batch's operations
//! concurrently, where SPEC §10 wants them one after another, in order. So this module reads the
//! body itself (64 KiB), scans it, parses each document once (the executor reuses the parse) and
//! runs the operations in order.

use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::json;

use crate::graphql::{MAX_BATCH, RequestData};
use crate::web::{AppState, BodyError, CorrelationId, OperationName, read_body};

/// `GET` and `POST /graphql`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/graphql", get(graphql_get).post(graphql_post))
}

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// `application/graphql-response+json` when the client lists it before `application/json`.
fn graphql_content_type(headers: &HeaderMap) -> &'static str {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let position = |needle: &str| accept.find(needle);
    match (position(GRAPHQL_RESPONSE_JSON), position("application/json")) {
        (Some(g), Some(j)) if g < j => GRAPHQL_RESPONSE_JSON,
        (Some(_), None) => GRAPHQL_RESPONSE_JSON,
        _ => "application/json",
    }
}

fn graphql_json(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A request-level GraphQL error (`{"errors":[{"message":…}]}`).
fn graphql_request_error(status: StatusCode, headers: &HeaderMap, message: &str, code: &str) -> Response {
    let body = json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    graphql_json(status, graphql_content_type(headers), body.to_string().into_bytes())
}

/// Runs a GraphQL request (one operation or a batch) after the checks that must come before any
/// of it runs: the nesting bound, one parse of each document (the executor reuses it), only
/// `POST` may run a mutation, and the per-request root-field limits (SPEC §10). The operations
/// of a batch then run one after another, in order, so each sees what the previous one wrote
/// (async-graphql's own `execute_batch` runs them concurrently).
async fn execute(
    state: &AppState,
    cid: CorrelationId,
    method: &Method,
    headers: &HeaderMap,
    batch: BatchRequest,
) -> Response {
    let (mut requests, is_batch) = match batch {
        BatchRequest::Single(r) => (vec![r], false),
        BatchRequest::Batch(v) => (v, true),
    };
    if requests.iter().any(|r| crate::nesting::graphql_too_deep(&r.query, crate::nesting::MAX_NESTING)) {
        return too_deep(headers);
    }
    let mut totals = RootFields::default();
    let mut labels = Vec::with_capacity(requests.len());
    for request in &mut requests {
        let operation_name = request.operation_name.clone();
        // A document that does not parse is left to the executor, which reports it.
        let fields = match request.parsed_query() {
            Ok(doc) => root_fields(doc, operation_name.as_deref()),
            Err(_) => RootFields { label: "invalid".to_owned(), ..RootFields::default() },
        };
        totals.mutations += fields.mutations;
        totals.queries += fields.queries;
        labels.push(fields.label);
    }
    if totals.mutations > 0 && method != Method::POST {
        let mut response = graphql_request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            headers,
            "Mutations must be sent with POST.",
            "METHOD_NOT_ALLOWED",
        );
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if totals.mutations > MAX_MUTATION_FIELDS || totals.queries > MAX_QUERY_FIELDS {
        let message = format!(
            "A request may select at most {MAX_MUTATION_FIELDS} mutation fields and {MAX_QUERY_FIELDS} query fields \
             in all (aliases and batched operations included); this one selects {} and {}. Nothing was run.",
            totals.mutations, totals.queries
        );
        return graphql_request_error(StatusCode::OK, headers, &message, "TOO_MANY_ROOT_FIELDS");
    }
    let label = if is_batch { "batch".to_owned() } else { labels.pop().unwrap_or_default() };
    let mut responses = Vec::with_capacity(requests.len());
    for request in requests {
        let data = RequestData {
            service: state.service.clone(),
            viewer: state.authenticate(headers),
            correlation_id: cid.0.clone(),
        };
        responses.push(state.schema.execute(request.data(data)).await);
    }
    let response = match (is_batch, responses.pop()) {
        (false, Some(single)) => BatchResponse::Single(single),
        (_, last) => BatchResponse::Batch(responses.into_iter().chain(last).collect()),
    };
    let body = match serde_json::to_vec(&response) {
        Ok(b) => b,
        Err(_) => {
            return graphql_request_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                headers,
                "Internal server error",
                "INTERNAL_SERVER_ERROR",
            );
        }
    };
    let mut http = graphql_json(StatusCode::OK, graphql_content_type(headers), body);
    http.extensions_mut().insert(OperationName(label));
    http
}

/// The answer to a body, document or `variables` nested deeper than [`crate::nesting::MAX_NESTING`].
fn too_deep(headers: &HeaderMap) -> Response {
    let message =
        format!("The request is nested deeper than {} levels and was not parsed.", crate::nesting::MAX_NESTING);
    graphql_request_error(StatusCode::BAD_REQUEST, headers, &message, "BAD_REQUEST")
}

async fn graphql_post(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return graphql_request_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &headers,
                "The request body exceeds 64 KiB.",
                "PAYLOAD_TOO_LARGE",
            );
        }
        Err(BodyError::Unreadable) => {
            return graphql_request_error(
                StatusCode::BAD_REQUEST,
                &headers,
                "The request body could not be read.",
                "BAD_REQUEST",
            );
        }
    };
    if crate::nesting::json_too_deep(&bytes, crate::nesting::MAX_NESTING) {
        return too_deep(&headers);
    }
    let batch = match parse_batch(&bytes) {
        Ok(b) => b,
        Err(message) => {
            return graphql_request_error(StatusCode::BAD_REQUEST, &headers, &message, "BAD_REQUEST");
        }
    };
    execute(&state, cid, &Method::POST, &headers, batch).await
}

/// Parses a POST body: one `{"query": "…", …}` object or a non-empty array of at most
/// [`MAX_BATCH`] of them.
fn parse_batch(bytes: &[u8]) -> Result<BatchRequest, String> {
    const SHAPE: &str = "The body must be a JSON GraphQL request ({\"query\": \"…\"}) or an array of them.";
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| SHAPE.to_owned())?;
    let has_query = |v: &serde_json::Value| v.get("query").is_some_and(serde_json::Value::is_string);
    match &value {
        serde_json::Value::Object(_) if has_query(&value) => {}
        serde_json::Value::Array(items) if items.is_empty() => {
            return Err("The batch is empty.".to_owned());
        }
        serde_json::Value::Array(items) if items.len() > MAX_BATCH => {
            return Err(format!("A batch may hold at most {MAX_BATCH} operations; this one has {}.", items.len()));
        }
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_object() && has_query(i)) => {}
        _ => return Err(SHAPE.to_owned()),
    }
    serde_json::from_value(value).map_err(|_| SHAPE.to_owned())
}

/// Root fields a metric label may name (bounded: never a client-chosen string).
const ROOT_FIELDS: &[&str] = &[
    "twoFactor",
    "prepareTwoFactor",
    "setupTotp",
    "enableTotp",
    "verifyTotp",
    "useRecoveryCode",
    "disableTotp",
    "regenerateRecoveryCodes",
    "__schema",
    "__type",
    "__typename",
];

/// Mutation fields one request may select in all (aliases and batched operations included).
pub const MAX_MUTATION_FIELDS: usize = 10;
/// Query root fields one request may select in all, other than `__schema`, `__type` and
/// `__typename`.
pub const MAX_QUERY_FIELDS: usize = 20;

/// What the selected operation of a document asks for at its root.
#[derive(Debug, Default)]
struct RootFields {
    /// Mutation fields (each runs a state change, and most write an audit event).
    mutations: usize,
    /// Query fields other than introspection (each reads a user's state).
    queries: usize,
    /// A bounded label for logs and metrics: the root field names, e.g. `setupTotp`.
    label: String,
}

/// Counts the root fields of the operation `operation_name` picks in `doc` (fragments at the
/// root expanded, `@skip`/`@include` ignored: every field that might run is counted).
fn root_fields(doc: &async_graphql::parser::types::ExecutableDocument, operation_name: Option<&str>) -> RootFields {
    use async_graphql::parser::types::DocumentOperations;
    let op = match &doc.operations {
        DocumentOperations::Single(op) => Some(op),
        DocumentOperations::Multiple(ops) => match operation_name {
            Some(name) => ops.get(name),
            None if ops.len() == 1 => ops.values().next(),
            None => None,
        },
    };
    let Some(op) = op else {
        return RootFields { label: "invalid".to_owned(), ..RootFields::default() };
    };
    let mut names = Vec::new();
    collect_root_fields(doc, &op.node.selection_set.node, 0, &mut names);
    let counted = names.iter().filter(|n| !n.starts_with("__")).count();
    let mut label: Vec<&str> =
        names.iter().map(|n| ROOT_FIELDS.iter().copied().find(|f| f == n).unwrap_or("other")).collect();
    label.sort_unstable();
    label.dedup();
    let mutation = op.node.ty == OperationType::Mutation;
    RootFields {
        mutations: if mutation { counted } else { 0 },
        queries: if mutation { 0 } else { counted },
        label: if label.is_empty() { "other".to_owned() } else { label.join(",") },
    }
}

/// The field names of a root selection set, through fragment spreads and inline fragments. A
/// fragment cycle (which validation refuses later) stops at a bounded depth.
fn collect_root_fields<'a>(
    doc: &'a async_graphql::parser::types::ExecutableDocument,
    set: &'a async_graphql::parser::types::SelectionSet,
    depth: usize,
    names: &mut Vec<&'a str>,
) {
    use async_graphql::parser::types::Selection;
    if depth > crate::nesting::MAX_NESTING {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => names.push(f.node.name.node.as_str()),
            Selection::InlineFragment(f) => collect_root_fields(doc, &f.node.selection_set.node, depth + 1, names),
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = doc.fragments.get(&spread.node.fragment_name.node) {
                    collect_root_fields(doc, &fragment.node.selection_set.node, depth + 1, names);
                }
            }
        }
    }
}

async fn graphql_get(
    State(state): State<AppState>,
    Extension(cid): Extension<CorrelationId>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    match get_request(uri.query().unwrap_or("")) {
        Ok(request) => execute(&state, cid, &method, &headers, BatchRequest::Single(request)).await,
        Err(GetRequestError::TooDeep) => too_deep(&headers),
        Err(GetRequestError::Malformed) => graphql_request_error(
            StatusCode::BAD_REQUEST,
            &headers,
            "GET /graphql needs a `query` parameter (and optional `variables`, `operationName`, `extensions`; \
             the last two JSON).",
            "BAD_REQUEST",
        ),
    }
}

enum GetRequestError {
    TooDeep,
    Malformed,
}

/// The GraphQL request of a `GET /graphql` query string (GraphQL-over-HTTP: `query`,
/// `operationName`, and `variables` and `extensions` as JSON, each bounded in nesting before it
/// is parsed).
fn get_request(query_string: &str) -> Result<async_graphql::Request, GetRequestError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query_string).map_err(|_| GetRequestError::Malformed)?;
    let (mut query, mut operation_name, mut variables, mut extensions) = (None, None, None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "query" => query = Some(value),
            "operationName" | "operation_name" => operation_name = Some(value),
            "variables" => variables = Some(value),
            "extensions" => extensions = Some(value),
            _ => {}
        }
    }
    let json = |text: Option<String>| -> Result<Option<serde_json::Value>, GetRequestError> {
        let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
        if crate::nesting::json_too_deep(text.as_bytes(), crate::nesting::MAX_NESTING) {
            return Err(GetRequestError::TooDeep);
        }
        serde_json::from_str(&text).map(Some).map_err(|_| GetRequestError::Malformed)
    };
    let (variables, extensions) = (json(variables)?, json(extensions)?);
    let mut request = async_graphql::Request::new(query.ok_or(GetRequestError::Malformed)?);
    if let Some(name) = operation_name.filter(|n| !n.is_empty()) {
        request = request.operation_name(name);
    }
    if let Some(v) = variables {
        request = request.variables(async_graphql::Variables::from_json(v));
    }
    if let Some(serde_json::Value::Object(map)) = extensions {
        for (k, v) in map {
            if let Ok(value) = async_graphql::Value::from_json(v) {
                request.extensions.insert(k, value);
            }
        }
    }
    Ok(request)
}
