//! AWS credentials and SigV4 signing, shared by the `cloudWatch` provider and Prometheus'
//! `authentication.sigv4` (Amazon Managed Prometheus).
//!
//! Credentials are found as the AWS SDKs find them in a pod, in this order:
//! - a named profile, when the metric names one (Prometheus' `sigv4.profile`): static keys of that
//!   profile in the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`)
//!   or config file (`AWS_CONFIG_FILE`, `~/.aws/config`);
//! - `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`);
//! - IRSA: `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, exchanged with STS
//!   `AssumeRoleWithWebIdentity` (the token file is read again at each exchange, as Kubernetes
//!   rotates it);
//! - the static keys of `AWS_PROFILE` (or `default`) in the shared files;
//! - container credentials: EKS Pod Identity or an ECS task role
//!   (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `_RELATIVE_URI`, with the token of
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`);
//! - an EC2 instance role through the instance metadata service (IMDSv2,
//!   `AWS_EC2_METADATA_SERVICE_ENDPOINT`, off with `AWS_EC2_METADATA_DISABLED=true`), each request
//!   within [`METADATA_TIMEOUT`].
//!
//! A role to assume on top (`sigv4.roleArn`) is STS `AssumeRole`, signed with those credentials.
//! Temporary credentials are cached until [`EXPIRY_MARGIN`] before they expire. Not supported:
//! SSO and `credential_process` profiles, role chains written in profiles; each is an Error
//! measurement saying no credentials were found.
//!
//! Endpoints follow the SDKs' override variables, so tests point them at local servers:
//! `AWS_ENDPOINT_URL_<SERVICE>` (`CLOUDWATCH`, `STS`), then `AWS_ENDPOINT_URL`, else the
//! regional endpoint (`https://monitoring.<region>.amazonaws.com`, `.amazonaws.com.cn` in China).
//!
//! Requests are signed by the SDKs' own signer (`aws-sigv4`): no hand-written cryptography.
//! Nothing secret (secret key, session token, web identity token) ever appears in a message or
//! a log; STS answers are read within the same byte cap as every provider answer.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{body, error_chain};

/// Temporary credentials are used until this long before they expire, then fetched again.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The most bytes read of a web identity token or a shared credentials/config file.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The STS API version every SDK sends.
const STS_VERSION: &str = "2011-06-15";

/// The host of ECS's credentials endpoint, for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
const ECS_CREDENTIALS_HOST: &str = "169.254.170.2";

/// The link-local hosts a container credentials endpoint may use over plain HTTP, besides
/// loopback: ECS's and EKS Pod Identity's (IPv4 and IPv6). Anywhere else the authorization
/// token would travel unencrypted to a host of the user's choosing, so the SDKs refuse it.
const CONTAINER_CREDENTIALS_HOSTS: [&str; 3] =
    ["169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"];

/// The instance metadata service's address.
const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// How long one request to the instance metadata service or a container credentials endpoint
/// may take: both answer at once on a machine that has them, and where none exists (a laptop, a
/// cluster outside AWS) a lookup must fail fast rather than hold a measurement.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// What SigV4 leaves unencoded in a query string: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The AWS settings of the process, read once from the variables the SDKs read (production) or
/// written out by a test, so that no test has to change the process environment.
#[derive(Clone, Default)]
pub struct AwsEnv {
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// `AWS_ROLE_ARN` (IRSA).
    pub role_arn: Option<String>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` (IRSA).
    pub web_identity_token_file: Option<PathBuf>,
    /// `AWS_ROLE_SESSION_NAME`.
    pub role_session_name: Option<String>,
    /// `AWS_PROFILE`: the profile of the shared files used last in the chain.
    pub profile: Option<String>,
    /// `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
    pub shared_credentials_file: Option<PathBuf>,
    /// `AWS_CONFIG_FILE`, else `~/.aws/config`.
    pub config_file: Option<PathBuf>,
    /// `AWS_ENDPOINT_URL`: every service's endpoint.
    pub endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_CLOUDWATCH`.
    pub cloudwatch_endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_STS`.
    pub sts_endpoint_url: Option<String>,
    /// Container credentials (EKS Pod Identity, ECS task roles): the endpoint's URL,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`, else `http://169.254.170.2` followed by
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
    pub container_credentials_uri: Option<String>,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (EKS Pod Identity's projected token).
    pub container_authorization_token_file: Option<PathBuf>,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    pub container_authorization_token: Option<String>,
    /// The EC2 instance metadata service (IMDSv2): `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else
    /// `http://169.254.169.254`; `None` when `AWS_EC2_METADATA_DISABLED` is `true` (and in
    /// settings a test writes, unless it sets one).
    pub ec2_metadata_endpoint: Option<String>,
}

impl AwsEnv {
    /// The settings of the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings read through `lookup` (a variable's value by name); blank values are unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let home = get("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            get(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(default)))
        };
        Self {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            session_token: get("AWS_SESSION_TOKEN"),
            role_arn: get("AWS_ROLE_ARN"),
            web_identity_token_file: get("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from),
            role_session_name: get("AWS_ROLE_SESSION_NAME"),
            profile: get("AWS_PROFILE"),
            shared_credentials_file: file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            config_file: file("AWS_CONFIG_FILE", ".aws/config"),
            endpoint_url: get("AWS_ENDPOINT_URL"),
            cloudwatch_endpoint_url: get("AWS_ENDPOINT_URL_CLOUDWATCH"),
            sts_endpoint_url: get("AWS_ENDPOINT_URL_STS"),
            container_credentials_uri: get("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
                get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                    .map(|path| format!("http://{ECS_CREDENTIALS_HOST}{path}"))
            }),
            container_authorization_token_file: get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                .map(PathBuf::from),
            container_authorization_token: get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            ec2_metadata_endpoint: if get("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                None
            } else {
                Some(
                    get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                        .unwrap_or_else(|| IMDS_ENDPOINT.to_owned()),
                )
            },
        }
    }
}

/// An AWS service Sluice calls, for its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Amazon CloudWatch (`monitoring`).
    CloudWatch,
    /// AWS Security Token Service.
    Sts,
}

impl Service {
    /// The endpoint prefix, which is also the SigV4 signing name.
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::CloudWatch => "monitoring",
            Self::Sts => "sts",
        }
    }
}

/// A set of AWS credentials; its `Debug` shows none of the secret parts.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expires_at: Option<Timestamp>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("session_token", &self.session_token.as_ref().map(|_| "…"))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// Long-term (or already temporary) keys.
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: session_token.map(str::to_owned),
            expires_at: None,
        }
    }

    /// When temporary credentials expire (`None` for long-term keys).
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// Whether these may still be used at `now` (until [`EXPIRY_MARGIN`] before expiry).
    fn fresh(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| {
            jiff::SignedDuration::try_from(EXPIRY_MARGIN)
                .ok()
                .and_then(|margin| at.checked_sub(margin).ok())
                .is_some_and(|refresh| now < refresh)
        })
    }
}

/// What a signed request is made of, as it will be sent.
pub struct Signable<'a> {
    /// `GET`, `POST`.
    pub method: &'a str,
    /// The full URL, already encoded as it will be sent.
    pub url: &'a reqwest::Url,
    /// Headers to sign besides `host` (the signer adds `x-amz-date` and the session token).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, whose SHA-256 is part of the signature.
    pub body: &'a [u8],
}

/// The headers that sign `request` with SigV4 for `service` in `region` at `time`:
/// `authorization`, `x-amz-date` and, with temporary credentials, `x-amz-security-token`.
pub fn sign(
    request: &Signable<'_>,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::{
        http_request::{SignableBody, SignableRequest, SigningSettings, sign as sigv4},
        sign::v4,
    };
    if request.url.host_str().is_none() {
        return Err(format!("cannot sign a request to {}: no host", request.url));
    }
    let identity = aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
        credentials.session_token.clone(),
        None,
        "sluice",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing the request: {e}"))?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.url.as_str(),
        request.headers.iter().copied(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| format!("signing the request: {}", error_chain(&e)))?;
    let (instructions, _signature) = sigv4(signable, &params)
        .map_err(|e| format!("signing the request: {}", error_chain(&e)))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

/// `pairs` as a query string encoded the way SigV4 canonicalises it (`%20`, never `+`), so the
/// string sent is the string signed.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, UNRESERVED),
                utf8_percent_encode(v, UNRESERVED)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A region as a host name may hold it (`us-east-1`), refused otherwise: a region written in a
/// template must not be able to steer a request to another host.
pub fn checked_region(region: &str) -> Result<&str, String> {
    let region = region.trim();
    let valid = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(region)
    } else {
        Err(format!("AWS region {region:?} is not a region name"))
    }
}

/// Credentials and endpoints for one process: the AWS settings, an HTTP client for STS and the
/// cache of temporary credentials, shared by every measurement of a provider.
pub struct Aws {
    env: AwsEnv,
    http: reqwest::Client,
    max_bytes: usize,
    cache: tokio::sync::Mutex<HashMap<String, AwsCredentials>>,
}

impl Aws {
    /// Uses `env`, calling STS with `http` and reading at most `max_bytes` of its answers.
    pub fn new(env: AwsEnv, http: reqwest::Client, max_bytes: usize) -> Self {
        Self {
            env,
            http,
            max_bytes,
            cache: tokio::sync::Mutex::default(),
        }
    }

    /// The region to use: `explicit` (a metric's) when given, else the environment's.
    pub fn region(&self, explicit: Option<&str>) -> Result<String, String> {
        match explicit.map(str::trim).filter(|r| !r.is_empty()) {
            Some(region) => checked_region(region).map(str::to_owned),
            None => self
                .env
                .region
                .as_deref()
                .ok_or_else(|| "AWS region is not configured (set AWS_REGION)".to_owned())
                .and_then(checked_region)
                .map(str::to_owned),
        }
    }

    /// The endpoint of `service` in `region`: the override variables, else the regional one.
    pub fn endpoint(&self, service: Service, region: &str) -> Result<reqwest::Url, String> {
        let (specific, variable) = match service {
            Service::CloudWatch => (
                self.env.cloudwatch_endpoint_url.as_deref(),
                "AWS_ENDPOINT_URL_CLOUDWATCH",
            ),
            Service::Sts => (self.env.sts_endpoint_url.as_deref(), "AWS_ENDPOINT_URL_STS"),
        };
        let (written, source) = match (specific, self.env.endpoint_url.as_deref()) {
            (Some(url), _) => (url.to_owned(), variable),
            (None, Some(url)) => (url.to_owned(), "AWS_ENDPOINT_URL"),
            (None, None) => {
                let region = checked_region(region)?;
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                (
                    format!("https://{}.{region}.{suffix}/", service.signing_name()),
                    "the region",
                )
            }
        };
        let url = reqwest::Url::parse(&written)
            .map_err(|e| format!("the endpoint {written:?} from {source} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "the endpoint {written:?} from {source} must be an http or https URL with a host"
            ));
        }
        Ok(url)
    }

    /// The credentials to sign with: the chain described in the module, then, with `role_arn`,
    /// the role assumed with them. Temporary credentials come from the cache while fresh.
    pub async fn credentials(
        &self,
        profile: Option<&str>,
        role_arn: Option<&str>,
        region: &str,
    ) -> Result<AwsCredentials, String> {
        let base = self.base_credentials(profile, region).await?;
        match role_arn.map(str::trim).filter(|r| !r.is_empty()) {
            Some(role) => self.assume_role(&base, role, region).await,
            None => Ok(base),
        }
    }

    /// The credentials of the chain, before any role of the metric is assumed.
    async fn base_credentials(
        &self,
        profile: Option<&str>,
        region: &str,
    ) -> Result<AwsCredentials, String> {
        if let Some(profile) = profile.map(str::trim).filter(|p| !p.is_empty()) {
            return self
                .profile_credentials(profile)
                .await?
                .ok_or_else(|| format!("AWS profile {profile:?} has no access keys in the shared credentials or config file"));
        }
        let env = &self.env;
        match (&env.access_key_id, &env.secret_access_key) {
            (Some(key), Some(secret)) => {
                return Ok(AwsCredentials::new(
                    key,
                    secret,
                    env.session_token.as_deref(),
                ));
            }
            (Some(_), None) => {
                return Err("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY".to_owned());
            }
            (None, Some(_)) => {
                return Err("AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID".to_owned());
            }
            (None, None) => {}
        }
        match (&env.role_arn, &env.web_identity_token_file) {
            (Some(role), Some(file)) => return self.web_identity(role, file, region).await,
            (None, Some(_)) => {
                return Err("AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN".to_owned());
            }
            _ => {}
        }
        let profile = env.profile.as_deref().unwrap_or("default");
        if let Some(found) = self.profile_credentials(profile).await? {
            return Ok(found);
        }
        if let Some(uri) = &env.container_credentials_uri {
            return self.container_credentials(uri).await;
        }
        let mut tried = String::new();
        if let Some(endpoint) = &env.ec2_metadata_endpoint {
            match self.instance_credentials(endpoint).await {
                Ok(found) => return Ok(found),
                Err(why) => tried = format!("; the instance metadata service: {why}"),
            }
        }
        Err(format!(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
             AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (IAM roles for service accounts), or \
             use EKS Pod Identity or an instance role{tried}"
        ))
    }

    /// EKS Pod Identity and ECS task roles: the credentials the endpoint `uri` answers, sent the
    /// authorization token when there is one; from the cache while fresh.
    async fn container_credentials(&self, uri: &str) -> Result<AwsCredentials, String> {
        let url = container_credentials_url(uri)?;
        let key = format!("container|{url}");
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(&key).filter(|c| c.fresh(Timestamp::now())) {
            return Ok(cached.clone());
        }
        let token = match &self.env.container_authorization_token_file {
            Some(file) => Some(read_optional(file).await?.ok_or_else(|| {
                format!(
                    "the container authorization token file {} does not exist",
                    file.display()
                )
            })?),
            None => self.env.container_authorization_token.clone(),
        };
        let mut request = self.http.get(url.clone()).timeout(METADATA_TIMEOUT);
        if let Some(token) = token.as_deref().map(str::trim) {
            if token.contains(['\r', '\n']) {
                return Err("the container authorization token holds a line break".to_owned());
            }
            request = request.header(reqwest::header::AUTHORIZATION, token);
        }
        let what = format!("the container credentials endpoint {url}");
        let fetched = self.metadata_json(request, &what).await?;
        tracing::debug!(expires_at = ?fetched.expires_at, "read container credentials");
        cache.insert(key, fetched.clone());
        Ok(fetched)
    }

    /// An EC2 instance role, through IMDSv2 at `endpoint`: a session token, the role's name,
    /// then its credentials; from the cache while fresh.
    async fn instance_credentials(&self, endpoint: &str) -> Result<AwsCredentials, String> {
        let base = reqwest::Url::parse(endpoint)
            .map_err(|e| format!("the endpoint {endpoint:?} is not a URL: {e}"))?;
        let key = format!("imds|{base}");
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(&key).filter(|c| c.fresh(Timestamp::now())) {
            return Ok(cached.clone());
        }
        let join = |path: &str| {
            base.join(path)
                .map_err(|e| format!("the endpoint {endpoint:?} cannot take {path}: {e}"))
        };
        let answer = |response: Result<reqwest::Response, reqwest::Error>, what: &str| {
            let what = what.to_owned();
            async move {
                let response = response.map_err(|e| format!("{what}: {}", error_chain(&e)))?;
                let status = response.status();
                let body = body::read_bounded(response, self.max_bytes)
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
                if !status.is_success() {
                    return Err(format!("{what} answered {status}"));
                }
                Ok(String::from_utf8_lossy(&body).trim().to_owned())
            }
        };
        let token_url = join("latest/api/token")?;
        let token = answer(
            self.http
                .put(token_url)
                .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                .timeout(METADATA_TIMEOUT)
                .send()
                .await,
            "a session token",
        )
        .await?;
        let roles_url = join("latest/meta-data/iam/security-credentials/")?;
        let roles = answer(
            self.http
                .get(roles_url)
                .header("x-aws-ec2-metadata-token", &token)
                .timeout(METADATA_TIMEOUT)
                .send()
                .await,
            "the instance's role",
        )
        .await?;
        let role = roles
            .lines()
            .map(str::trim)
            .find(|r| !r.is_empty())
            .ok_or_else(|| "the instance has no role".to_owned())?;
        if role.contains(['/', '?', '#']) {
            return Err(format!("the instance's role {role:?} is not a role name"));
        }
        let role_url = join(&format!("latest/meta-data/iam/security-credentials/{role}"))?;
        let request = self
            .http
            .get(role_url)
            .header("x-aws-ec2-metadata-token", &token)
            .timeout(METADATA_TIMEOUT);
        let fetched = self
            .metadata_json(
                request,
                &format!("the credentials of the instance role {role}"),
            )
            .await?;
        tracing::debug!(role, expires_at = ?fetched.expires_at, "read instance role credentials");
        cache.insert(key, fetched.clone());
        Ok(fetched)
    }

    /// Sends `request` and reads the credentials JSON both metadata services answer.
    async fn metadata_json(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<AwsCredentials, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("{what}: {}", error_chain(&e)))?;
        let status = response.status();
        let answer = body::read_bounded(response, self.max_bytes)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        parse_metadata_credentials(what, status, &answer)
    }

    /// The static keys of `profile` in the shared credentials file, else the config file.
    async fn profile_credentials(&self, profile: &str) -> Result<Option<AwsCredentials>, String> {
        let credentials = match &self.env.shared_credentials_file {
            Some(path) => read_optional(path).await?,
            None => None,
        };
        if let Some(found) = credentials
            .as_deref()
            .and_then(|text| profile_keys(text, profile, false))
        {
            return Ok(Some(found));
        }
        let config = match &self.env.config_file {
            Some(path) => read_optional(path).await?,
            None => None,
        };
        Ok(config
            .as_deref()
            .and_then(|text| profile_keys(text, profile, true)))
    }

    /// IRSA: the role of `AWS_ROLE_ARN` for the token in `token_file`, from the cache while fresh.
    async fn web_identity(
        &self,
        role_arn: &str,
        token_file: &Path,
        region: &str,
    ) -> Result<AwsCredentials, String> {
        let key = format!("web-identity|{role_arn}|{}|{region}", token_file.display());
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(&key).filter(|c| c.fresh(Timestamp::now())) {
            return Ok(cached.clone());
        }
        let token = read_optional(token_file).await?.ok_or_else(|| {
            format!(
                "the web identity token file {} does not exist",
                token_file.display()
            )
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!(
                "the web identity token file {} is empty",
                token_file.display()
            ));
        }
        let session = self.session_name();
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("RoleArn", role_arn),
            ("RoleSessionName", session.as_str()),
            ("Version", STS_VERSION),
            ("WebIdentityToken", token),
        ];
        let fetched = self
            .sts("AssumeRoleWithWebIdentity", &form, None, region)
            .await?;
        tracing::debug!(role = role_arn, expires_at = ?fetched.expires_at, "assumed the web identity role");
        cache.insert(key, fetched.clone());
        Ok(fetched)
    }

    /// `sigv4.roleArn`: the role assumed with `base`, from the cache while fresh.
    async fn assume_role(
        &self,
        base: &AwsCredentials,
        role_arn: &str,
        region: &str,
    ) -> Result<AwsCredentials, String> {
        let key = format!("assume-role|{role_arn}|{}|{region}", base.access_key_id);
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(&key).filter(|c| c.fresh(Timestamp::now())) {
            return Ok(cached.clone());
        }
        let session = self.session_name();
        let form = [
            ("Action", "AssumeRole"),
            ("RoleArn", role_arn),
            ("RoleSessionName", session.as_str()),
            ("Version", STS_VERSION),
        ];
        let fetched = self.sts("AssumeRole", &form, Some(base), region).await?;
        tracing::debug!(role = role_arn, expires_at = ?fetched.expires_at, "assumed the role");
        cache.insert(key, fetched.clone());
        Ok(fetched)
    }

    /// `AWS_ROLE_SESSION_NAME`, else one naming Sluice and the time.
    fn session_name(&self) -> String {
        self.env
            .role_session_name
            .clone()
            .unwrap_or_else(|| format!("sluice-{}", Timestamp::now().as_second()))
    }

    /// Calls STS `action` with `form` (signed with `signer` when given) and reads the
    /// credentials it answers.
    async fn sts(
        &self,
        action: &str,
        form: &[(&str, &str)],
        signer: Option<&AwsCredentials>,
        region: &str,
    ) -> Result<AwsCredentials, String> {
        let url = self.endpoint(Service::Sts, region)?;
        let body = query_string(form);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut request = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(credentials) = signer {
            let headers = [("content-type", content_type)];
            let signable = Signable {
                method: "POST",
                url: &url,
                headers: &headers,
                body: body.as_bytes(),
            };
            let region = checked_region(region)?;
            for (name, value) in sign(
                &signable,
                credentials,
                region,
                Service::Sts.signing_name(),
                SystemTime::now(),
            )? {
                request = request.header(name, value);
            }
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("STS {action} at {url}: {}", error_chain(&e)))?;
        let status = response.status();
        let answer = body::read_bounded(response, self.max_bytes)
            .await
            .map_err(|e| format!("STS {action} at {url}: {e}"))?;
        parse_sts_answer(action, status, &answer)
    }
}

/// A small file's text (a token, a shared credentials file), `None` when it does not exist;
/// a file larger than [`MAX_FILE_BYTES`] is refused.
async fn read_optional(path: &Path) -> Result<Option<String>, String> {
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// The static keys of `profile` in a shared credentials file (`[name]`) or, with `config`, a
/// config file (`[profile name]`, `[default]`); `None` when the profile has no keys there.
fn profile_keys(text: &str, profile: &str, config: bool) -> Option<AwsCredentials> {
    let wanted = |section: &str| {
        let section = section.trim();
        if config && profile != "default" {
            section
                .strip_prefix("profile")
                .is_some_and(|rest| rest.starts_with(char::is_whitespace) && rest.trim() == profile)
        } else {
            section == profile
        }
    };
    let mut inside = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = wanted(section);
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = value.trim().to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => key = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(key), Some(secret)) if !key.is_empty() && !secret.is_empty() => {
            Some(AwsCredentials::new(&key, &secret, token.as_deref()))
        }
        _ => None,
    }
}

/// The text of the first element named `name` under `node`.
fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.descendants()
        .find(|n| n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::trim)
}

/// The credentials in an STS answer to `action` (`<Credentials>` with `AccessKeyId`,
/// The container credentials endpoint `uri`, refused unless the token can only reach the
/// container's own agent: https, a loopback host, or ECS's and EKS's link-local addresses.
fn container_credentials_url(uri: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(uri)
        .map_err(|e| format!("the container credentials URI {uri:?} is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let allowed = url.scheme() == "https"
        || (url.scheme() == "http" && (loopback || CONTAINER_CREDENTIALS_HOSTS.contains(&host)));
    if allowed && !host.is_empty() {
        Ok(url)
    } else {
        Err(format!(
            "the container credentials URI {uri:?} must be https, or http to a loopback address \
             or to ECS's or EKS Pod Identity's agent"
        ))
    }
}

/// The credentials a container credentials endpoint or the instance metadata service answers:
/// JSON with `AccessKeyId`, `SecretAccessKey`, `Token` and `Expiration` (and, from IMDS,
/// `Code: Success`).
fn parse_metadata_credentials(
    what: &str,
    status: reqwest::StatusCode,
    answer: &[u8],
) -> Result<AwsCredentials, String> {
    let value: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
    let text = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
    };
    if !status.is_success() {
        let reason = text("message")
            .or_else(|| text("Message"))
            .unwrap_or("no reason given");
        return Err(format!("{what} answered {status}: {reason}"));
    }
    if !value.is_object() {
        return Err(format!("{what} answered something that is not JSON"));
    }
    if let Some(code) = text("Code").filter(|c| *c != "Success") {
        return Err(format!(
            "{what} answered {code}: {}",
            text("Message").unwrap_or("no reason given")
        ));
    }
    let field = |name: &str| text(name).ok_or_else(|| format!("{what} answered no {name}"));
    let expires_at = match text("Expiration") {
        Some(expiration) => Some(expiration.parse::<Timestamp>().map_err(|e| {
            format!("{what} answered an expiration that is not a time ({expiration:?}): {e}")
        })?),
        None => None,
    };
    Ok(AwsCredentials {
        access_key_id: field("AccessKeyId")?.to_owned(),
        secret_access_key: field("SecretAccessKey")?.to_owned(),
        session_token: text("Token").map(str::to_owned),
        expires_at,
    })
}

/// `SecretAccessKey`, `SessionToken`, `Expiration`), or STS' error (`Code: Message`).
fn parse_sts_answer(
    action: &str,
    status: reqwest::StatusCode,
    answer: &[u8],
) -> Result<AwsCredentials, String> {
    let text = std::str::from_utf8(answer).unwrap_or_default();
    let document = roxmltree::Document::parse(text);
    let root = document.as_ref().ok().map(|d| d.root());
    if let Some(error) = root.and_then(|r| r.descendants().find(|n| n.has_tag_name("Error"))) {
        return Err(format!(
            "STS {action} answered {status}: {}: {}",
            child_text(error, "Code").unwrap_or("error"),
            child_text(error, "Message").unwrap_or("no reason given")
        ));
    }
    if !status.is_success() {
        return Err(format!("STS {action} answered {status}"));
    }
    let root = match &document {
        Ok(document) => document.root(),
        Err(e) => {
            return Err(format!(
                "STS {action} answered XML that could not be read: {e}"
            ));
        }
    };
    let credentials = root
        .descendants()
        .find(|n| n.has_tag_name("Credentials"))
        .ok_or_else(|| format!("STS {action} answered without credentials"))?;
    let field = |name: &str| {
        child_text(credentials, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("STS {action} answered credentials without {name}"))
    };
    let expiration = field("Expiration")?;
    let expires_at = expiration.parse::<Timestamp>().map_err(|e| {
        format!("STS {action} answered an expiration that is not a time ({expiration:?}): {e}")
    })?;
    Ok(AwsCredentials {
        access_key_id: field("AccessKeyId")?.to_owned(),
        secret_access_key: field("SecretAccessKey")?.to_owned(),
        session_token: Some(field("SessionToken")?.to_owned()),
        expires_at: Some(expires_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS' published SigV4 test suite, `get-vanilla`: the signer produces AWS' own signature.
    #[test]
    fn signs_as_the_aws_test_suite_says() {
        let credentials = AwsCredentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        );
        let url = reqwest::Url::parse("https://example.amazonaws.com/").unwrap();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let headers = sign(
            &Signable {
                method: "GET",
                url: &url,
                headers: &[],
                body: b"",
            },
            &credentials,
            "us-east-1",
            "service",
            time,
        )
        .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(get("x-amz-security-token"), None);

        let temporary = AwsCredentials::new("AKID", "secret", Some("the-token"));
        let headers = sign(
            &Signable {
                method: "GET",
                url: &url,
                headers: &[],
                body: b"",
            },
            &temporary,
            "us-east-1",
            "service",
            time,
        )
        .unwrap();
        assert!(
            headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("x-amz-security-token") && v == "the-token")
        );
        assert!(headers.iter().any(|(n, v)| n == "authorization"
            && v.contains("SignedHeaders=host;x-amz-date;x-amz-security-token")));
    }

    #[test]
    fn query_strings_are_encoded_as_sigv4_canonicalises_them() {
        assert_eq!(
            query_string(&[("query", "sum(rate(x[5m])) / 2"), ("a~b", "c-d_e.f")]),
            "query=sum%28rate%28x%5B5m%5D%29%29%20%2F%202&a~b=c-d_e.f"
        );
    }

    #[test]
    fn regions_are_names_not_hosts() {
        assert_eq!(checked_region(" eu-west-1 "), Ok("eu-west-1"));
        for bad in ["", "evil.com/", "us-east-1#", "US-EAST-1", "a b"] {
            assert!(checked_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_environment_is_read_as_the_sdks_read_it() {
        let vars = |name: &str| {
            match name {
                "AWS_DEFAULT_REGION" => Some("eu-west-1"),
                "AWS_ROLE_ARN" => Some("arn:aws:iam::1:role/r"),
                "AWS_WEB_IDENTITY_TOKEN_FILE" => Some("/var/run/token"),
                "AWS_ENDPOINT_URL_CLOUDWATCH" => Some("http://127.0.0.1:1"),
                "AWS_ACCESS_KEY_ID" => Some("  "),
                "HOME" => Some("/home/sluice"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let env = AwsEnv::from_lookup(vars);
        assert_eq!(env.region.as_deref(), Some("eu-west-1"));
        assert_eq!(env.access_key_id, None, "blank is unset");
        assert_eq!(
            env.web_identity_token_file,
            Some(PathBuf::from("/var/run/token"))
        );
        assert_eq!(
            env.shared_credentials_file,
            Some(PathBuf::from("/home/sluice/.aws/credentials"))
        );
        super::super::ensure_crypto_provider();
        let aws = Aws::new(env, reqwest::Client::new(), 1024);
        assert_eq!(
            aws.endpoint(Service::CloudWatch, "eu-west-1")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1/"
        );
        assert_eq!(
            aws.endpoint(Service::Sts, "eu-west-1").unwrap().as_str(),
            "https://sts.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            aws.endpoint(Service::Sts, "cn-north-1").unwrap().as_str(),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        assert!(aws.endpoint(Service::Sts, "x.evil.com/").is_err());
        assert_eq!(aws.region(Some("us-west-2")), Ok("us-west-2".to_owned()));
        assert_eq!(aws.region(None), Ok("eu-west-1".to_owned()));
        let none = Aws::new(AwsEnv::default(), reqwest::Client::new(), 1024);
        assert!(none.region(None).unwrap_err().contains("AWS_REGION"));
    }

    #[test]
    fn container_and_instance_settings_are_read_as_the_sdks_read_them() {
        let env = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            AwsEnv::from_lookup(|name| vars.get(name).cloned())
        };
        let eks = env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            ),
        ]);
        assert_eq!(
            eks.container_credentials_uri.as_deref(),
            Some("http://169.254.170.23/v1/credentials")
        );
        assert!(eks.container_authorization_token_file.is_some());
        assert_eq!(
            eks.ec2_metadata_endpoint.as_deref(),
            Some("http://169.254.169.254")
        );
        let ecs = env(&[(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/abc",
        )]);
        assert_eq!(
            ecs.container_credentials_uri.as_deref(),
            Some("http://169.254.170.2/v2/credentials/abc")
        );
        let off = env(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]);
        assert_eq!(off.ec2_metadata_endpoint, None);
        let moved = env(&[(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://[fd00:ec2::254]",
        )]);
        assert_eq!(
            moved.ec2_metadata_endpoint.as_deref(),
            Some("http://[fd00:ec2::254]")
        );
        // Written by a test: no instance metadata unless it says where.
        assert_eq!(AwsEnv::default().ec2_metadata_endpoint, None);
    }

    #[test]
    fn the_container_credentials_token_only_travels_to_the_containers_agent() {
        for allowed in [
            "http://169.254.170.2/v2/credentials/x",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://127.0.0.1:8080/creds",
            "http://[::1]/creds",
            "http://localhost/creds",
            "https://creds.example.com/",
        ] {
            assert!(container_credentials_url(allowed).is_ok(), "{allowed}");
        }
        for refused in [
            "http://creds.example.com/",
            "http://10.0.0.1/",
            "file:///etc/passwd",
            "no url",
        ] {
            assert!(container_credentials_url(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn metadata_answers_and_errors() {
        let ok = br#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","Expiration":"2030-01-01T00:00:00Z"}"#;
        let found = parse_metadata_credentials("imds", reqwest::StatusCode::OK, ok).unwrap();
        assert_eq!(found.access_key_id, "ASIA1");
        assert_eq!(found.session_token.as_deref(), Some("t"));
        assert!(found.expires_at.is_some());
        let failed = br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"denied"}"#;
        assert_eq!(
            parse_metadata_credentials("imds", reqwest::StatusCode::OK, failed).unwrap_err(),
            "imds answered AssumeRoleUnauthorizedAccess: denied"
        );
        assert!(
            parse_metadata_credentials("x", reqwest::StatusCode::OK, b"<html>")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_metadata_credentials("x", reqwest::StatusCode::OK, br#"{"AccessKeyId":"a"}"#)
                .unwrap_err()
                .contains("no SecretAccessKey")
        );
    }

    #[test]
    fn profiles_are_read_from_the_shared_files() {
        let credentials = "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n\
                           # a comment\n[team]\naws_access_key_id=AKTEAM\naws_secret_access_key=s2\naws_session_token=t2\n";
        let team = profile_keys(credentials, "team", false).unwrap();
        assert_eq!(team.access_key_id, "AKTEAM");
        assert_eq!(team.session_token.as_deref(), Some("t2"));
        assert_eq!(
            profile_keys(credentials, "default", false)
                .unwrap()
                .access_key_id,
            "AKDEFAULT"
        );
        assert!(profile_keys(credentials, "other", false).is_none());
        let config = "[default]\nregion = us-east-1\n[profile ops]\naws_access_key_id = AKOPS\naws_secret_access_key = s3\n[ops]\naws_access_key_id = WRONG\n";
        assert_eq!(
            profile_keys(config, "ops", true).unwrap().access_key_id,
            "AKOPS"
        );
        assert!(
            profile_keys(config, "default", true).is_none(),
            "no keys there"
        );
        assert!(!format!("{team:?}").contains("s2") && !format!("{team:?}").contains("t2"));
    }

    #[test]
    fn sts_answers_and_errors() {
        let ok = br#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:argo-rollouts:argo-rollouts</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2031-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        let credentials =
            parse_sts_answer("AssumeRoleWithWebIdentity", reqwest::StatusCode::OK, ok).unwrap();
        assert_eq!(credentials.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            credentials.session_token.as_deref(),
            Some("FwoGZXIvYXdzEXAMPLE")
        );
        assert_eq!(
            credentials.expires_at(),
            Some("2031-10-24T23:00:23Z".parse().unwrap())
        );
        assert!(credentials.fresh(Timestamp::now()));
        assert!(!credentials.fresh("2031-10-24T22:56:00Z".parse().unwrap()));

        let refused = br#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key from your identity provider</Message></Error>
  <RequestId>1</RequestId></ErrorResponse>"#;
        assert_eq!(
            parse_sts_answer(
                "AssumeRoleWithWebIdentity",
                reqwest::StatusCode::BAD_REQUEST,
                refused
            )
            .unwrap_err(),
            "STS AssumeRoleWithWebIdentity answered 400 Bad Request: InvalidIdentityToken: \
             Couldn't retrieve verification key from your identity provider"
        );
        assert_eq!(
            parse_sts_answer("AssumeRole", reqwest::StatusCode::BAD_GATEWAY, b"oops").unwrap_err(),
            "STS AssumeRole answered 502 Bad Gateway"
        );
        assert!(
            parse_sts_answer("AssumeRole", reqwest::StatusCode::OK, b"<a/>")
                .unwrap_err()
                .contains("without credentials")
        );
        let no_token = br#"<R><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey><Expiration>2031-01-01T00:00:00Z</Expiration></Credentials></R>"#;
        assert!(
            parse_sts_answer("AssumeRole", reqwest::StatusCode::OK, no_token)
                .unwrap_err()
                .contains("SessionToken")
        );
        let dtd = br#"<!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>"#;
        assert!(parse_sts_answer("AssumeRole", reqwest::StatusCode::OK, dtd).is_err());
    }
}
