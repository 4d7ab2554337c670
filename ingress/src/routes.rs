//! Routing: by host name, then longest path prefix. `/api` matches `/api`
//! and `/api/…`, not `/apix`; `/` matches everything. Routes come from
//! `--route` flags and from apps' manifests (`route`, `host`); a flag
//! wins over a manifest route with the same host and prefix. Pure, so it
//! is tested on its own.

use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub app: String,
    /// Only requests for this host name (lowercase, no port).
    pub host: Option<String>,
}

impl Route {
    /// `PREFIX:APP`, as `--route` takes it.
    pub fn parse(text: &str) -> Result<Route, String> {
        let (prefix, app) = text.rsplit_once(':').ok_or_else(|| {
            format!("`{text}` is not a route; write PREFIX:APP, like /api:api-server")
        })?;
        if !prefix.starts_with('/') {
            return Err(format!("route prefix `{prefix}` must start with `/`"));
        }
        if app.is_empty() {
            return Err(format!("route `{text}` names no app"));
        }
        let prefix = if prefix.len() > 1 {
            prefix.trim_end_matches('/')
        } else {
            prefix
        };
        Ok(Route {
            prefix: prefix.to_string(),
            app: app.to_string(),
            host: None,
        })
    }

    fn matches(&self, path: &str) -> bool {
        self.prefix == "/"
            || path == self.prefix
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// What `/metrics` calls it: the prefix, after the host if it has one.
    pub fn label(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}{}", self.prefix),
            None => self.prefix.clone(),
        }
    }
}

/// The routes in use and their metric labels, swapped whole when the
/// manifest routes change.
#[derive(Debug, Default)]
pub struct Table {
    pub routes: Vec<Route>,
    /// Per route: its label and app, shared by every request it takes.
    pub labels: Vec<(Arc<str>, Arc<str>)>,
}

impl Table {
    /// `flags` first; a manifest route with the same host and prefix as a
    /// flag is left out (the flag wins).
    pub fn new(flags: &[Route], manifest: &[Route]) -> Table {
        let mut routes: Vec<Route> = flags.to_vec();
        for m in manifest {
            if !routes
                .iter()
                .any(|f| f.host == m.host && f.prefix == m.prefix)
            {
                routes.push(m.clone());
            }
        }
        let labels = routes
            .iter()
            .map(|r| (Arc::from(r.label().as_str()), Arc::from(r.app.as_str())))
            .collect();
        Table { routes, labels }
    }
}

/// The app of the best route for `host` and `path`.
pub fn route<'a>(routes: &'a [Route], host: Option<&str>, path: &str) -> Option<&'a Route> {
    route_index(routes, host, path).map(|i| &routes[i])
}

/// The index of the best route: the longest prefix among the routes for
/// this host, else the longest among the routes for any host.
pub fn route_index(routes: &[Route], host: Option<&str>, path: &str) -> Option<usize> {
    let best = |want: Option<&str>| {
        routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.host.as_deref() == want && r.matches(path))
            .max_by_key(|(_, r)| r.prefix.len())
            .map(|(i, _)| i)
    };
    host.and_then(|h| best(Some(h))).or_else(|| best(None))
}

/// The host a request names (`Host`, or HTTP/2's `:authority`): lowercase,
/// without its port.
pub fn request_host(host_header: Option<&str>, authority: Option<&str>) -> Option<String> {
    let raw = host_header.or(authority)?;
    let name = if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        rest.split(']').next().unwrap_or("")
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    (!name.is_empty()).then(|| name.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        ["/api:api", "/:web", "/api/v2:api2", "/static/:files"]
            .iter()
            .map(|r| Route::parse(r).unwrap())
            .collect()
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = routes();
        let app = |p: &str| route(&r, None, p).map(|r| r.app.as_str());
        assert_eq!(app("/api"), Some("api"));
        assert_eq!(app("/api/users"), Some("api"));
        assert_eq!(app("/apix"), Some("web"), "/api does not match /apix");
        assert_eq!(app("/api/v2/x"), Some("api2"));
        assert_eq!(app("/api/v2"), Some("api2"));
        assert_eq!(app("/api/v20"), Some("api"));
        assert_eq!(app("/static/a.css"), Some("files"));
        assert_eq!(app("/"), Some("web"));
        let only_api = vec![Route::parse("/api:api").unwrap()];
        assert_eq!(route(&only_api, None, "/other"), None);
    }

    #[test]
    fn host_routes_come_first_and_flags_win_over_manifests() {
        let host = |h: &str, p: &str, app: &str| Route {
            prefix: p.into(),
            app: app.into(),
            host: Some(h.into()),
        };
        let flags = vec![Route::parse("/:web").unwrap()];
        let manifest = vec![
            host("a.test", "/", "a"),
            host("b.test", "/", "b"),
            host("b.test", "/admin", "b-admin"),
            // Same key as the flag: the flag wins.
            Route {
                prefix: "/".into(),
                app: "other".into(),
                host: None,
            },
        ];
        let t = Table::new(&flags, &manifest);
        assert_eq!(t.routes.len(), 4);
        let app = |h: Option<&str>, p: &str| route(&t.routes, h, p).map(|r| r.app.as_str());
        assert_eq!(app(Some("a.test"), "/x"), Some("a"));
        assert_eq!(app(Some("b.test"), "/x"), Some("b"));
        assert_eq!(app(Some("b.test"), "/admin/1"), Some("b-admin"));
        assert_eq!(
            app(Some("c.test"), "/x"),
            Some("web"),
            "unknown hosts: host-less routes"
        );
        assert_eq!(app(None, "/x"), Some("web"));
        assert_eq!(t.labels[2].0.as_ref(), "b.test/");
        assert_eq!(
            request_host(Some("A.Test:8080"), None).as_deref(),
            Some("a.test")
        );
        assert_eq!(
            request_host(None, Some("b.test")).as_deref(),
            Some("b.test")
        );
        assert_eq!(request_host(Some("[::1]:80"), None).as_deref(), Some("::1"));
        assert_eq!(request_host(Some(""), None), None);
    }

    #[test]
    fn bad_routes_say_how_to_write_them() {
        assert!(Route::parse("api").unwrap_err().contains("PREFIX:APP"));
        assert!(
            Route::parse("api:x")
                .unwrap_err()
                .contains("must start with `/`")
        );
        assert!(Route::parse("/x:").unwrap_err().contains("names no app"));
    }
}
