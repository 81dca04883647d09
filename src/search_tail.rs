//! `skidder search --tail`: follow a log query live through a searcher's
//! `/loki/api/v1/tail` websocket, as `logcli query --tail` does. Prints the
//! recent history first (`--limit` lines since `--since`), then each line
//! as it arrives, oldest first; `--output json` prints Loki's messages as
//! they come. Dropped lines (the client fell behind) are reported on
//! stderr.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use crate::search::{Output, SearchFlags};

pub fn run(f: &SearchFlags, start: i64) -> anyhow::Result<ExitCode> {
    let Some(url) = &f.url else {
        bail!("--tail follows a searcher: give --url");
    };
    let Some(rest) = url.trim_end_matches('/').strip_prefix("http://") else {
        bail!("--tail needs an http:// searcher URL (the websocket is plain ws://)");
    };
    let mut target = format!("ws://{rest}/loki/api/v1/tail?");
    form_urlencoded::Serializer::for_suffix(&mut target, 0)
        .append_pair("query", &f.query)
        .append_pair("limit", &f.limit.to_string())
        .append_pair("start", &start.to_string());
    let mut req = target
        .as_str()
        .into_client_request()
        .context("the tail URL")?;
    req.headers_mut().insert(
        "X-Scope-OrgID",
        f.tenant.parse().context("the tenant as a header")?,
    );
    let (mut socket, _) = match tungstenite::connect(req) {
        Ok(s) => s,
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            bail!("{}: {}", resp.status(), body.trim());
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {url}")),
    };
    let stdout = std::io::stdout();
    loop {
        let msg = match socket.read() {
            Ok(m) => m,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => return Err(e).context("reading the tail"),
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(frame) => {
                if let Some(f) = frame {
                    eprintln!("tail closed: {}", f.reason);
                }
                break;
            }
            _ => continue,
        };
        let body: Value = serde_json::from_str(&text).context("a tail message is not JSON")?;
        let mut out = stdout.lock();
        match f.output {
            Output::Json => writeln!(out, "{body}")?,
            Output::Raw => {
                let mut lines = crate::search::stream_lines(&body["streams"]);
                lines.sort_by_key(|l| l.0);
                for (_, l) in lines {
                    writeln!(out, "{l}")?;
                }
            }
        }
        out.flush()?;
        let dropped = body["dropped_entries"].as_array().map_or(0, Vec::len);
        if dropped > 0 {
            eprintln!("warning: the searcher dropped {dropped} lines (this client fell behind)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
