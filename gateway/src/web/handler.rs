//! The proxy's per-request logic (hudsucker handlers).
//!
//! hudsucker gives each browser connection its own handler value: the one that saw a CONNECT is
//! the one that handles the requests inside that tunnel, so the CONNECT's session and policy
//! decision ([`Tunnel`]) travel with it. Each exchange is recorded as an `http` event when its
//! response body ends (or is cut short), with the status, sizes and timing.

use super::body::{Counted, Tap};
use super::pages;
use super::recorder;
use super::redact;
use super::session::{ensure_recording, Refusal, WebSession};
use super::WebGateway;
use super::{page, reserved};
use hudsucker::hyper::http::uri::Authority;
use hudsucker::hyper::{header, Method, Request, Response};
use hudsucker::tokio_tungstenite::tungstenite::Message;
use hudsucker::{
    Body, HttpContext, HttpHandler, RequestOrResponse, WebSocketContext, WebSocketHandler,
};
use psmgate_codecs::transcript::{EventKind, HttpExchange};
use psmgate_policy::{WebAction, WebDecision};
use std::sync::Arc;
use std::time::Instant;

/// What a CONNECT established for the requests inside its tunnel.
#[derive(Debug)]
pub struct Tunnel {
    session: Arc<WebSession>,
    host: String,
    /// The `host:port` the browser asked for.
    authority: Authority,
    decision: WebDecision,
}

/// A request on its way, waiting for its response.
struct Pending {
    session: Arc<WebSession>,
    /// `scheme://host:port` of the request.
    origin: String,
    /// An HTML response gets the in-page recorder.
    inject: bool,
    started: Instant,
    event: HttpExchange,
    request_body: Arc<Tap>,
    request_type: Option<String>,
    record_bodies: bool,
    navigation: bool,
}

/// The HTTP handler.
#[derive(Clone)]
pub struct Handler {
    gw: Arc<WebGateway>,
    tunnel: Option<Arc<Tunnel>>,
    pending: Option<Arc<std::sync::Mutex<Option<Pending>>>>,
}

impl Handler {
    /// A handler for a new browser connection.
    pub fn new(gw: Arc<WebGateway>) -> Self {
        Handler {
            gw,
            tunnel: None,
            pending: None,
        }
    }

    fn take_pending(&mut self) -> Option<Pending> {
        self.pending
            .take()
            .and_then(|p| p.lock().unwrap_or_else(|e| e.into_inner()).take())
    }

    fn refused(&self, r: Refusal) -> Response<Body> {
        match &r {
            Refusal::Failed(e) => {
                tracing::error!(error = %format!("{e:#}"), "a web session could not start");
                pages::session_ended(&format!("{e:#}"))
            }
            Refusal::Credentials(p) => pages::proxy_auth_required(&p.to_string()),
            // The browser is told only that sign-in failed; the precise reason is audited.
            Refusal::Denied(_) => pages::proxy_auth_required("sign-in failed"),
        }
    }

    /// The session `req`'s proxy credentials belong to, or the refusal to answer with.
    async fn signed_in(
        &self,
        ctx: &HttpContext,
        req: &Request<Body>,
    ) -> Result<Arc<WebSession>, Response<Body>> {
        let header = req
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        self.gw
            .sessions
            .authenticate(&self.gw, header.as_deref(), ctx.client_addr.ip())
            .await
            .map_err(|r| self.refused(r))
    }

    async fn connect(&mut self, ctx: &HttpContext, req: Request<Body>) -> RequestOrResponse {
        let session = match self.signed_in(ctx, &req).await {
            Ok(s) => s,
            Err(refused) => return refused.into(),
        };
        let Some(authority) = req
            .uri()
            .authority()
            .cloned()
            .filter(|a| a.port_u16().is_some_and(|p| p != 0))
        else {
            return pages::bad_request("CONNECT needs host:port").into();
        };
        let host = authority.host().to_string();
        let decision = self
            .gw
            .config()
            .web_decision(&session.user, &session.target, &host);
        if decision.action == WebAction::Tunnel {
            let e = HttpExchange {
                method: "CONNECT".into(),
                url: authority.to_string(),
                action: "tunnel".into(),
                rule: decision.rule_id.clone(),
                ..HttpExchange::default()
            };
            if let Err(err) = session.event(EventKind::Http(Box::new(e))) {
                return pages::session_ended(&format!("{err:#}")).into();
            }
        }
        let intercept = decision.action != WebAction::Tunnel;
        self.tunnel = Some(Arc::new(Tunnel {
            session,
            host,
            authority: authority.clone(),
            decision,
        }));
        if intercept {
            // hudsucker classifies a tunnel by its first read (`GET ` or a TLS record header)
            // and copies anything else raw to the CONNECT target. For a recorded or denied host
            // that target is made port 0, where no connection can be made, so such bytes reach
            // nobody; the requests inside the tunnel get their real port back in `request`.
            let (mut parts, body) = req.into_parts();
            let sink = format!("{}:0", authority.host());
            match sink.parse::<hudsucker::hyper::Uri>() {
                Ok(uri) => parts.uri = uri,
                Err(_) => return pages::bad_request("CONNECT needs host:port").into(),
            }
            return Request::from_parts(parts, body).into();
        }
        req.into()
    }

    async fn request(&mut self, ctx: &HttpContext, mut req: Request<Body>) -> RequestOrResponse {
        let (session, decision, host) = match &self.tunnel {
            Some(t) => (t.session.clone(), t.decision.clone(), t.host.clone()),
            None => {
                // A plain-HTTP request: it carries its own credentials.
                let session = match self.signed_in(ctx, &req).await {
                    Ok(s) => s,
                    Err(refused) => return refused.into(),
                };
                let Some(host) = req.uri().host().map(str::to_string) else {
                    return pages::bad_request("a proxy request needs an absolute URL").into();
                };
                let decision = self
                    .gw
                    .config()
                    .web_decision(&session.user, &session.target, &host);
                (session, decision, host)
            }
        };
        // Never forwarded: the proxy credentials are for psmgate only.
        req.headers_mut().remove(header::PROXY_AUTHORIZATION);
        if let Some(t) = &self.tunnel {
            // Inside a tunnel the URL names the CONNECT target (see `connect`): its real port.
            let mut parts = req.uri().clone().into_parts();
            if parts.authority.is_some() {
                parts.authority = Some(t.authority.clone());
                if let Ok(uri) = hudsucker::hyper::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        session.touch();
        if let Err(e) = ensure_recording(&session) {
            return pages::session_ended(&format!("{e:#}")).into();
        }
        if decision.action == WebAction::Record
            && req.uri().path().starts_with(recorder::RESERVED_PREFIX)
        {
            // The recorder's own traffic: answered here, never forwarded, not an `http` event.
            return reserved::answer(&self.gw, &session, &decision, req)
                .await
                .into();
        }
        if let Some(response) = self.enforce_recorder(&session, &host) {
            return response.into();
        }
        if let Some(lock) = session.locked() {
            // Locked by an operator: nothing reaches the server until the session is resumed.
            return pages::locked(&lock, &host).into();
        }
        let config = self.gw.config();
        let web = &config.web;
        let secret = |n: &str| web.field_is_redacted(n);
        let url = redact::url(&req.uri().to_string(), &secret);
        let mut event = HttpExchange {
            method: req.method().to_string(),
            url: url.clone(),
            action: action_name(decision.action).into(),
            rule: decision.rule_id.clone(),
            request_headers: redact::headers(req.headers(), &web.redacted_headers()),
            ..HttpExchange::default()
        };
        if decision.action == WebAction::Deny {
            event.status = Some(403);
            let blocked = EventKind::Policy {
                rule: decision.rule_id.clone(),
                action: "blocked".into(),
                detail: Some(format!("{} {url}", req.method())),
            };
            if let Err(e) = session
                .event(EventKind::Http(Box::new(event)))
                .and_then(|()| session.event(blocked))
            {
                return pages::session_ended(&format!("{e:#}")).into();
            }
            return pages::blocked(&decision.rule_id, &host, &session.user).into();
        }
        if is_websocket_upgrade(&req) {
            self.gw
                .websocket_opened(ctx.client_addr, session.clone(), url.clone());
            let open = EventKind::Websocket {
                url,
                direction: "open".into(),
                kind: None,
                bytes: 0,
            };
            if let Err(e) = session
                .event(EventKind::Http(Box::new(event)))
                .and_then(|()| session.event(open))
            {
                return pages::session_ended(&format!("{e:#}")).into();
            }
            return req.into();
        }
        let navigation = header_is(&req, "sec-fetch-mode", "navigate")
            && header_is(&req, "sec-fetch-dest", "document");
        let dest = req
            .headers()
            .get("sec-fetch-dest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let inject = decision.action == WebAction::Record
            && req.method() == Method::GET
            && matches!(
                dest.as_str(),
                "" | "document" | "iframe" | "frame" | "embed" | "object"
            );
        let origin = match (req.uri().scheme_str(), req.uri().authority()) {
            (Some(scheme), Some(a)) => format!("{scheme}://{a}"),
            _ => String::new(),
        };
        let request_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = if decision.record_bodies {
            usize::try_from(web.max_body.0).unwrap_or(usize::MAX)
        } else {
            0
        };
        let tap = Arc::new(Tap::new(limit));
        let (parts, body) = req.into_parts();
        let req = Request::from_parts(parts, Counted::wrap(body, tap.clone(), None));
        self.pending = Some(Arc::new(std::sync::Mutex::new(Some(Pending {
            session,
            origin,
            inject,
            started: Instant::now(),
            event,
            request_body: tap,
            request_type,
            record_bodies: decision.record_bodies,
            navigation,
        }))));
        req.into()
    }
}

impl Handler {
    /// The block page when policy ended the session or its recorders fell silent (then the
    /// session is ended here).
    fn enforce_recorder(&self, session: &Arc<WebSession>, host: &str) -> Option<Response<Body>> {
        if session.terminated().is_none() {
            let timeout = self.gw.config().web.heartbeat_timeout.get();
            let silent = session.recorders().silent(timeout);
            if let Some(why) = silent {
                session.terminate(RECORDER_RULE, &why);
                crate::metrics::enforced(RECORDER_RULE);
                let _ = session.event(EventKind::Policy {
                    rule: RECORDER_RULE.into(),
                    action: "terminated".into(),
                    detail: Some(why.clone()),
                });
                self.gw.audit(
                    "web_session_terminated",
                    &format!(
                        "user={} target={} session={} rule={RECORDER_RULE} reason={why}",
                        session.user,
                        session.target,
                        session.rec.session_id()
                    ),
                );
                let _g = session.span.enter();
                tracing::warn!(reason = %why, "in-page recorder silent; session ended (fail-closed)");
            }
        }
        session
            .termination_rule()
            .map(|rule| pages::blocked(&rule, host, &session.user))
    }
}

/// The rule id of the recorder heartbeat check.
pub const RECORDER_RULE: &str = "recorder-heartbeat";

fn action_name(a: WebAction) -> &'static str {
    match a {
        WebAction::Record => "record",
        WebAction::Tunnel => "tunnel",
        WebAction::Deny => "deny",
    }
}

fn header_is(req: &Request<Body>, name: &str, value: &str) -> bool {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(value))
}

fn is_websocket_upgrade(req: &Request<Body>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Completes `p` into its `http` event once the response body ended.
fn finish(
    gw: &WebGateway,
    mut p: Pending,
    first_byte_ms: u64,
    resp_bytes: u64,
    error: Option<String>,
) {
    p.event.ms = first_byte_ms;
    p.event.total_ms = p.started.elapsed().as_millis() as u64;
    p.event.req_bytes = p.request_body.count();
    p.event.resp_bytes = resp_bytes;
    p.event.error = error;
    if p.record_bodies && p.event.req_bytes > 0 {
        let config = gw.config();
        let web = &config.web;
        let secret = |n: &str| web.field_is_redacted(n);
        p.event.body = Some(redact::body(
            p.request_type.as_deref(),
            &p.request_body.captured(),
            p.event.req_bytes,
            &secret,
        ));
    }
    let url = p.event.url.clone();
    let navigated = p.navigation && p.event.status.is_some_and(|s| s < 400);
    if let Err(e) = p.session.event(EventKind::Http(Box::new(p.event))) {
        let _g = p.session.span.enter();
        tracing::warn!(error = %format!("{e:#}"), "an exchange could not be recorded");
        return;
    }
    if navigated {
        let _ = p.session.event(EventKind::Url { url });
    }
}

impl HttpHandler for Handler {
    async fn handle_request(&mut self, ctx: &HttpContext, req: Request<Body>) -> RequestOrResponse {
        if req.method() == Method::CONNECT {
            self.connect(ctx, req).await
        } else {
            self.request(ctx, req).await
        }
    }

    async fn handle_response(&mut self, _ctx: &HttpContext, res: Response<Body>) -> Response<Body> {
        let Some(mut p) = self.take_pending() else {
            return res;
        };
        let first_byte_ms = p.started.elapsed().as_millis() as u64;
        p.event.status = Some(res.status().as_u16());
        p.event.content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        p.event.response_headers =
            redact::headers(res.headers(), &self.gw.config().web.redacted_headers());
        let mut res = res;
        if p.inject && page::is_html(&res) {
            let id = page::new_page_id();
            match page::inject(res, &p.origin, &id) {
                Ok(r) => {
                    p.session.recorders().injected(&id);
                    res = r;
                }
                Err(e) => {
                    // Fail closed: a page the recorder cannot enter is not shown.
                    let why = format!("psmgate cannot record this page: {e}");
                    p.event.error = Some(why.clone());
                    let ms = p.started.elapsed().as_millis() as u64;
                    finish(&self.gw, p, ms, 0, Some(why.clone()));
                    return pages::session_ended(&why);
                }
            }
        }
        let gw = self.gw.clone();
        let (parts, body) = res.into_parts();
        let done = Box::new(move |bytes: u64, error: Option<String>| {
            finish(&gw, p, first_byte_ms, bytes, error)
        });
        Response::from_parts(
            parts,
            Counted::wrap(body, Arc::new(Tap::new(0)), Some(done)),
        )
    }

    async fn handle_error(
        &mut self,
        _ctx: &HttpContext,
        err: hudsucker::hyper_util::client::legacy::Error,
    ) -> Response<Body> {
        let reason = describe_error(&err);
        let host = self
            .tunnel
            .as_ref()
            .map(|t| t.host.clone())
            .unwrap_or_default();
        if let Some(p) = self.take_pending() {
            let ms = p.started.elapsed().as_millis() as u64;
            finish(&self.gw, p, ms, 0, Some(reason.clone()));
        }
        pages::upstream_failed(&host, &reason)
    }

    async fn should_intercept_connect(&mut self, _ctx: &HttpContext, _req: &Request<Body>) -> bool {
        // Recorded hosts are intercepted; so are denied ones, to show the block page.
        self.tunnel
            .as_ref()
            .is_none_or(|t| t.decision.action != WebAction::Tunnel)
    }
}

/// The innermost cause of a client error, in words (no URL, no secrets).
fn describe_error(err: &hudsucker::hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = source {
        last = e.to_string();
        source = e.source();
    }
    last
}

/// The WebSocket handler: counts and sizes every message into the session's transcript.
#[derive(Clone)]
pub struct WsHandler {
    gw: Arc<WebGateway>,
}

impl WsHandler {
    /// A handler over `gw`'s WebSocket registry.
    pub fn new(gw: Arc<WebGateway>) -> Self {
        WsHandler { gw }
    }
}

impl WebSocketHandler for WsHandler {
    async fn handle_message(
        &mut self,
        ctx: &WebSocketContext,
        message: Message,
    ) -> Option<Message> {
        let (client, direction) = match ctx {
            WebSocketContext::ClientToServer { src, .. } => (*src, "to_server"),
            WebSocketContext::ServerToClient { dst, .. } => (*dst, "to_client"),
        };
        let (kind, bytes) = match &message {
            Message::Text(t) => ("text", t.len()),
            Message::Binary(b) => ("binary", b.len()),
            Message::Ping(b) => ("ping", b.len()),
            Message::Pong(b) => ("pong", b.len()),
            Message::Close(_) => ("close", 0),
            Message::Frame(f) => ("frame", f.len()),
        };
        if let Some((session, url)) = self.gw.websocket_session(client) {
            let closing = matches!(message, Message::Close(_));
            let e = EventKind::Websocket {
                url,
                direction: direction.into(),
                kind: Some(kind.into()),
                bytes: bytes as u64,
            };
            if session.event(e).is_err() {
                // Fail closed: the recording stopped, so the socket stops too.
                return Some(Message::Close(None));
            }
            if closing {
                self.gw.websocket_closed(client);
            }
        }
        Some(message)
    }
}
