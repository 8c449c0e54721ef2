//! `pods/exec`: a command run in a pod, over the WebSocket protocol kube-rs's
//! client (and kubectl) speak.
//!
//! The request is `GET /api/v1/namespaces/NS/pods/NAME/exec?command=…&command=…
//! &container=…&stdout=true&stderr=true` with a WebSocket upgrade offering the
//! subprotocols `v5.channel.k8s.io` and `v4.channel.k8s.io`; the server picks
//! v5 when offered, else v4. Each binary frame starts with its channel: 1
//! stdout, 2 stderr, and 3 the exit status as a `metav1.Status` (`Success`,
//! or `Failure` with reason `NonZeroExitCode` and the code as the cause
//! `ExitCode`), after which the server closes the connection.
//!
//! The command runs as a local process in the kubelet stand-in's notion of
//! the pod: with the container's environment, its working directory (a path
//! under a mount translated, else the pod's own directory), and every argument
//! that is a path under one of the container's mounts rewritten to the
//! directory behind it, so `touch /data/marker` reaches the application's
//! claim. The program is one the test registered under that name, else found
//! on `PATH`. Not built: stdin and tty (refused), and the real kubelet's
//! habit of leaving a command running when the client goes away (here it is
//! killed).

use std::process::Stdio;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::kubelet::{ContainerContext, pod_dir};
use crate::registry::ResourceKey;
use crate::store::Store;
use crate::{Error, Result};

/// The subprotocols served, preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// Checks the request, answers `101 Switching Protocols` and runs the
/// command on the upgraded connection; an invalid request gets the error
/// the real server gives, before any upgrade.
pub(crate) fn exec(
    store: &Arc<Store>,
    request: Request<Incoming>,
    namespace: &str,
    pod_name: &str,
    query: &[(String, String)],
) -> Result<Response<()>> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let pod = store.get(
        &ResourceKey::new("", "v1", "pods"),
        Some(namespace),
        pod_name,
    )?;
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return Err(Error::BadRequest(
            "you must specify at least 1 command".into(),
        ));
    }
    if param("stdin") == Some("true") || param("tty") == Some("true") {
        return Err(Error::BadRequest(
            "stdin and tty are not supported by this test server".into(),
        ));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Running" {
        return Err(Error::BadRequest(format!(
            "cannot exec into a container in a pod that is not running; current phase is {phase}"
        )));
    }
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let container = match param("container") {
        Some(wanted) => containers
            .iter()
            .find(|c| c["name"].as_str() == Some(wanted))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "container {wanted} is not valid for pod {pod_name}"
                ))
            })?,
        None => containers
            .first()
            .ok_or_else(|| Error::BadRequest(format!("pod {pod_name} has no containers")))?,
    }
    .clone();
    let config = store.kubelet().cloned().ok_or_else(|| {
        Error::BadRequest(
            "no kubelet stand-in runs in this test cluster: nothing to exec in".into(),
        )
    })?;

    let headers = request.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (true, Some(accept)) = (upgrade, key) else {
        return Err(Error::BadRequest("Upgrade request required".into()));
    };
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    let protocol = PROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "none of the offered subprotocols {offered:?} is supported (v5.channel.k8s.io, v4.channel.k8s.io)"
            ))
        })?;

    let store = Arc::clone(store);
    let namespace = namespace.to_string();
    let pod_name = pod_name.to_string();
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!("pods/exec upgrade: {err}");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let started = ContainerContext::new(
            &store,
            &config,
            &namespace,
            &pod_name,
            &pod["spec"],
            &container,
            Vec::new(),
        )
        .await
        .and_then(|context| {
            let working_dir = container["workingDir"]
                .as_str()
                .map(|dir| context.translate(dir))
                .map_or_else(|| pod_dir(&config, &namespace, &pod_name), Into::into);
            let (program, args) = command.split_first().expect("checked non-empty");
            let program = config
                .programs
                .get(program)
                .map_or_else(|| program.into(), |p| p.as_os_str().to_owned());
            Command::new(program)
                .args(args.iter().map(|a| context.translate(a)))
                .current_dir(working_dir)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(&config.extra_env)
                .envs(&context.env)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|err| {
                    Error::Invalid(format!(
                        "exec: {:?}: {err}",
                        command.first().map(String::as_str).unwrap_or_default()
                    ))
                })
        });
        serve(socket, started, &command).await;
    });

    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        )
        .body(())
        .expect("a valid response"))
}

/// Streams the process's output as channel frames, then its status; a
/// client that goes away kills the process.
async fn serve<S>(socket: WebSocketStream<S>, started: Result<Child>, command: &[String])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    let mut child = match started {
        Ok(child) => child,
        Err(err) => {
            let status = json!({"metadata": {}, "status": "Failure", "message": err.to_string(),
                "reason": "InternalError", "code": 500});
            let _ = sink
                .send(frame(STATUS, &status.to_string().into_bytes()))
                .await;
            let _ = sink.close().await;
            return;
        }
    };
    let (frames, mut outgoing) = mpsc::channel::<Message>(16);
    tokio::spawn(pump(child.stdout.take(), STDOUT, frames.clone()));
    tokio::spawn(pump(child.stderr.take(), STDERR, frames));
    loop {
        tokio::select! {
            next = outgoing.recv() => match next {
                Some(message) => if sink.send(message).await.is_err() {
                    return; // the child is killed on drop
                },
                None => break,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let status = match child.wait().await {
        Ok(exit) => exit_status(exit.code().unwrap_or(137), command),
        Err(err) => json!({"metadata": {}, "status": "Failure", "message": err.to_string(),
            "reason": "InternalError", "code": 500}),
    };
    let _ = sink
        .send(frame(STATUS, &status.to_string().into_bytes()))
        .await;
    let _ = sink.close().await;
}

/// The status the kubelet reports for an exited command.
fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({"metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

/// Sends what `reader` yields as frames of `channel` until it ends.
async fn pump(reader: Option<impl AsyncRead + Unpin>, channel: u8, frames: mpsc::Sender<Message>) {
    let Some(mut reader) = reader else { return };
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if frames.send(frame(channel, &buffer[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_the_kubelets() {
        assert_eq!(exit_status(0, &[])["status"], "Success");
        let failed = exit_status(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }
}
