//! The route table: every route is declared here with who may call it (its [`Access`]) and its
//! documentation. One middleware enforces the declaration; the OpenAPI document is generated from the
//! same table, so a route cannot exist undeclared or undocumented.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::{guard, web, HttpMessage, ResponseError};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, RefOr, Required, ResponseBuilder, Schema};

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no credentials.
    Public,
    /// Any holder of a valid access token.
    Authenticated,
    /// A holder of a valid access token with at least one of these roles.
    AnyRole(&'static [&'static str]),
    /// A merchant API key (`X-Api-Key`) of an active merchant.
    ApiKey,
    /// A merchant API key, or an access token with one of these roles.
    ApiKeyOrRole(&'static [&'static str]),
}

pub const ADMIN: Access = Access::AnyRole(&["admin"]);

type Schemas = Vec<(String, RefOr<Schema>)>;

/// One declared route.
pub struct RouteSpec {
    pub method: Method,
    pub path: String,
    pub access: Access,
    pub summary: &'static str,
    pub tag: &'static str,
    pub query: &'static [&'static str],
    pub body: Option<String>,
    pub body_content_type: &'static str,
    /// Deserialises and validates a JSON body as the handler's extractor does (for the schema drift test).
    pub body_check: Option<fn(serde_json::Value) -> Result<(), String>>,
    pub response: Option<(u16, String)>,
    /// The success answer has no body (`204 No Content`).
    pub no_content: bool,
    /// Request headers the route reads: (name, required, description).
    pub headers: Vec<(&'static str, bool, &'static str)>,
    /// Error statuses the route answers beyond those its access, body and parameters imply.
    pub errors: Vec<u16>,
    /// Further non-error answers: (status, schema name).
    pub also: Vec<(u16, String)>,
    /// The route touches no store: it never answers 503 (liveness, ping, metrics).
    pub infallible: bool,
    /// The body may be left out entirely.
    pub body_optional: bool,
    /// Parameter schemas that differ from the by-name defaults ([`query_param_schema`], `id` = integer).
    pub param_schemas: Vec<(&'static str, Schema)>,
    /// Not part of the API document (the console's pages and cookie session: not for API clients).
    pub undocumented: bool,
    route: Option<actix_web::Route>,
}

impl RouteSpec {
    /// Documents the JSON request body.
    pub fn body<T>(&mut self, schemas: &mut Schemas) -> &mut Self
    where
        T: utoipa::ToSchema + serde::de::DeserializeOwned + validator::Validate,
    {
        self.body = Some(register_schema::<T>(schemas));
        self.body_check = Some(check_body::<T>);
        self
    }
    /// Documents a non-JSON request body (e.g. multipart uploads).
    pub fn body_as(&mut self, content_type: &'static str) -> &mut Self {
        self.body_content_type = content_type;
        self.body = Some(String::new());
        self
    }
    /// Documents that the body may be left out (no `Content-Length`, or 0): see [`crate::http::MaybeValid`].
    pub fn optional_body(&mut self) -> &mut Self {
        self.body_optional = true;
        self
    }
    /// Documents a path or query parameter whose schema differs from the by-name default.
    pub fn path_param(&mut self, name: &'static str, schema: Schema) -> &mut Self {
        self.param_schemas.push((name, schema));
        self
    }
    fn param_schema(&self, name: &str, default: impl FnOnce(&str) -> Schema) -> Schema {
        self.param_schemas.iter().find(|(n, _)| *n == name).map_or_else(|| default(name), |(_, s)| s.clone())
    }
    /// Documents the success response.
    pub fn responds<T: utoipa::ToSchema>(&mut self, status: u16, schemas: &mut Schemas) -> &mut Self {
        self.response = Some((status, register_schema::<T>(schemas)));
        self
    }
    /// Documents a success response that is a cursor page of `T`.
    pub fn responds_page<T: utoipa::ToSchema>(&mut self, schemas: &mut Schemas) -> &mut Self {
        use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Type};
        let item = register_schema::<T>(schemas);
        let name = format!("Page_{item}");
        if !schemas.iter().any(|(n, _)| n == &name) {
            let schema = ObjectBuilder::new()
                .property("items", ArrayBuilder::new().items(utoipa::openapi::Ref::from_schema_name(item)))
                .required("items")
                .required("next_cursor")
                .property(
                    "next_cursor",
                    ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
                        .description(Some("Cursor of the next page; null on the last page")),
                )
                .build();
            schemas.push((name.clone(), RefOr::T(Schema::Object(schema))));
        }
        self.response = Some((200, name));
        self
    }
    /// Documents query parameters (their schemas come from [`query_param_schema`] by name).
    pub fn query(&mut self, names: &'static [&'static str]) -> &mut Self {
        self.query = names;
        self
    }
    /// Documents a success answer without a body (`204 No Content`).
    pub fn no_content(&mut self) -> &mut Self {
        self.no_content = true;
        self.response = None;
        self
    }
    /// Documents a request header the route reads.
    pub fn header(&mut self, name: &'static str, required: bool, description: &'static str) -> &mut Self {
        self.headers.push((name, required, description));
        self
    }
    /// Documents error statuses beyond those the route's access, body and parameters imply.
    pub fn errors(&mut self, statuses: &[u16]) -> &mut Self {
        self.errors.extend_from_slice(statuses);
        self
    }
    /// Documents a further answer with its own schema (e.g. `503` of the readiness probe).
    pub fn also<T: utoipa::ToSchema>(&mut self, status: u16, schemas: &mut Schemas) -> &mut Self {
        self.also.push((status, register_schema::<T>(schemas)));
        self
    }
    /// Documents the required `Idempotency-Key` header of a money-moving request.
    pub fn idempotent(&mut self) -> &mut Self {
        self.header(
            "Idempotency-Key",
            true,
            "Client-chosen key (1-128 visible ASCII characters): a retry with the same key and body gets the stored answer",
        )
    }
    /// Leaves the route out of the OpenAPI document (console pages and session; the access check is
    /// the same as every route's).
    pub fn undocumented(&mut self) -> &mut Self {
        self.undocumented = true;
        self
    }
    /// Marks a route that touches no store (it never answers 503).
    pub fn infallible(&mut self) -> &mut Self {
        self.infallible = true;
        self
    }

    /// Every error status the route can answer, sorted: implied by its access kind, its body, its
    /// parameters and its method, plus the declared extras.
    pub fn error_statuses(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self.errors.clone();
        let has_body = self.body.is_some();
        let has_path_params = self.path.contains('{');
        let writes = self.method != Method::GET;
        match self.access {
            Access::Public => {}
            Access::Authenticated | Access::AnyRole(_) | Access::ApiKey | Access::ApiKeyOrRole(_) => {
                // Missing or bad credentials; a missing role, an archived account, an inactive merchant,
                // or a field only admins may set.
                out.extend([401, 403]);
            }
        }
        if has_body {
            // Malformed JSON / 413 too large / 415 wrong content type / 422 a field breaks a rule.
            out.extend([400, 413, 415, 422]);
            if self.body_content_type == "application/json" {
                // A body may name a record that does not exist (a card, a user).
                out.push(404);
            }
        }
        if !self.headers.is_empty() {
            out.push(400);
        }
        if !self.query.is_empty() {
            out.push(422);
        }
        if has_path_params {
            out.push(404);
        }
        if writes {
            // State conflicts (already archived, invalid transition, taken names, money never purged).
            out.extend([400, 404, 409]);
        }
        if writes && (self.access != Access::Public || has_body) {
            // Per-client limits: the auth group, money movement, card attempts.
            out.push(429);
        }
        if !self.infallible {
            out.push(503);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The schema of a query parameter, by its name: the list parameters are the same everywhere.
pub fn query_param_schema(name: &str) -> Schema {
    use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
    use utoipa::openapi::{ObjectBuilder, Type};
    let b = ObjectBuilder::new();
    let b = match name {
        "limit" => b
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(crate::http::pagination::MAX_LIMIT))
            .description(Some("Page size (default 20)")),
        "cursor" => b.schema_type(Type::String).description(Some("`next_cursor` of the previous page")),
        "from" | "to" | "at" => b
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 time")),
        "archived" => b
            .schema_type(Type::String)
            .enum_values(Some(["active", "archived", "all"]))
            .description(Some("Archived records: hidden (`active`, default), only (`archived`) or both")),
        n if n == "id" || n.ends_with("_id") => {
            b.schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        }
        _ => b.schema_type(Type::String),
    };
    Schema::Object(b.build())
}

fn header_schema(name: &str) -> Schema {
    use utoipa::openapi::{ObjectBuilder, Type};
    let b = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1));
    let b = if name.eq_ignore_ascii_case(crate::payments::idempotency::HEADER) {
        b.max_length(Some(128)).pattern(Some("^[!-~]+$"))
    } else {
        b.max_length(Some(255))
    };
    Schema::Object(b.build())
}

/// A UUID string (merchant payment ids).
pub fn uuid_schema() -> Schema {
    use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .build(),
    )
}

/// A plain string parameter (a name that is something else elsewhere, e.g. the mailbox's `to`).
pub fn string_schema() -> Schema {
    Schema::Object(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String).build())
}

/// The schema of a path parameter, by its name: `id` and `…_id` are record ids.
fn path_param_schema(name: &str) -> Schema {
    use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
    use utoipa::openapi::{ObjectBuilder, Type};
    let b = ObjectBuilder::new();
    let b = if name == "id" || name.ends_with("_id") {
        b.schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
    } else {
        b.schema_type(Type::String)
    };
    Schema::Object(b.build())
}

fn check_body<T: serde::de::DeserializeOwned + validator::Validate>(v: serde_json::Value) -> Result<(), String> {
    let t: T = serde_json::from_value(v).map_err(|e| format!("does not deserialise: {e}"))?;
    t.validate().map_err(|e| e.to_string())
}

fn register_schema<T: utoipa::ToSchema>(schemas: &mut Schemas) -> String {
    let name = T::name().to_string();
    if !schemas.iter().any(|(n, _)| n == &name) {
        T::schemas(schemas);
        schemas.push((name.clone(), T::schema()));
    }
    name
}

/// The whole API: routes plus the schemas their documentation refers to.
#[derive(Default)]
pub struct Api {
    pub routes: Vec<RouteSpec>,
    pub schemas: Schemas,
}

impl Api {
    /// Declares a route. `path` is absolute (e.g. `/api/v1/auth/login`).
    pub fn route(
        &mut self,
        method: Method,
        path: &str,
        access: Access,
        tag: &'static str,
        summary: &'static str,
        handler: actix_web::Route,
    ) -> (&mut RouteSpec, &mut Schemas) {
        self.routes.push(RouteSpec {
            method,
            path: path.to_owned(),
            access,
            summary,
            tag,
            query: &[],
            body: None,
            body_content_type: "application/json",
            body_check: None,
            response: None,
            no_content: false,
            headers: Vec::new(),
            errors: Vec::new(),
            also: Vec::new(),
            infallible: false,
            body_optional: false,
            param_schemas: Vec::new(),
            undocumented: false,
            route: Some(handler),
        });
        let last = self.routes.len() - 1;
        (&mut self.routes[last], &mut self.schemas)
    }

    /// Registers every route on the actix service config, each wrapped with its access check.
    pub fn configure(mut self, cfg: &mut web::ServiceConfig) {
        // Static paths first: they match by string comparison, and a request for one of them then never
        // runs the regex of a parameterised path (and `/cards/lookup` wins over `/cards/{id}`).
        self.routes.sort_by_key(|r| r.path.contains('{'));
        for spec in &mut self.routes {
            let Some(route) = spec.route.take() else { continue };
            let access = spec.access;
            cfg.service(
                web::resource(spec.path.clone())
                    .guard(guard::Method(spec.method.clone()))
                    .wrap(from_fn(move |req, next| enforce(access, req, next)))
                    .route(route),
            );
        }
    }

    /// The OpenAPI 3.1 document generated from the table.
    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let mut paths = utoipa::openapi::path::PathsBuilder::new();
        for spec in self.routes.iter().filter(|r| !r.undocumented) {
            let mut op = OperationBuilder::new()
                .summary(Some(spec.summary))
                .tag(spec.tag)
                .operation_id(Some(format!("{} {}", spec.method, spec.path)));
            for param in path_params(&spec.path) {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(param.clone())
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(spec.param_schema(&param, path_param_schema))),
                );
            }
            for q in spec.query {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(*q)
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .schema(Some(spec.param_schema(q, query_param_schema))),
                );
            }
            for (name, required, description) in &spec.headers {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(*name)
                        .parameter_in(ParameterIn::Header)
                        .required(if *required { Required::True } else { Required::False })
                        .description(Some(*description))
                        .schema(Some(header_schema(name))),
                );
            }
            if let Some(body) = &spec.body {
                let content = if body.is_empty() {
                    Content::new(None::<RefOr<Schema>>)
                } else {
                    Content::new(Some(utoipa::openapi::Ref::from_schema_name(body.clone())))
                };
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content(spec.body_content_type, content)
                        .required(Some(if spec.body_optional { Required::False } else { Required::True }))
                        .build(),
                ));
            }
            let json = |name: &str| Content::new(Some(utoipa::openapi::Ref::from_schema_name(name.to_owned())));
            let (status, resp) = match &spec.response {
                _ if spec.no_content => (204, ResponseBuilder::new().description("success, no content").build()),
                Some((status, name)) => (
                    *status,
                    ResponseBuilder::new().description("success").content("application/json", json(name)).build(),
                ),
                None => (200, ResponseBuilder::new().description("success").build()),
            };
            op = op.response(status.to_string(), resp);
            for (status, name) in &spec.also {
                op = op.response(
                    status.to_string(),
                    ResponseBuilder::new().description(status_text(*status)).content("application/json", json(name)),
                );
            }
            for status in spec.error_statuses() {
                if spec.also.iter().any(|(s, _)| *s == status) {
                    continue;
                }
                let mut resp = ResponseBuilder::new()
                    .description(status_text(status))
                    .content("application/json", json("ErrorBody"));
                if status == 429 || status == 503 {
                    resp = resp.header(
                        "Retry-After",
                        utoipa::openapi::HeaderBuilder::new()
                            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer))
                            .description(Some("Seconds to wait before retrying"))
                            .build(),
                    );
                }
                op = op.response(status.to_string(), resp);
            }
            match spec.access {
                Access::Public => {}
                Access::ApiKey => op = op.security(SecurityRequirement::new("api_key", Vec::<String>::new())),
                Access::ApiKeyOrRole(_) => {
                    op = op
                        .security(SecurityRequirement::new("api_key", Vec::<String>::new()))
                        .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
                }
                _ => op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new())),
            }
            let method = match spec.method.as_str() {
                "GET" => HttpMethod::Get,
                "POST" => HttpMethod::Post,
                "PUT" => HttpMethod::Put,
                "PATCH" => HttpMethod::Patch,
                "DELETE" => HttpMethod::Delete,
                _ => HttpMethod::Options,
            };
            paths = paths.path(spec.path.clone(), PathItem::new(method, op.build()));
        }
        let mut schemas = self.schemas.clone();
        register_schema::<crate::http::error::ErrorBody>(&mut schemas);
        let components = utoipa::openapi::ComponentsBuilder::new()
            .schemas_from_iter(schemas)
            .security_scheme(
                "api_key",
                SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                    utoipa::openapi::security::ApiKeyValue::new("X-Api-Key"),
                )),
            )
            .security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
            )
            .build();
        utoipa::openapi::OpenApiBuilder::new()
            .info(
                utoipa::openapi::InfoBuilder::new()
                    .title("payd")
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some("An actor-based concurrent stored-value payment platform")),
            )
            .paths(paths.build())
            .components(Some(components))
            .build()
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "malformed request (body not JSON, a header missing, a bad code)",
        401 => "missing, invalid or expired credentials",
        403 => "authenticated but not allowed (role, account or merchant state)",
        404 => "the record (or one the body names) does not exist or is not yours",
        409 => "conflicts with the record's state",
        413 => "request body too large",
        415 => "unsupported content type",
        422 => "a field or parameter breaks a rule (the error names it)",
        429 => "rate limited or locked; see Retry-After",
        503 => "a store is unavailable or busy; retry after Retry-After",
        _ => "error",
    }
}

fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.split(':').next().unwrap_or(s).to_owned())
        .collect()
}

/// Who a request was authorised as.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A public route: no credentials were looked at.
    Anonymous,
    User(AuthUser),
    Merchant(crate::merchants::keys::MerchantPrincipal),
}

/// The one access decision, for both transports: `bearer` is the `Authorization` value, `api_key`
/// the `X-Api-Key` value (`Some("")` when present but unreadable).
///
/// # Errors
/// 401 for missing or bad credentials, 403 for a missing role or an inactive merchant.
pub async fn authorize(
    state: &AppState,
    access: Access,
    bearer: Option<&str>,
    api_key: Option<&str>,
) -> Result<Principal, ApiError> {
    let by_key = match access {
        Access::Public => return Ok(Principal::Anonymous),
        Access::ApiKey => true,
        Access::ApiKeyOrRole(_) => api_key.is_some(),
        _ => false,
    };
    if by_key {
        return crate::merchants::keys::authenticate_key(state, api_key).await.map(Principal::Merchant);
    }
    let user = crate::http::auth::authenticate_bearer(state, bearer).await?;
    match access {
        Access::AnyRole(roles) | Access::ApiKeyOrRole(roles) if !roles.iter().any(|r| user.has_role(r)) => {
            Err(ApiError::forbidden(format!("requires role {}", roles.join(" or "))))
        }
        _ => Ok(Principal::User(user)),
    }
}

/// The access check wrapped around every route.
async fn enforce(
    access: Access,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    if access == Access::Public {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        let err = ApiError::internal("application state missing");
        return Ok(req.into_response(err.error_response()).map_into_right_body());
    };
    let headers = req.headers();
    let bearer = headers.get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let key = headers.get(crate::merchants::keys::HEADER).map(|v| v.to_str().unwrap_or_default());
    // The console's session: the access-token cookie, only when no other credentials are sent.
    let cookie_bearer = if bearer.is_none() && key.is_none() {
        crate::console::cookie(headers, crate::console::ACCESS_COOKIE).map(|t| format!("Bearer {t}"))
    } else {
        None
    };
    let by_cookie = cookie_bearer.is_some();
    let bearer = bearer.or(cookie_bearer.as_deref());
    let denied = match authorize(&state, access, bearer, key).await {
        Ok(Principal::User(user)) => {
            // A browser sends cookies on its own: a cookie-authenticated change must prove it comes
            // from the console (CSRF token bound to the session, same origin).
            let csrf = if by_cookie && !req.method().is_safe() {
                crate::console::check_csrf(&state, &req, &user).err()
            } else {
                None
            };
            if csrf.is_none() {
                req.extensions_mut().insert::<AuthUser>(user);
            }
            csrf
        }
        Ok(Principal::Merchant(principal)) => {
            req.extensions_mut().insert(principal);
            None
        }
        Ok(Principal::Anonymous) => None,
        Err(e) => Some(e),
    };
    match denied {
        Some(err) => Ok(req.into_response(err.error_response()).map_into_right_body()),
        None => next.call(req).await.map(ServiceResponse::map_into_left_body),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use serde_json::{json, Value};

    /// Fields checked together with another (`must_match`): they mirror the field they confirm.
    const CONFIRMS: &[(&str, &str)] = &[("password", "confirm_password"), ("new_password", "confirm_password")];

    fn types(p: &Value) -> Vec<&str> {
        match &p["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    fn num(p: &Value, key: &str) -> Option<i64> {
        p.get(key).and_then(Value::as_i64)
    }

    /// The example with `field` set to `value` (and the fields that confirm it set alike).
    fn with(example: &Value, field: &str, value: Value) -> Value {
        let mut body = example.clone();
        if let Some(obj) = body.as_object_mut() {
            for (confirmed, confirm) in CONFIRMS {
                if *confirmed == field && obj.contains_key(*confirm) {
                    obj.insert((*confirm).to_owned(), value.clone());
                }
            }
            obj.insert(field.to_owned(), value);
        }
        body
    }

    /// Every JSON request body in the route table: its schema's `example` passes the validator, and
    /// each constraint the schema states is the one the `validator` attributes enforce, at its bounds
    /// (length, items, range, enum, nullability). A field the schema leaves unbounded must accept a
    /// 5,000-character string or any integer, so a `#[validate]` rule without its `#[schema]` twin fails here.
    #[test]
    fn schema_drift() {
        let api = crate::http::api_for(crate::config::Environment::Development);
        let doc = serde_json::to_value(api.openapi()).unwrap_or_default();
        let mut problems = Vec::new();
        let mut checked = 0;
        for spec in &api.routes {
            let (Some(name), Some(check)) = (&spec.body, spec.body_check) else { continue };
            let schema = &doc["components"]["schemas"][name.as_str()];
            let Some(example) = schema.get("example").filter(|e| e.is_object()) else {
                problems.push(format!("{name}: request schema has no example (#[schema(example = json!(..))])"));
                continue;
            };
            let mut expect = |body: Value, ok: bool, what: String| {
                checked += 1;
                match (check(body), ok) {
                    (Ok(()), false) => {
                        problems.push(format!("{name}: schema refuses {what} but the validator accepts it"))
                    }
                    (Err(e), true) => {
                        problems.push(format!("{name}: schema admits {what} but the validator refuses it: {e}"))
                    }
                    _ => {}
                }
            };
            expect(example.clone(), true, "its example".into());
            let Some(props) = schema["properties"].as_object() else { continue };
            for (field, p) in props {
                if CONFIRMS.iter().any(|(_, confirm)| confirm == field) {
                    continue;
                }
                let ts = types(p);
                if ts.contains(&"null") {
                    expect(with(example, field, Value::Null), true, format!("{field} = null"));
                }
                if let Some(values) = p.get("enum").and_then(Value::as_array) {
                    for v in values {
                        expect(with(example, field, v.clone()), true, format!("{field} = {v}"));
                    }
                    expect(with(example, field, json!("not-a-member")), false, format!("{field} outside its enum"));
                    continue;
                }
                if ts.contains(&"string") {
                    if p.get("pattern").is_some() || p.get("format").is_some() {
                        continue;
                    }
                    let s = |n: i64| Value::from("x".repeat(usize::try_from(n).unwrap_or(0)));
                    let (min, max) = (num(p, "minLength"), num(p, "maxLength"));
                    if let Some(min) = min {
                        expect(with(example, field, s(min)), true, format!("{field} of {min} characters"));
                        if min > 0 {
                            expect(
                                with(example, field, s(min - 1)),
                                false,
                                format!("{field} of {} characters", min - 1),
                            );
                        }
                    }
                    match max {
                        Some(max) => {
                            expect(with(example, field, s(max)), true, format!("{field} of {max} characters"));
                            expect(
                                with(example, field, s(max + 1)),
                                false,
                                format!("{field} of {} characters", max + 1),
                            );
                        }
                        None => expect(with(example, field, s(5000)), true, format!("{field} of 5000 characters")),
                    }
                } else if ts.contains(&"integer") {
                    let (min, max) = (num(p, "minimum"), num(p, "maximum"));
                    match min {
                        Some(min) => {
                            expect(with(example, field, json!(min)), true, format!("{field} = {min}"));
                            expect(with(example, field, json!(min - 1)), false, format!("{field} = {}", min - 1));
                        }
                        None => expect(with(example, field, json!(-1)), true, format!("{field} = -1")),
                    }
                    match max {
                        Some(max) => {
                            expect(with(example, field, json!(max)), true, format!("{field} = {max}"));
                            expect(with(example, field, json!(max + 1)), false, format!("{field} = {}", max + 1));
                        }
                        None => expect(with(example, field, json!(i64::MAX)), true, format!("{field} = i64::MAX")),
                    }
                } else if ts.contains(&"array") {
                    let item = example[field.as_str()].get(0).cloned().unwrap_or_else(|| json!("x"));
                    let items = |n: i64| Value::Array(vec![item.clone(); usize::try_from(n).unwrap_or(0)]);
                    let (min, max) = (num(p, "minItems"), num(p, "maxItems"));
                    if let Some(min) = min.filter(|m| *m > 0) {
                        expect(with(example, field, items(min - 1)), false, format!("{field} of {} items", min - 1));
                    }
                    match max {
                        Some(max) => {
                            expect(with(example, field, items(max)), true, format!("{field} of {max} items"));
                            expect(
                                with(example, field, items(max + 1)),
                                false,
                                format!("{field} of {} items", max + 1),
                            );
                        }
                        None => expect(with(example, field, items(200)), true, format!("{field} of 200 items")),
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} cases checked");
        assert!(problems.is_empty(), "request schemas and validators disagree:\n{}", problems.join("\n"));
    }

    /// Page schemas say what the server sends: `next_cursor` is present and null on the last page.
    #[test]
    fn page_cursor_is_nullable_and_204_has_no_body() {
        let doc = serde_json::to_value(crate::http::api().openapi()).unwrap_or_default();
        let schemas = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
        let pages: Vec<_> = schemas.iter().filter(|(n, _)| n.starts_with("Page_")).collect();
        assert!(!pages.is_empty());
        for (name, page) in pages {
            assert_eq!(page["properties"]["next_cursor"]["type"], json!(["string", "null"]), "{name}");
            assert!(page["required"].as_array().is_some_and(|r| r.contains(&json!("next_cursor"))), "{name}");
        }
        let logout = &doc["paths"]["/api/v1/auth/logout"]["post"]["responses"];
        assert!(logout.get("204").is_some() && logout["204"].get("content").is_none(), "{logout}");
        assert!(logout.get("200").is_none());
        let login = &doc["paths"]["/api/v1/auth/login"]["post"]["responses"];
        for status in ["400", "422", "429", "503"] {
            assert_eq!(
                login[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody"
            );
        }
        assert!(login.get("default").is_none());
    }

    #[test]
    fn finds_path_params() {
        assert_eq!(path_params("/api/v1/users/{id}/roles/{role}"), vec!["id", "role"]);
    }
}
