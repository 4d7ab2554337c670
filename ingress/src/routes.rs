//! Longest-prefix routing: `/api` matches `/api` and `/api/…`, not `/apix`;
//! `/` matches everything. Pure, so it is tested on its own.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub app: String,
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
        })
    }

    fn matches(&self, path: &str) -> bool {
        self.prefix == "/"
            || path == self.prefix
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The app of the longest route matching `path`.
pub fn route<'a>(routes: &'a [Route], path: &str) -> Option<&'a Route> {
    route_index(routes, path).map(|i| &routes[i])
}

/// The index of the longest route matching `path`.
pub fn route_index(routes: &[Route], path: &str) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.matches(path))
        .max_by_key(|(_, r)| r.prefix.len())
        .map(|(i, _)| i)
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
        let app = |p: &str| route(&r, p).map(|r| r.app.as_str());
        assert_eq!(app("/api"), Some("api"));
        assert_eq!(app("/api/users"), Some("api"));
        assert_eq!(app("/apix"), Some("web"), "/api does not match /apix");
        assert_eq!(app("/api/v2/x"), Some("api2"));
        assert_eq!(app("/api/v2"), Some("api2"));
        assert_eq!(app("/api/v20"), Some("api"));
        assert_eq!(app("/static/a.css"), Some("files"));
        assert_eq!(app("/"), Some("web"));
        let only_api = vec![Route::parse("/api:api").unwrap()];
        assert_eq!(route(&only_api, "/other"), None);
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
