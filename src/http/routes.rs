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
    pub response: Option<(u16, String)>,
    route: Option<actix_web::Route>,
}

impl RouteSpec {
    /// Documents the JSON request body.
    pub fn body<T: utoipa::ToSchema>(&mut self, schemas: &mut Schemas) -> &mut Self {
        self.body = Some(register_schema::<T>(schemas));
        self
    }
    /// Documents a non-JSON request body (e.g. multipart uploads).
    pub fn body_as(&mut self, content_type: &'static str) -> &mut Self {
        self.body_content_type = content_type;
        self.body = Some(String::new());
        self
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
                .property("next_cursor", ObjectBuilder::new().schema_type(Type::String))
                .build();
            schemas.push((name.clone(), RefOr::T(Schema::Object(schema))));
        }
        self.response = Some((200, name));
        self
    }
    /// Documents query parameters.
    pub fn query(&mut self, names: &'static [&'static str]) -> &mut Self {
        self.query = names;
        self
    }
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
            response: None,
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
        for spec in &self.routes {
            let mut op = OperationBuilder::new()
                .summary(Some(spec.summary))
                .tag(spec.tag)
                .operation_id(Some(format!("{} {}", spec.method, spec.path)));
            for param in path_params(&spec.path) {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(param)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String))),
                );
            }
            for q in spec.query {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(*q)
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String))),
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
                        .required(Some(Required::True))
                        .build(),
                ));
            }
            let (status, resp) = match &spec.response {
                Some((status, name)) => (
                    *status,
                    ResponseBuilder::new()
                        .description("success")
                        .content(
                            "application/json",
                            Content::new(Some(utoipa::openapi::Ref::from_schema_name(name.clone()))),
                        )
                        .build(),
                ),
                None => (200, ResponseBuilder::new().description("success").build()),
            };
            op = op.response(status.to_string(), resp);
            op = op.response(
                "default",
                ResponseBuilder::new()
                    .description("error")
                    .content(
                        "application/json",
                        Content::new(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))),
                    )
                    .build(),
            );
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
    let denied = match authorize(&state, access, bearer, key).await {
        Ok(Principal::User(user)) => {
            req.extensions_mut().insert::<AuthUser>(user);
            None
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
    use super::*;

    #[test]
    fn finds_path_params() {
        assert_eq!(path_params("/api/v1/users/{id}/roles/{role}"), vec!["id", "role"]);
    }
}
