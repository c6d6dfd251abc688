//! The cloudWatch provider against a local AWS the test controls ([`FakeAws`]): CloudWatch's
//! `GetMetricData` in AWS JSON 1.0 and STS (`AssumeRoleWithWebIdentity`, `AssumeRole`, answered
//! in XML as STS answers), every signed request checked by recomputing its SigV4 signature
//! with `aws-sigv4` from the keys the server knows. [`FakeAws`] also fronts the real Prometheus
//! as Amazon Managed Prometheus would (service `aps`) for the Prometheus sigv4 tests.
//!
//! AWS settings are injected (the registry's [`Context::aws`]); no test changes the
//! process environment.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Router,
    body::Bytes,
    extract::Request,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use jiff::Timestamp;
use serde_json::{Value, json};
use sluice::analysis::{
    evaluator::Evaluator,
    pass::run_pass,
    providers::{Context, Providers, RunRef, aws::AwsEnv, ensure_crypto_provider},
};
use sluice_analysis::{args::NoSecrets, limits::AnalysisLimits, plan};
use sluice_api::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric,
};

use super::{message, metric, web::WebServer};

/// The long-term keys the fake AWS knows.
pub const ACCESS_KEY: &str = "AKIDSLUICETEST";
/// Their secret.
pub const SECRET_KEY: &str = "sluice/test/secret+key";
/// The role IRSA and `sigv4.roleArn` assume.
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/sluice-analysis";
/// The projected service account token STS accepts.
pub const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.sluice-test-token.sig";

/// The token EKS Pod Identity's fake agent accepts.
pub const POD_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.pod-identity.sig";
/// The session token the fake instance metadata service hands out.
const IMDS_SESSION: &str = "AQAEAImdsSessionToken==";
/// The role of the fake instance.
const INSTANCE_ROLE: &str = "sluice-node-role";

/// One set of keys the fake AWS accepts.
#[derive(Clone)]
struct Key {
    secret: String,
    token: Option<String>,
}

/// A request the fake AWS received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What GetMetricData answers.
#[derive(Clone)]
pub enum Answer {
    /// These `MetricDataResults`, one list a page, chained by `NextToken`.
    Pages(Vec<Value>),
    /// A `NextToken` on every page.
    Endless,
    /// `400 Throttling`.
    Throttled,
    /// Nothing for 5 seconds.
    Slow,
    /// `200` with a body that is not JSON.
    Garbage,
}

/// The state of the fake AWS, shared with its handlers.
pub struct State {
    keys: Mutex<HashMap<String, Key>>,
    issued: AtomicUsize,
    /// Every request received, in order.
    pub requests: Mutex<Vec<Recorded>>,
    /// How many times STS answered with credentials.
    pub sts_calls: AtomicUsize,
    /// What GetMetricData answers.
    pub answer: Mutex<Answer>,
    /// The Prometheus that signed `/api/v1/...` requests are forwarded to.
    pub upstream: Mutex<Option<String>>,
}

/// A local AWS: CloudWatch, STS and an Amazon Managed Prometheus front, on a thread of its own.
pub struct FakeAws {
    server: WebServer,
    pub state: Arc<State>,
}

impl FakeAws {
    /// Starts it, knowing [`ACCESS_KEY`]; GetMetricData answers `answer`.
    pub fn start(answer: Answer) -> Self {
        ensure_crypto_provider();
        let state = Arc::new(State {
            keys: Mutex::new(HashMap::from([(
                ACCESS_KEY.to_owned(),
                Key {
                    secret: SECRET_KEY.to_owned(),
                    token: None,
                },
            )])),
            issued: AtomicUsize::new(0),
            requests: Mutex::default(),
            sts_calls: AtomicUsize::new(0),
            answer: Mutex::new(answer),
            upstream: Mutex::default(),
        });
        let shared = state.clone();
        let app = Router::new().fallback(move |request: Request| handle(shared.clone(), request));
        Self {
            server: WebServer::serve("127.0.0.1", app, Default::default()),
            state,
        }
    }

    /// A URL on the fake AWS.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Settings with the long-term keys in the environment, endpoints here.
    pub fn static_env(&self) -> AwsEnv {
        AwsEnv {
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            ..self.endpoints()
        }
    }

    /// Settings with the endpoints here and nothing else.
    pub fn endpoints(&self) -> AwsEnv {
        AwsEnv {
            cloudwatch_endpoint_url: Some(self.url("/")),
            sts_endpoint_url: Some(self.url("/sts/")),
            ..AwsEnv::default()
        }
    }

    /// The requests received so far whose path starts with `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path_and_query.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// An AWS JSON error, as CloudWatch (a query-compatible JSON service) answers it.
fn json_error(status: StatusCode, code: &str, text: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                "application/x-amz-json-1.0".to_owned(),
            ),
            (
                header::HeaderName::from_static("x-amzn-query-error"),
                format!("{code};Sender"),
            ),
        ],
        json!({"__type": format!("com.amazon.coral.service#{code}"), "message": text}).to_string(),
    )
        .into_response()
}

/// An STS error, in XML.
fn sts_error(status: StatusCode, code: &str, text: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{text}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    );
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// Why a signature was refused: status, AWS error code, message.
type Refusal = (StatusCode, &'static str, String);

/// Checks a request's SigV4 signature as AWS does: the scope names `service` and `region`, the
/// key is known (with its session token, for temporary keys), and the signature recomputed
/// with `aws-sigv4` from the request as received equals the one sent. Returns the access key.
fn verify(
    state: &State,
    recorded: &Recorded,
    service: &str,
    region: &str,
) -> Result<String, Refusal> {
    use aws_sigv4::{
        http_request::{SignableBody, SignableRequest, SigningSettings, sign},
        sign::v4,
    };
    let refuse = |code: &'static str, text: &str| (StatusCode::FORBIDDEN, code, text.to_owned());
    let header = |name: &str| {
        recorded
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let authorization = header("authorization");
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| refuse("MissingAuthenticationToken", "Missing Authentication Token"))?;
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_owned()
    };
    let scope: Vec<String> = field("Credential").split('/').map(str::to_owned).collect();
    let signed_headers = field("SignedHeaders");
    let [access_key, date, scope_region, scope_service, terminator] = scope.as_slice() else {
        return Err(refuse("IncompleteSignature", "bad credential scope"));
    };
    if scope_region != region || scope_service != service || terminator != "aws4_request" {
        return Err(refuse(
            "SignatureDoesNotMatch",
            &format!("Credential should be scoped to {region}/{service}"),
        ));
    }
    let key = state
        .keys
        .lock()
        .unwrap()
        .get(access_key)
        .cloned()
        .ok_or_else(|| {
            refuse(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
        })?;
    let token = header("x-amz-security-token");
    if key.token.as_deref().unwrap_or_default() != token {
        return Err(refuse(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    }
    let amz_date = header("x-amz-date");
    if !amz_date.starts_with(date.as_str()) {
        return Err(refuse("SignatureDoesNotMatch", "date does not match"));
    }
    let time = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", &amz_date)
        .and_then(|t| t.to_datetime())
        .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC))
        .map_err(|_| refuse("IncompleteSignature", "bad X-Amz-Date"))?;
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(refuse(
                "SignatureDoesNotMatch",
                "host and date must be signed",
            ));
        }
    }
    let values: Vec<(String, String)> = names
        .iter()
        .filter(|n| !matches!(**n, "x-amz-date" | "x-amz-security-token"))
        .map(|n| ((*n).to_owned(), header(n)))
        .collect();
    let identity = aws_credential_types::Credentials::new(
        access_key.clone(),
        key.secret.clone(),
        key.token.clone(),
        None,
        "fake-aws",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::from(time.timestamp()))
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{}{}", header("host"), recorded.path_and_query);
    let request = SignableRequest::new(
        &recorded.method,
        url,
        values.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(&recorded.body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let expected = instructions
        .headers()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    if expected != authorization {
        return Err(refuse(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(access_key.clone())
}

async fn handle(state: Arc<State>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    state.requests.lock().unwrap().push(recorded.clone());
    if recorded.path_and_query.starts_with("/sts") {
        sts(&state, &recorded)
    } else if recorded.path_and_query.starts_with("/pod-identity") {
        pod_identity(&state, &recorded)
    } else if recorded.path_and_query.starts_with("/latest/") {
        instance_metadata(&state, &recorded)
    } else if recorded.headers.contains_key("x-amz-target") {
        get_metric_data(&state, &recorded).await
    } else {
        managed_prometheus(&state, &recorded).await
    }
}

/// STS: `AssumeRoleWithWebIdentity` (unsigned, checks the token) and `AssumeRole` (signed).
fn sts(state: &State, recorded: &Recorded) -> Response {
    let form: HashMap<String, String> = reqwest::Url::parse(&format!(
        "http://form/?{}",
        String::from_utf8_lossy(&recorded.body)
    ))
    .unwrap()
    .query_pairs()
    .into_owned()
    .collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if recorded.method != "POST"
        || get("Version") != "2011-06-15"
        || get("RoleSessionName").is_empty()
    {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "bad request",
        );
    }
    match get("Action") {
        "AssumeRoleWithWebIdentity" => {
            if recorded.headers.contains_key("authorization") {
                return sts_error(StatusCode::BAD_REQUEST, "InvalidParameterValue", "signed");
            }
            if get("WebIdentityToken") != WEB_IDENTITY_TOKEN {
                return sts_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdentityToken",
                    "Couldn't retrieve verification key from your identity provider",
                );
            }
        }
        "AssumeRole" => {
            if let Err((status, code, text)) = verify(state, recorded, "sts", "us-west-2") {
                return sts_error(status, code, &text);
            }
        }
        _ => return sts_error(StatusCode::BAD_REQUEST, "InvalidAction", "unknown action"),
    }
    if get("RoleArn") != ROLE_ARN {
        return sts_error(StatusCode::FORBIDDEN, "AccessDenied", "not authorized");
    }
    let issued = issue_credentials(state);
    let field = |name: &str| issued[name].as_str().unwrap_or_default().to_owned();
    let (key, secret, token, expiration) = (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("Token"),
        field("Expiration"),
    );
    state.sts_calls.fetch_add(1, Ordering::SeqCst);
    let action = get("Action");
    let body = format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
         </{action}Result><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{action}Response>",
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// Temporary keys the fake AWS now accepts, as the JSON both metadata services answer them in.
fn issue_credentials(state: &State) -> Value {
    let n = state.issued.fetch_add(1, Ordering::SeqCst);
    let (key, secret, token) = (
        format!("ASIATEMP{n}"),
        format!("temp/secret+{n}"),
        format!("temp-token-{n}"),
    );
    state.keys.lock().unwrap().insert(
        key.clone(),
        Key {
            secret: secret.clone(),
            token: Some(token.clone()),
        },
    );
    let expiration = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    json!({
        "AccessKeyId": key,
        "SecretAccessKey": secret,
        "Token": token,
        "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}

/// A JSON answer.
fn json_answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// EKS Pod Identity's agent: `GET /pod-identity` with the projected token as `Authorization`.
fn pod_identity(state: &State, recorded: &Recorded) -> Response {
    let authorization = recorded
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if recorded.method != "GET" || authorization != Some(POD_IDENTITY_TOKEN) {
        return json_answer(
            StatusCode::UNAUTHORIZED,
            &json!({ "message": "Authorization token is invalid" }),
        );
    }
    json_answer(StatusCode::OK, &issue_credentials(state))
}

/// The instance metadata service, IMDSv2: a session token by PUT, then the role and its
/// credentials for requests carrying it.
fn instance_metadata(state: &State, recorded: &Recorded) -> Response {
    let header = |n: &str| recorded.headers.get(n).and_then(|v| v.to_str().ok());
    match (recorded.method.as_str(), recorded.path_and_query.as_str()) {
        ("PUT", "/latest/api/token")
            if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
        {
            IMDS_SESSION.into_response()
        }
        ("GET", path) if header("x-aws-ec2-metadata-token") != Some(IMDS_SESSION) => (
            StatusCode::UNAUTHORIZED,
            format!("no session token for {path}"),
        )
            .into_response(),
        ("GET", "/latest/meta-data/iam/security-credentials/") => INSTANCE_ROLE.into_response(),
        ("GET", path)
            if path == format!("/latest/meta-data/iam/security-credentials/{INSTANCE_ROLE}") =>
        {
            let mut answer = issue_credentials(state);
            answer["Code"] = "Success".into();
            answer["Type"] = "AWS-HMAC".into();
            json_answer(StatusCode::OK, &answer)
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// CloudWatch `GetMetricData` in AWS JSON 1.0.
async fn get_metric_data(state: &State, recorded: &Recorded) -> Response {
    let header = |n: &str| recorded.headers.get(n).and_then(|v| v.to_str().ok());
    if recorded.method != "POST"
        || recorded.path_and_query != "/"
        || header("x-amz-target") != Some("GraniteServiceVersion20100801.GetMetricData")
        || header("content-type") != Some("application/x-amz-json-1.0")
    {
        return json_error(StatusCode::BAD_REQUEST, "UnknownOperationException", "?");
    }
    if let Err((status, code, text)) = verify(state, recorded, "monitoring", "us-east-1") {
        return json_error(status, code, &text);
    }
    let Ok(request) = serde_json::from_slice::<Value>(&recorded.body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "not JSON",
        );
    };
    let page: usize = request["NextToken"]
        .as_str()
        .and_then(|t| t.strip_prefix("page-")?.parse().ok())
        .unwrap_or(0);
    let answer = state.answer.lock().unwrap().clone();
    match answer {
        Answer::Pages(pages) => {
            let mut body = json!({"MetricDataResults": pages.get(page).cloned().unwrap_or(json!([])), "Messages": []});
            if page + 1 < pages.len() {
                body["NextToken"] = json!(format!("page-{}", page + 1));
            }
            (
                [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
                body.to_string(),
            )
                .into_response()
        }
        Answer::Endless => {
            let body = json!({"MetricDataResults": [{"Id": "rate", "StatusCode": "PartialData",
                "Timestamps": [1714564800], "Values": [1]}], "NextToken": format!("page-{}", page + 1)});
            (
                [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
                body.to_string(),
            )
                .into_response()
        }
        Answer::Throttled => json_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded"),
        Answer::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late".into_response()
        }
        Answer::Garbage => (StatusCode::OK, "<html>not json</html>").into_response(),
    }
}

/// Amazon Managed Prometheus: a signed `GET` (service `aps`, `us-west-2`) of a workspace
/// forwarded to the real Prometheus; an unsigned or wrongly signed one refused as AMP refuses it.
async fn managed_prometheus(state: &State, recorded: &Recorded) -> Response {
    if let Err((status, code, text)) = verify(state, recorded, "aps", "us-west-2") {
        return (
            status,
            [(header::HeaderName::from_static("x-amzn-errortype"), code)],
            json!({"message": text}).to_string(),
        )
            .into_response();
    }
    let upstream = state.upstream.lock().unwrap().clone().unwrap_or_default();
    // `/workspaces/<id>/api/v1/...` is the workspace's `/api/v1/...`.
    let path = recorded
        .path_and_query
        .strip_prefix("/workspaces/")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(&recorded.path_and_query);
    let forwarded = reqwest::Client::new()
        .get(format!("{upstream}{path}"))
        .send()
        .await;
    match forwarded {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            let body = answer.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Providers built with the AWS settings `env`, within `limits`.
pub fn providers_with(env: AwsEnv, limits: &AnalysisLimits) -> Providers {
    Providers::with(Context {
        client: None,
        limits: limits.clone(),
        evaluator: Evaluator::new(Default::default()),
        namespace: "unused".into(),
        aws: env,
    })
    .expect("providers")
}

async fn measure_with(env: AwsEnv, metric: &Metric) -> Measurement {
    providers_with(env, &AnalysisLimits::default())
        .measure(&RunRef::default(), metric, 1)
        .await
}

fn cloudwatch_metric(interval: Option<&str>, conditions: Value) -> Metric {
    let mut provider = json!({"metricDataQueries": [
        {"id": "rate", "expression": "errors / requests", "label": "Error rate"},
        {"id": "errors", "returnData": false, "metricStat": {
            "metric": {"namespace": "app", "metricName": "errors",
                       "dimensions": [{"name": "Service", "value": "api"}]},
            "period": 300, "stat": "Sum", "unit": "Count"}},
    ]});
    if let Some(interval) = interval {
        provider["interval"] = json!(interval);
    }
    let mut m = json!({"name": "cw", "provider": {"cloudWatch": provider}});
    if let (Some(m), Some(c)) = (m.as_object_mut(), conditions.as_object()) {
        m.extend(c.clone());
    }
    metric(m)
}

/// Two datapoints of the error rate, newest first.
fn rate_page(values: Value) -> Value {
    json!([{"Id": "rate", "Label": "Error rate", "StatusCode": "Complete",
            "Timestamps": [1714565100, 1714564800], "Values": values}])
}

#[tokio::test]
async fn cloudwatch_signed_get_metric_data_success_and_failure() {
    let aws = FakeAws::start(Answer::Pages(vec![rate_page(json!([0.005, 0.002]))]));
    let ok = cloudwatch_metric(
        Some("15m"),
        json!({"successCondition": "all(result[0].Values, {# <= 0.01}) && result[0].Id == 'rate' \
            && result[0].StatusCode == 'Complete' && result[0].Label == 'Error rate' \
            && result[0].Timestamps[0] == '2024-05-01T12:05:00Z' && len(result) == 1"}),
    );
    let m = measure_with(aws.static_env(), &ok).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[[0.005 0.002]]"));
    assert!(m.started_at.is_some() && m.finished_at.is_some());

    let failing = cloudwatch_metric(
        None,
        json!({"successCondition": "result[0].Values[0] < 0.001"}),
    );
    let m = measure_with(aws.static_env(), &failing).await;
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:?}");

    // The requests: signed for monitoring in us-east-1 with the long-term key, the queries
    // written as GetMetricData's, over the interval (15m, then Argo's default 5m).
    let requests = aws.requests("/");
    assert_eq!(requests.len(), 2);
    for (request, seconds) in requests.iter().zip([900, 300]) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path_and_query, "/");
        let authorization = request.headers["authorization"].to_str().unwrap();
        let today = Timestamp::now().strftime("%Y%m%d").to_string();
        assert!(
            authorization.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{today}/us-east-1/monitoring/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
            )),
            "{authorization}"
        );
        assert!(!request.headers.contains_key("x-amz-security-token"));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body["MetricDataQueries"],
            json!([
                {"Id": "rate", "Expression": "errors / requests", "Label": "Error rate"},
                {"Id": "errors", "ReturnData": false, "MetricStat": {
                    "Metric": {"Namespace": "app", "MetricName": "errors",
                               "Dimensions": [{"Name": "Service", "Value": "api"}]},
                    "Period": 300, "Stat": "Sum", "Unit": "Count"}},
            ])
        );
        let (start, end) = (
            body["StartTime"].as_i64().unwrap(),
            body["EndTime"].as_i64().unwrap(),
        );
        assert_eq!(end - start, seconds);
        assert!((Timestamp::now().as_second() - end).abs() < 60);
        assert!(body.get("NextToken").is_none());
    }
}

#[tokio::test]
async fn cloudwatch_refusals_no_data_and_bad_answers_are_errors() {
    let aws = FakeAws::start(Answer::Pages(vec![rate_page(json!([0.005]))]));
    let m_ok = cloudwatch_metric(None, json!({"successCondition": "result[0].Values[0] < 1"}));

    // A wrong secret: AWS recomputes another signature.
    let wrong_secret = AwsEnv {
        secret_access_key: Some("not-the-secret".into()),
        ..aws.static_env()
    };
    let m = measure_with(wrong_secret, &m_ok).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("403 Forbidden: SignatureDoesNotMatch"),
        "{m:?}"
    );
    assert!(!message(&m).contains("not-the-secret"));

    // A key AWS does not know.
    let unknown = AwsEnv {
        access_key_id: Some("AKIDUNKNOWN".into()),
        ..aws.static_env()
    };
    let m = measure_with(unknown, &m_ok).await;
    assert!(message(&m).contains("InvalidClientTokenId"), "{m:?}");

    // No region, no credentials: nothing is sent.
    let before = aws.requests("/").len();
    let m = measure_with(
        AwsEnv {
            region: None,
            ..aws.static_env()
        },
        &m_ok,
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error);
    assert!(
        message(&m).contains("AWS region is not configured"),
        "{m:?}"
    );
    let m = measure_with(
        AwsEnv {
            region: Some("us-east-1".into()),
            ..aws.endpoints()
        },
        &m_ok,
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Error);
    assert!(message(&m).contains("no AWS credentials found"), "{m:?}");
    let half = AwsEnv {
        secret_access_key: None,
        ..aws.static_env()
    };
    assert!(message(&measure_with(half, &m_ok).await).contains("without AWS_SECRET_ACCESS_KEY"));
    assert_eq!(aws.requests("/").len(), before);

    // No datapoints: an Error, never `all(...)` holding on nothing.
    *aws.state.answer.lock().unwrap() = Answer::Pages(vec![rate_page(json!([]))]);
    let vacuous = cloudwatch_metric(
        None,
        json!({"successCondition": "all(result[0].Values, {# <= 0.01})"}),
    );
    let m = measure_with(aws.static_env(), &vacuous).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert_eq!(message(&m), "cloudWatch returned no datapoints for rate");

    // Throttling, a body that is not JSON.
    *aws.state.answer.lock().unwrap() = Answer::Throttled;
    let m = measure_with(aws.static_env(), &m_ok).await;
    assert_eq!(m.phase, AnalysisPhase::Error);
    assert_eq!(
        message(&m),
        "cloudWatch GetMetricData answered 400 Bad Request: Throttling: Rate exceeded"
    );
    *aws.state.answer.lock().unwrap() = Answer::Garbage;
    let m = measure_with(aws.static_env(), &m_ok).await;
    assert!(message(&m).contains("not a GetMetricData result"), "{m:?}");

    // A condition indexing past the data is an Error too.
    *aws.state.answer.lock().unwrap() = Answer::Pages(vec![rate_page(json!([0.005]))]);
    let past = cloudwatch_metric(None, json!({"successCondition": "result[1].Values[0] < 1"}));
    assert_eq!(
        measure_with(aws.static_env(), &past).await.phase,
        AnalysisPhase::Error
    );

    // Unreachable.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    drop(silent);
    let gone = AwsEnv {
        cloudwatch_endpoint_url: Some(format!("http://127.0.0.1:{port}/")),
        ..aws.static_env()
    };
    let m = measure_with(gone, &m_ok).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).starts_with("cloudWatch GetMetricData at http://127.0.0.1"),
        "{m:?}"
    );
}

#[tokio::test]
async fn cloudwatch_waits_no_longer_than_the_controllers_cap() {
    let aws = FakeAws::start(Answer::Slow);
    let capped = AnalysisLimits {
        max_timeout: Duration::from_secs(1),
        ..AnalysisLimits::default()
    };
    let started = Instant::now();
    let m = providers_with(aws.static_env(), &capped)
        .measure(&RunRef::default(), &cloudwatch_metric(None, json!({})), 1)
        .await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).ends_with("within 1s"), "{m:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn cloudwatch_follows_next_token_within_a_bound() {
    let aws = FakeAws::start(Answer::Pages(vec![
        json!([{"Id": "rate", "StatusCode": "PartialData", "Timestamps": [3, 2], "Values": [0.3, 0.2]}]),
        json!([{"Id": "rate", "StatusCode": "Complete", "Timestamps": [1], "Values": [0.1]}]),
    ]));
    let m = measure_with(
        aws.static_env(),
        &cloudwatch_metric(None, json!({"successCondition": "len(result[0].Values) == 3 && result[0].StatusCode == 'Complete'"})),
    )
    .await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert_eq!(m.value.as_deref(), Some("[[0.3 0.2 0.1]]"));
    let requests = aws.requests("/");
    let second: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(second["NextToken"], "page-1");

    *aws.state.answer.lock().unwrap() = Answer::Endless;
    let m = measure_with(aws.static_env(), &cloudwatch_metric(None, json!({}))).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(message(&m).contains("more than 10 pages"), "{m:?}");
    assert_eq!(aws.requests("/").len(), 2 + 10);
}

#[tokio::test]
async fn cloudwatch_with_irsa_uses_the_web_identity_role() {
    let aws = FakeAws::start(Answer::Pages(vec![rate_page(json!([0.005]))]));
    let dir = std::env::temp_dir().join(format!("sluice-irsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{WEB_IDENTITY_TOKEN}\n")).unwrap();
    let irsa = AwsEnv {
        region: Some("us-east-1".into()),
        role_arn: Some(ROLE_ARN.into()),
        web_identity_token_file: Some(token_file.clone()),
        role_session_name: Some("sluice-test".into()),
        ..aws.endpoints()
    };
    let providers = providers_with(irsa.clone(), &AnalysisLimits::default());
    let ok = cloudwatch_metric(
        None,
        json!({"successCondition": "result[0].Values[0] < 0.01"}),
    );
    for _ in 0..2 {
        let m = providers.measure(&RunRef::default(), &ok, 1).await;
        assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    }
    // One exchange for both measurements: the credentials are cached until shortly before they
    // expire. The exchange is the SDKs': unsigned, the token and role in a form.
    assert_eq!(aws.state.sts_calls.load(Ordering::SeqCst), 1);
    let sts = aws.requests("/sts");
    assert_eq!(sts.len(), 1);
    let form = String::from_utf8_lossy(&sts[0].body).into_owned();
    assert!(form.contains("Action=AssumeRoleWithWebIdentity"), "{form}");
    assert!(form.contains("RoleSessionName=sluice-test"), "{form}");
    assert!(
        form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fsluice-analysis"),
        "{form}"
    );
    // GetMetricData is signed with the temporary key and carries its session token.
    for request in aws.requests("/").iter().filter(|r| r.path_and_query == "/") {
        let authorization = request.headers["authorization"].to_str().unwrap();
        assert!(
            authorization.contains("Credential=ASIATEMP0/"),
            "{authorization}"
        );
        assert!(
            authorization.contains("x-amz-security-token"),
            "{authorization}"
        );
        assert_eq!(request.headers["x-amz-security-token"], "temp-token-0");
    }

    // A token STS refuses: an Error with STS' reason, never the token.
    std::fs::write(&token_file, "not-a-valid-token").unwrap();
    let m = measure_with(irsa.clone(), &ok).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains(
            "STS AssumeRoleWithWebIdentity answered 400 Bad Request: InvalidIdentityToken"
        ),
        "{m:?}"
    );
    assert!(!message(&m).contains("not-a-valid-token"));
    // A missing token file.
    std::fs::remove_file(&token_file).unwrap();
    let m = measure_with(irsa, &ok).await;
    assert!(message(&m).contains("does not exist"), "{m:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cloudwatch_with_pod_identity_or_an_instance_role_uses_their_credentials() {
    let aws = FakeAws::start(Answer::Pages(vec![rate_page(json!([0.005]))]));
    let ok = cloudwatch_metric(
        None,
        json!({"successCondition": "result[0].Values[0] < 0.01"}),
    );
    let signed_with = |key: &str| {
        aws.requests("/")
            .iter()
            .filter(|r| r.path_and_query == "/")
            .any(|r| {
                r.headers["authorization"]
                    .to_str()
                    .unwrap()
                    .contains(&format!("Credential={key}/"))
            })
    };

    // EKS Pod Identity: the agent's URL and the projected token's file, as EKS sets them.
    let dir = std::env::temp_dir().join(format!("sluice-pod-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("eks-pod-identity-token");
    std::fs::write(&token_file, POD_IDENTITY_TOKEN).unwrap();
    let pod_identity = AwsEnv {
        region: Some("us-east-1".into()),
        container_credentials_uri: Some(aws.url("/pod-identity")),
        container_authorization_token_file: Some(token_file.clone()),
        ..aws.endpoints()
    };
    let providers = providers_with(pod_identity.clone(), &AnalysisLimits::default());
    for _ in 0..2 {
        let m = providers.measure(&RunRef::default(), &ok, 1).await;
        assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    }
    assert_eq!(aws.requests("/pod-identity").len(), 1, "cached while fresh");
    assert!(signed_with("ASIATEMP0"));
    // A token the agent refuses: an Error with its reason, never the token.
    std::fs::write(&token_file, "stale").unwrap();
    let m = measure_with(pod_identity.clone(), &ok).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("401 Unauthorized: Authorization token is invalid"),
        "{m:?}"
    );
    assert!(!message(&m).contains("stale"));
    // An endpoint the token must not travel to in the clear.
    let elsewhere = AwsEnv {
        container_credentials_uri: Some("http://metadata.example.com/creds".into()),
        ..pod_identity
    };
    let m = measure_with(elsewhere, &ok).await;
    assert!(message(&m).contains("must be https"), "{m:?}");
    let _ = std::fs::remove_dir_all(&dir);

    // An instance role through IMDSv2 (no other credentials in the chain).
    let instance = AwsEnv {
        region: Some("us-east-1".into()),
        ec2_metadata_endpoint: Some(aws.url("/")),
        ..aws.endpoints()
    };
    let m = measure_with(instance, &ok).await;
    assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
    assert!(signed_with("ASIATEMP1"));
    let metadata: Vec<String> = aws
        .requests("/latest/")
        .iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect();
    assert_eq!(
        metadata,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/sluice-node-role",
        ]
    );
    // No instance metadata service where it is looked for: an Error saying so, fast.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = AwsEnv {
        region: Some("us-east-1".into()),
        ec2_metadata_endpoint: Some(format!("http://{}/", silent.local_addr().unwrap())),
        ..aws.endpoints()
    };
    let started = Instant::now();
    let m = measure_with(nowhere, &ok).await;
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:?}");
    assert!(
        message(&m).contains("no AWS credentials found")
            && message(&m).contains("the instance metadata service"),
        "{m:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// Drives a run through [`run_pass`] with `providers` until it completes.
async fn drive_with(providers: &Providers, spec: Value) -> AnalysisRunStatus {
    let spec: AnalysisRunSpec = serde_json::from_value(spec).expect("a run spec");
    let mut run = AnalysisRun::new("run", spec);
    for _ in 0..30 {
        let pass = run_pass(&run, providers, &NoSecrets, None).await;
        let status = pass.status.clone();
        run.status = Some(pass.status);
        if status.phase.is_completed() && plan::settled(&status) {
            return status;
        }
        if let Some(next) = pass.requeue_at {
            let wait = next.duration_since(Timestamp::now());
            tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
        }
    }
    panic!("the run did not complete: {:?}", run.status);
}

#[tokio::test]
async fn a_run_passes_and_fails_end_to_end_against_cloudwatch() {
    let aws = FakeAws::start(Answer::Pages(vec![rate_page(json!([0.005, 0.002]))]));
    let providers = providers_with(aws.static_env(), &AnalysisLimits::default());
    let spec = |threshold: &str| {
        json!({
            "args": [{"name": "threshold", "value": threshold}],
            "metrics": [{
                "name": "error-rate",
                "interval": "1s",
                "count": 2,
                "successCondition": "all(result[0].Values, {# <= {{args.threshold}}})",
                "provider": {"cloudWatch": {"interval": "10m", "metricDataQueries": [
                    {"id": "rate", "expression": "errors / requests"}]}},
            }],
        })
    };
    let passed = drive_with(&providers, spec("0.01")).await;
    assert_eq!(passed.phase, AnalysisPhase::Successful, "{passed:?}");
    let result = &passed.metric_results[0];
    assert_eq!((result.count, result.successful), (Some(2), Some(2)));

    let failed = drive_with(&providers, spec("0.001")).await;
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    assert_eq!(
        failed.message.as_deref(),
        Some("Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)")
    );
}
