//! The inventory as a page: plain HTML from the server, one table per
//! route, no script. Every name is escaped (a path holds member names from
//! request bodies).

use std::fmt::Write;

use super::{MAX_PATHS, Snapshot, timestamp};
use crate::rewrite::Outcome;

/// The columns after the path, with the outcome each counts.
const COLUMNS: [(&str, Outcome); 7] = [
    ("Kept clear", Outcome::Kept),
    ("Hashed", Outcome::Hashed),
    ("Pseudonymized", Outcome::Pseudonymized),
    ("Truncated", Outcome::Truncated),
    ("Redacted by a rule", Outcome::Redacted),
    ("Found by a detector", Outcome::Detected),
    ("Dropped", Outcome::Dropped),
];

pub fn render_page(snapshot: &Snapshot) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>scrim: what leaves</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n\
         table{border-collapse:collapse;margin-bottom:2em}\n\
         th,td{border:1px solid #ccc;padding:.3em .6em}\n\
         td.n{text-align:right;font-variant-numeric:tabular-nums}\n\
         td.path{font-family:monospace}\n\
         </style>\n</head>\n<body>\n<h1>What leaves, per route</h1>\n\
         <p>Every field path seen in forwarded requests (bodies, query strings, \
         headers) since scrim started, and what left of its values. Never a value. \
         The same as JSON: <a href=\"/inventory\">/inventory</a>.</p>\n",
    );
    if snapshot.routes.is_empty() {
        page.push_str("<p id=\"empty\">No request has been forwarded yet.</p>\n");
    }
    for route in &snapshot.routes {
        let name = escape(&route.name);
        let _ = write!(
            page,
            "<section class=\"route\" data-route=\"{name}\">\n<h2>Route {name}</h2>\n\
             <p>{} requests forwarded. Consent decisions:",
            route.requests
        );
        for (decision, count) in &route.consent {
            let _ = write!(
                page,
                " <span class=\"consent\">{}: {count}</span>",
                escape(decision)
            );
        }
        page.push_str("</p>\n");
        if route.overflow > 0 {
            let _ = writeln!(
                page,
                "<p class=\"overflow\">{} values at paths beyond the first {MAX_PATHS} are counted \
                 but not listed.</p>",
                route.overflow
            );
        }
        page.push_str("<table>\n<thead><tr><th>Field</th>");
        for (title, _) in COLUMNS {
            let _ = write!(page, "<th>{title}</th>");
        }
        page.push_str("<th>First seen</th><th>Last seen</th></tr></thead>\n<tbody>\n");
        for (path, seen) in &route.fields {
            let _ = write!(page, "<tr><td class=\"path\">{}</td>", escape(path));
            for (_, outcome) in COLUMNS {
                let _ = write!(
                    page,
                    "<td class=\"n\">{}</td>",
                    seen.counts[outcome as usize]
                );
            }
            let _ = writeln!(
                page,
                "<td>{}</td><td>{}</td></tr>",
                timestamp(seen.first),
                timestamp(seen.last)
            );
        }
        page.push_str("</tbody>\n</table>\n</section>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{RouteInventory, Seen};

    #[test]
    fn names_are_escaped() {
        let snapshot = Snapshot {
            routes: vec![RouteInventory {
                name: "<b>r</b>".into(),
                requests: 1,
                consent: [("no_signal".to_owned(), 1)].into(),
                overflow: 0,
                fields: vec![(
                    "$['a b'].x&y<script>".into(),
                    Seen {
                        counts: [1, 0, 0, 0, 0, 0, 0],
                        first: 0,
                        last: 0,
                    },
                )],
            }],
        };
        let page = render_page(&snapshot);
        assert!(
            !page.contains("<script>") && !page.contains("<b>r"),
            "{page}"
        );
        assert!(
            page.contains("$[&#39;a b&#39;].x&amp;y&lt;script&gt;"),
            "{page}"
        );
    }
}
