//! The HTTP face of the store: REST paths, query parameters, content types,
//! `Status` errors and chunked watch streams, as the real API server has them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

use crate::registry::{Registry, ResourceKey};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Part, PatchKind, Store};
use crate::{Error, Result};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

type Body = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) async fn serve(listener: TcpListener, store: Arc<Store>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let store = Arc::clone(&store);
                async move { Ok::<_, Infallible>(handle(&store, request).await) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!("test API server connection: {err}");
            }
        });
    }
}

/// A request's target, parsed from its path.
struct Target {
    key: ResourceKey,
    namespace: Option<String>,
    name: Option<String>,
    part: Part,
}

async fn handle(store: &Arc<Store>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = parse_query(request.uri().query().unwrap_or_default());
    // `pods/exec` upgrades the connection to a WebSocket (GET, or POST as
    // older clients send it).
    if let ["api", "v1", "namespaces", namespace, "pods", pod, "exec"] = path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
        && matches!(method, Method::GET | Method::POST)
    {
        return match crate::exec::exec(store, request, namespace, pod, &query) {
            Ok(response) => response.map(|()| Full::new(Bytes::new()).boxed_unsync()),
            Err(err) => error_response(&err),
        };
    }
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return error_response(&Error::BadRequest(format!("reading the body: {err}"))),
    };
    match route(store, &method, &path, &query, &content_type, &body).await {
        Ok(response) => response,
        Err(err) => error_response(&err),
    }
}

async fn route(
    store: &Store,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    content_type: &str,
    body: &Bytes,
) -> Result<Response<Body>> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => return Ok(json_response(StatusCode::OK, &version())),
        ["api"] => return Ok(json_response(StatusCode::OK, &Registry::core_versions())),
        ["apis"] => return Ok(json_response(StatusCode::OK, &store.discovery_groups())),
        ["api", "v1"] => return discovery(store, "", "v1"),
        ["apis", group, version] => return discovery(store, group, version),
        _ => {}
    }
    let target = parse_target(&segments)?;
    let info = store.resource(&target.key).ok_or_else(|| {
        Error::NotFound(format!(
            "the server could not find the requested resource ({path})"
        ))
    })?;
    if target.part == Part::Status && !info.status_subresource {
        return Err(Error::NotFound(format!(
            "{path}: the resource has no status subresource"
        )));
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let namespace = target.namespace.as_deref();
    match (method, target.name.as_deref()) {
        (&Method::GET, None) if param("watch").is_some_and(|w| w == "true" || w == "1") => watch(
            store,
            &target,
            param("resourceVersion"),
            param("labelSelector"),
            param("fieldSelector"),
            param("allowWatchBookmarks") == Some("true"),
            param("timeoutSeconds"),
        ),
        (&Method::GET, None) => {
            let labels = LabelSelector::parse(param("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(param("fieldSelector").unwrap_or_default())?;
            let (items, revision) = store.list(&target.key, namespace, &labels, &fields)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", info.kind),
                    "apiVersion": target.key.api_version(),
                    "metadata": {"resourceVersion": revision.to_string()},
                    "items": items,
                }),
            ))
        }
        (&Method::GET, Some(name)) => Ok(json_response(
            StatusCode::OK,
            &store.get(&target.key, namespace, name)?,
        )),
        (&Method::POST, None) => {
            let object = store.create(&target.key, namespace, parse_json(body)?)?;
            Ok(json_response(StatusCode::CREATED, &object))
        }
        (&Method::PUT, Some(name)) => {
            let object =
                store.update(&target.key, namespace, name, parse_json(body)?, target.part)?;
            Ok(json_response(StatusCode::OK, &object))
        }
        (&Method::PATCH, Some(name)) => {
            let media = content_type.split(';').next().unwrap_or_default().trim();
            let (kind, patch) = match media {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    (PatchKind::Merge, parse_json(body)?)
                }
                "application/json-patch+json" => (PatchKind::Json, parse_json(body)?),
                "application/apply-patch+yaml" | "application/apply-patch+json" => {
                    (PatchKind::Apply, parse_yaml(body)?)
                }
                other => {
                    return Err(Error::BadRequest(format!(
                        "unsupported patch content type {other:?}"
                    )));
                }
            };
            let object = store.patch(
                &target.key,
                namespace,
                name,
                kind,
                patch,
                target.part,
                param("fieldManager"),
            )?;
            Ok(json_response(StatusCode::OK, &object))
        }
        (&Method::DELETE, Some(name)) => {
            let options: Value = if body.is_empty() {
                Value::Null
            } else {
                parse_json(body)?
            };
            let orphan = options["propagationPolicy"].as_str() == Some("Orphan")
                || param("propagationPolicy") == Some("Orphan");
            let object = store.delete(&target.key, namespace, name, orphan)?;
            Ok(json_response(StatusCode::OK, &object))
        }
        (method, _) => Err(Error::MethodNotAllowed(format!("{method} {path}"))),
    }
}

fn discovery(store: &Store, group: &str, version: &str) -> Result<Response<Body>> {
    let list = store
        .discovery_resources(group, version)
        .ok_or_else(|| Error::NotFound(format!("no resources in {group}/{version}")))?;
    Ok(json_response(StatusCode::OK, &list))
}

/// `/api/v1/...` or `/apis/GROUP/VERSION/...`, then `[namespaces/NS/]PLURAL[/NAME[/status]]`.
fn parse_target(segments: &[&str]) -> Result<Target> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(Error::NotFound(format!("/{}", segments.join("/")))),
    };
    let (namespace, rest) = match rest {
        // `namespaces/NAME` and `namespaces/NAME/status` are the Namespace
        // object itself; anything longer is a resource inside it.
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" => (Some(ns.to_string()), {
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }),
        other => (None, other.to_vec()),
    };
    let (plural, name, part) = match rest.as_slice() {
        [plural] => (*plural, None, Part::Main),
        [plural, name] => (*plural, Some(name.to_string()), Part::Main),
        [plural, name, "status"] => (*plural, Some(name.to_string()), Part::Status),
        _ => return Err(Error::NotFound(format!("/{}", segments.join("/")))),
    };
    Ok(Target {
        key: ResourceKey::new(group, version, plural),
        namespace,
        name,
        part,
    })
}

fn watch(
    store: &Store,
    target: &Target,
    resource_version: Option<&str>,
    label_selector: Option<&str>,
    field_selector: Option<&str>,
    bookmarks: bool,
    timeout_seconds: Option<&str>,
) -> Result<Response<Body>> {
    let labels = LabelSelector::parse(label_selector.unwrap_or_default())?;
    let fields = FieldSelector::parse(field_selector.unwrap_or_default())?;
    let from = match resource_version {
        None | Some("" | "0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| Error::BadRequest(format!("invalid resourceVersion {v:?}")))?,
        ),
    };
    let start = match store.watch(&target.key, target.namespace.as_deref(), from) {
        Ok(start) => start,
        // The real server answers an expired watch with a 200 stream holding
        // one ERROR event; clients (kube-rs's watcher) then list again.
        Err(err @ Error::Expired { .. }) => {
            let line = watch_line("ERROR", &status_object(&err));
            let stream = futures::stream::iter([Ok::<_, Infallible>(Frame::data(line))]);
            return Ok(stream_response(StreamBody::new(stream).boxed_unsync()));
        }
        Err(err) => return Err(err),
    };
    let timeout = timeout_seconds
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    let api_version = target.key.api_version();
    let kind = store
        .resource(&target.key)
        .map(|i| i.kind)
        .unwrap_or_default();
    let namespace = target.namespace.clone();
    let key = target.key.clone();
    let selects = move |object: &Value| {
        labels.matches(&object["metadata"]["labels"]) && fields.matches(object)
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut last = from.unwrap_or(0);
        for event in start.backlog {
            last = last.max(event.revision);
            if selects(&event.object)
                && sender
                    .send(watch_line(event.kind, &event.object))
                    .await
                    .is_err()
            {
                return;
            }
        }
        let mut live = start.live;
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({"apiVersion": api_version, "kind": kind,
                        "metadata": {"resourceVersion": last.to_string()}});
                    if sender.send(watch_line("BOOKMARK", &bookmark)).await.is_err() {
                        return;
                    }
                }
                received = live.recv() => match received {
                    Ok(event) => {
                        let ours = event.resource.0 == key.group && event.resource.1 == key.plural
                            && namespace.as_deref().is_none_or(|n| n == event.namespace);
                        // The backlog may already hold what was committed
                        // while it was computed.
                        if !ours || event.revision <= last {
                            continue;
                        }
                        last = event.revision;
                        if selects(&event.object) && sender.send(watch_line(event.kind, &event.object)).await.is_err() {
                            return;
                        }
                    }
                    // A watcher too slow for the channel is cut off, as the
                    // real server does; the client resumes from its last
                    // version.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                },
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Frame::data(line)), receiver))
    });
    Ok(stream_response(StreamBody::new(stream).boxed_unsync()))
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    Bytes::from(line)
}

fn stream_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid response")
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).expect("JSON values serialize");
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed_unsync())
        .expect("a valid response")
}

fn status_object(err: &Error) -> Value {
    let (code, reason) = match err {
        Error::NotFound(_) => (404, "NotFound"),
        Error::AlreadyExists(_) => (409, "AlreadyExists"),
        Error::Conflict(_) => (409, "Conflict"),
        Error::Expired { .. } => (410, "Expired"),
        Error::BadRequest(_) => (400, "BadRequest"),
        Error::Invalid(_) => (422, "Invalid"),
        Error::MethodNotAllowed(_) => (405, "MethodNotAllowed"),
        Error::Io(_) => (500, "InternalError"),
    };
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": err.to_string(), "reason": reason, "code": code})
}

fn error_response(err: &Error) -> Response<Body> {
    let status = status_object(err);
    let code = StatusCode::from_u16(status["code"].as_u64().unwrap_or(500) as u16)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &status)
}

fn version() -> Value {
    json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0-arca-testcluster", "gitCommit": "",
           "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "none",
           "compiler": "none", "platform": "linux/amd64"})
}

fn parse_json(body: &Bytes) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|err| Error::BadRequest(format!("invalid JSON body: {err}")))
}

/// Apply patches are YAML (of which JSON is a subset).
fn parse_yaml(body: &Bytes) -> Result<Value> {
    serde_json::from_slice(body).or_else(|_| {
        serde_norway::from_slice(body)
            .map_err(|err| Error::BadRequest(format!("invalid YAML body: {err}")))
    })
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(byte) => {
                    out.push(byte);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources_namespaces_and_subresources() {
        let target = parse_target(&[
            "apis",
            "batch",
            "v1",
            "namespaces",
            "ns",
            "jobs",
            "j",
            "status",
        ])
        .unwrap();
        assert_eq!(target.key, ResourceKey::new("batch", "v1", "jobs"));
        assert_eq!(target.namespace.as_deref(), Some("ns"));
        assert_eq!(target.name.as_deref(), Some("j"));
        assert_eq!(target.part, Part::Status);
        let namespace = parse_target(&["api", "v1", "namespaces", "ns"]).unwrap();
        assert_eq!(namespace.key.plural, "namespaces");
        assert_eq!(namespace.name.as_deref(), Some("ns"));
        assert_eq!(namespace.namespace, None);
        let status = parse_target(&["api", "v1", "namespaces", "ns", "status"]).unwrap();
        assert_eq!(
            (status.name.as_deref(), status.part),
            (Some("ns"), Part::Status)
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let query = parse_query("labelSelector=app%3Ddb%2Ctier+in+(a)&watch=true&x=%");
        assert_eq!(
            query[0],
            ("labelSelector".into(), "app=db,tier in (a)".into())
        );
        assert_eq!(query[1], ("watch".into(), "true".into()));
        assert_eq!(query[2], ("x".into(), "%".into()));
    }
}
