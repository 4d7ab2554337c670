//! The status page's HTML, rendered here from what the conductor answers:
//! nodes, apps (with a rollout's step), replicas with state and health,
//! and recent history. Every value from the conductor is escaped; the
//! page's one script (`ui.js`) only swaps in newer fragments.

use skr8tr_proto::wire::{HistoryEntry, NodeView, ReplicaView, StatusReply};
use std::fmt::Write;

/// What one refresh read from the conductor.
pub struct State {
    pub status: StatusReply,
    pub nodes: Vec<NodeView>,
    pub replicas: Vec<ReplicaView>,
    pub history: Vec<HistoryEntry>,
}

/// The script the page loads (the CSP allows no inline script): it swaps
/// `#state` for each fragment the event stream sends and counts them.
pub const SCRIPT: &str = "(function(){var n=0;var b=document.body;\
var s=new EventSource('events');\
s.onopen=function(){b.removeAttribute('data-stale');};\
s.onmessage=function(e){document.getElementById('state').innerHTML=e.data;n++;\
b.setAttribute('data-updates',String(n));b.removeAttribute('data-stale');};\
s.onerror=function(){b.setAttribute('data-stale','1');};})();\n";

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.4em}\
table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}\
.ready,.alive{color:#176117}.lost,.failed,.refused{color:#a31515}.note{color:#555}\
body[data-stale] #live{color:#a31515}body[data-stale] #live::after{content:' (reconnecting)'}";

/// The whole page, with the first fragment in place.
pub fn page(fragment: &str, cluster: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <title>skr8tr {cluster}</title><style>{STYLE}</style></head>\
         <body data-updates=\"0\"><h1>skr8tr — cluster {cluster}</h1>\
         <p id=live class=note>read-only; refreshes itself</p>\
         <div id=state>{fragment}</div><script src=\"ui.js\"></script></body></html>",
        cluster = esc(cluster)
    )
}

/// The part of the page that changes; `failing` says since when the
/// conductor does not answer (the rest is the last state it gave).
pub fn fragment(s: &State, failing: Option<&str>) -> String {
    let mut o = String::new();
    if let Some(why) = failing {
        let _ = write!(
            o,
            "<p id=failing class=refused>the conductor does not answer ({}); this is the last \
             state it gave</p>",
            esc(why)
        );
    }
    let st = &s.status;
    let resync = if st.resyncing {
        " (re-syncing after a restart)"
    } else {
        ""
    };
    let _ = write!(
        o,
        "<p id=summary>nodes {} alive, {} lost{resync}</p>",
        st.nodes_alive, st.nodes_lost
    );

    o.push_str("<h2>Nodes</h2><table id=nodes><tr><th>node<th>address<th>state<th>replicas<th>cpu<th>ram</tr>");
    for n in &s.nodes {
        let state = if n.alive { "alive" } else { "lost" };
        let mut note = state.to_string();
        if n.cordoned {
            note.push_str(", cordoned");
        }
        if n.leaving {
            note.push_str(", leaving");
        }
        let _ = write!(
            o,
            "<tr class=node data-node=\"{name}\"><td>{name}<td>{addr}<td class={state}>{note}\
             <td>{}<td>{:.1}/{:.1}<td>{}/{} MiB</tr>",
            n.replicas,
            n.cpu_used_millis as f64 / 1000.0,
            n.cpu_millis as f64 / 1000.0,
            n.ram_used_bytes >> 20,
            n.ram_bytes >> 20,
            name = esc(&n.name),
            addr = esc(&n.address),
        );
    }
    o.push_str("</table>");

    o.push_str("<h2>Apps</h2>");
    if st.apps.is_empty() {
        o.push_str("<p class=note>no apps</p>");
    } else {
        o.push_str("<table id=apps><tr><th>app<th>gen<th>ready<th>running<th>desired<th>note</tr>");
        for a in &st.apps {
            let note = a
                .rollout
                .as_ref()
                .map(|r| format!("<span class=rollout>rolling out {}</span>", esc(r)))
                .or_else(|| a.unplaced.as_ref().map(|u| esc(u)))
                .unwrap_or_default();
            let _ = write!(
                o,
                "<tr class=app data-app=\"{name}\" data-ready=\"{}\" data-desired=\"{}\">\
                 <td>{name}<td>{}<td>{}/{}<td>{}<td>{}<td>{note}</tr>",
                a.ready,
                a.desired,
                a.generation,
                a.ready,
                a.desired,
                a.running,
                a.desired,
                name = esc(&a.name),
            );
        }
        o.push_str("</table>");
    }

    o.push_str("<h2>Replicas</h2>");
    if s.replicas.is_empty() {
        o.push_str("<p class=note>none</p>");
    } else {
        o.push_str(
            "<table id=replicas><tr><th>replica<th>node<th>endpoint<th>state<th>pid\
             <th>restarts<th>note</tr>",
        );
        for r in &s.replicas {
            let state = r.state.map_or("pending".to_string(), |s| s.label());
            let class = match state.as_str() {
                "ready" => "ready",
                "starting" | "pending" => "",
                _ => "failed",
            };
            let endpoint = r
                .port
                .map_or("-".to_string(), |p| format!("{}:{p}", r.address));
            let _ = write!(
                o,
                "<tr class=replica data-app=\"{app}\" data-state=\"{st}\"><td>{id}<td>{node}\
                 <td>{ep}<td class=\"{class}\">{st}{drain}<td>{pid}<td>{}<td class=note>{err}</tr>",
                r.restarts,
                app = esc(&r.app),
                st = esc(&state),
                id = esc(&r.replica),
                node = esc(&r.node),
                ep = esc(&endpoint),
                drain = if r.draining { " (draining)" } else { "" },
                pid = r.pid.map_or("-".to_string(), |p| p.to_string()),
                err = esc(r.error.as_deref().unwrap_or("")),
            );
        }
        o.push_str("</table>");
    }

    o.push_str(
        "<h2>Recent history</h2><table id=history><tr><th>#<th>when<th>who<th>what<th>outcome</tr>",
    );
    for h in s.history.iter().rev() {
        let outcome = if h.accepted {
            "<td>ok".to_string()
        } else {
            format!(
                "<td class=refused>refused {}",
                esc(h.code.as_deref().unwrap_or(""))
            )
        };
        let _ = write!(
            o,
            "<tr><td>{}<td>{}<td>{}<td>{}{outcome}</tr>",
            h.seq,
            esc(&crate::cmd::history::utc(h.time_ms)),
            esc(&h.actor),
            esc(&h.summary),
        );
    }
    o.push_str("</table>");
    o
}

/// HTML-escapes text for element content and quoted attributes, after
/// the terminal's escaping (`show::line`): controls, newlines and the
/// characters that reorder text (a history row cannot be made to read
/// as another) are shown as escapes, as `skr8tr history` shows them.
pub fn esc(s: &str) -> String {
    let s = crate::show::line(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

    #[test]
    fn conductor_text_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(esc("a\u{1b}[31mb"), "a\\x1b[31mb");
        assert_eq!(esc("up \u{202e}dorp nwod"), "up \\u{202e}dorp nwod");
        assert_eq!(esc("two\nlines"), "two\\nlines");
        let page = page("<p>x</p>", "<evil>");
        assert!(page.contains("cluster &lt;evil&gt;"));
        assert!(!page.contains("<evil>"));
    }
}
