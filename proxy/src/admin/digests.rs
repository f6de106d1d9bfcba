//! `/digests`: the query digests as JSON (`GET`, `?sort=..&limit=..`), and a reset (`DELETE`
//! or `POST`; with `--admin-token` set, only with that token).

use tracing::info;

use super::{AdminState, JSON, Request, Response};
use crate::digest::report;

pub(super) fn respond(state: &AdminState, request: &Request<'_>, head: &[u8]) -> Response {
    let Some(digests) = &state.digests else {
        return Response::text(404, "not found\n");
    };
    match request.method {
        "GET" | "HEAD" => match report::parse_query(request.query) {
            Ok(query) => {
                let mut snapshot = digests.snapshot();
                let body = report::render(digests.config(), &mut snapshot, query);
                Response::new(200, JSON, body)
            }
            Err(why) => Response::text(400, &format!("{why}\n")),
        },
        "DELETE" | "POST" => {
            let head = String::from_utf8_lossy(head);
            if let Some(push) = &state.push
                && !push.authorizes(&head)
            {
                return Response::text(401, "unauthorized\n");
            }
            digests.reset();
            info!("query digests reset");
            Response::text(200, "reset\n")
        }
        _ => Response::allowing("GET, HEAD, DELETE, POST"),
    }
}
