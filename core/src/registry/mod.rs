//! The Confluent-compatible schema registry: client settings for
//! `schema_registry_converter`, and the few admin calls (compatibility,
//! registration with the registry's own reason on refusal) it lacks.

use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde::Deserialize;

use crate::config::RegistrySettings;
use oda_model::odata::escape_data_string;

/// Registry failures, by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read schema_registry.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("cannot build the registry client: {0}")]
    Client(String),
    #[error("schema registry at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("the registry rejected the schema for subject {subject} as incompatible: {reason}")]
    Incompatible { subject: String, reason: String },
    #[error("the registry refused subject {subject} (HTTP {status}): {reason}")]
    Rejected {
        subject: String,
        status: u16,
        reason: String,
    },
    #[error(
        "the schema registry at {url} refuses our credentials (HTTP {status}): check \
         schema_registry.username and schema_registry.password"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("the schema registry has no schema with id {id}")]
    UnknownSchema { id: u32 },
    #[error("registry call failed: {0}")]
    Call(String),
}

impl RegistrySettings {
    fn http_client(&self) -> Result<reqwest::Client, RegistryError> {
        self.http_builder()?
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))
    }

    fn http_builder(&self) -> Result<reqwest::ClientBuilder, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if let Some(path) = &self.ca_file {
            let ca_error = |message: String| RegistryError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(builder)
    }

    /// Settings for `schema_registry_converter`'s encoders and decoders
    /// (which cache schema ids, so no call is made per record).
    pub fn sr_settings(&self) -> Result<SrSettings, RegistryError> {
        let mut builder = SrSettings::new_builder(self.url.clone());
        if let Some(user) = &self.username {
            builder.set_basic_authorization(user, self.password.as_ref().map(|p| p.expose()));
        }
        builder
            .set_timeout(Duration::from_secs(30))
            .build_with(self.http_builder()?)
            .map_err(|e| RegistryError::Client(e.to_string()))
    }

    /// A client for the admin calls below.
    pub fn client(&self) -> Result<RegistryClient, RegistryError> {
        Ok(RegistryClient {
            http: self.http_client()?,
            base: self.url.trim_end_matches('/').to_owned(),
            settings: self.clone(),
        })
    }
}

/// Admin calls against the Confluent-compatible API.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    settings: RegistrySettings,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct CompatibilityBody {
    /// Confluent answers `compatibilityLevel`; some versions `compatibility`.
    #[serde(alias = "compatibilityLevel")]
    compatibility: Option<String>,
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        match &self.settings.username {
            Some(user) => {
                request.basic_auth(user, self.settings.password.as_ref().map(|p| p.expose()))
            }
            None => request,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: crate::secret::redact_url(&self.base),
                message: e.without_url().to_string(),
            })
    }

    /// Every subject; also the registry's readiness probe.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let response = self
            .send(self.request(reqwest::Method::GET, "/subjects"))
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Call(format!(
                "GET /subjects answered {status}"
            )));
        }
        response
            .json()
            .await
            .map_err(|e| RegistryError::Call(e.to_string()))
    }

    /// The global compatibility level.
    pub async fn global_compatibility(&self) -> Result<String, RegistryError> {
        let response = self
            .send(self.request(reqwest::Method::GET, "/config"))
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Call(format!(
                "GET /config answered {status}"
            )));
        }
        let body: CompatibilityBody = response
            .json()
            .await
            .map_err(|e| RegistryError::Call(e.to_string()))?;
        body.compatibility
            .ok_or_else(|| RegistryError::Call("GET /config gave no compatibility level".into()))
    }

    /// The schema text registered under `id` (what a reader needs for the
    /// Confluent wire format). Failures are classified: a registry that is
    /// away, rate-limiting or failing (`5xx`, `429`, no connection) is
    /// [`RegistryError::Unreachable`]; refused credentials
    /// [`RegistryError::Unauthorized`]; an id it does not know
    /// [`RegistryError::UnknownSchema`].
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let response = self
            .send(self.request(reqwest::Method::GET, &format!("/schemas/ids/{id}")))
            .await?;
        let status = response.status();
        if status.is_success() {
            let body: SchemaBody =
                response
                    .json()
                    .await
                    .map_err(|e| RegistryError::Unreachable {
                        url: crate::secret::redact_url(&self.base),
                        message: format!(
                            "schema {id}: the answer broke off or is not a schema: {e}"
                        ),
                    })?;
            return Ok(body.schema);
        }
        match status.as_u16() {
            401 | 403 => Err(RegistryError::Unauthorized {
                url: crate::secret::redact_url(&self.base),
                status: status.as_u16(),
            }),
            404 => Err(RegistryError::UnknownSchema { id }),
            code if code == 429 || code >= 500 => Err(RegistryError::Unreachable {
                url: crate::secret::redact_url(&self.base),
                message: format!("GET /schemas/ids/{id} answered {status}"),
            }),
            _ => Err(RegistryError::Call(format!(
                "GET /schemas/ids/{id} answered {status}"
            ))),
        }
    }

    /// Registers an Avro schema under `subject` and returns its id. A
    /// refusal carries the registry's own reason, so an operator sees why.
    pub async fn register_avro(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({"schema": schema, "schemaType": "AVRO"});
        let response = self
            .send(
                self.request(
                    reqwest::Method::POST,
                    &format!("/subjects/{}/versions", escape_data_string(subject)),
                )
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string()),
            )
            .await?;
        let status = response.status();
        if status.is_success() {
            let id: IdBody = response
                .json()
                .await
                .map_err(|e| RegistryError::Call(e.to_string()))?;
            return Ok(id.id);
        }
        let text = response.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or(text);
        if status == reqwest::StatusCode::CONFLICT {
            Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                reason,
            })
        } else {
            Err(RegistryError::Rejected {
                subject: subject.to_owned(),
                status: status.as_u16(),
                reason,
            })
        }
    }
}

/// Registers through `schema_registry_converter`, for callers that already
/// hold [`SrSettings`].
pub async fn post_avro(
    settings: &SrSettings,
    subject: &str,
    schema: &str,
) -> Result<u32, SRCError> {
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
    post_schema(settings, subject.to_owned(), supplied)
        .await
        .map(|registered| registered.id)
}
