//! A scripted Kubernetes API server over kube's mock transport, for tests: every request the
//! client sends is recorded and answered by a function of the request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::Client;
use ::kube::client::Body;
use ::kube::runtime::events::{Recorder, Reporter};
use http::{Request, Response};
use serde_json::{Value, json};

/// One request as the API server saw it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    /// The JSON body; `Null` when there is none.
    pub body: Value,
}

impl Exchange {
    /// `METHOD path`, for comparing sequences.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    pub fn query_has(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }

    /// A server-side apply with the operator's field manager, taking over conflicts.
    pub fn is_server_side_apply(&self) -> bool {
        self.method == "PATCH"
            && self.content_type == "application/apply-patch+yaml"
            && self.query_has("fieldManager=lagless-operator")
            && self.query_has("force=true")
    }
}

/// `METHOD path` of each of `requests`, for comparing sequences.
pub fn lines(requests: &[Exchange]) -> Vec<String> {
    requests.iter().map(Exchange::line).collect()
}

/// Answers like an API server that holds `object` at `path` and nothing else: objects
/// applied are echoed back, reads of anything else are 404.
pub fn holding(
    path: &'static str,
    object: Value,
) -> impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static {
    move |request: &Exchange| {
        if request.path.starts_with(path) {
            return (200, object.clone());
        }
        match request.method.as_str() {
            "GET" => status(404, "NotFound"),
            _ => (200, request.body.clone()),
        }
    }
}

/// An Event recorder on `client`, as the operator's.
pub fn recorder(client: Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: crate::kube::common::FIELD_MANAGER.into(),
            instance: Some("test".into()),
        },
    )
}

/// A `Status` failure body with `code`.
pub fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code,
        }),
    )
}

/// The recorded requests of one test.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Exchange>>>);

impl Recorded {
    pub fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A client whose requests go to `respond`; `respond` returns the status code and JSON body.
pub fn client(
    respond: impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static,
) -> (Client, Recorded) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let recorded = Recorded::default();
    let log = recorded.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let exchange = Exchange {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body: if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                },
            };
            let (code, body) = respond(&exchange);
            log.0.lock().unwrap().push(exchange);
            let response = Response::builder()
                .status(code)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), recorded)
}

/// Runs `fut` with a deadline, so a request nobody answers fails the test instead of hanging.
pub async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("the test finished in time")
}
