//! `route` and `host` from manifests: where the ingress serves each app,
//! kept per app (not per generation), so changing them restarts nothing.
//! Set by `up` and `rollout` in the same commit as the apps, removed by
//! `down`; two apps may not claim the same host and path.

use skr8tr_proto::code::Code;
use skr8tr_proto::manifest::Routing;
use skr8tr_store::records::RouteRecord;
use skr8tr_store::{EffectError, Refusal, Tx};

/// The routing of every app of the manifest, as written (a manifest that
/// does not parse has none: `up` refuses it anyway).
pub(super) fn of(file: &str, manifest: &str) -> Vec<Routing> {
    skr8tr_proto::manifest::parse_routed(file, manifest)
        .map(|apps| apps.into_iter().map(|(_, r)| r).collect())
        .unwrap_or_default()
}

/// Sets each app's routing; a line per change.
pub(super) fn apply(tx: &mut Tx<'_>, routing: &[Routing]) -> Result<Vec<String>, EffectError> {
    let mut lines = Vec::new();
    let others = tx.routes()?;
    for r in routing {
        let want = (r.route.is_some() || r.host.is_some()).then(|| RouteRecord {
            route: r.route.clone(),
            host: r.host.clone(),
        });
        if let Some(w) = &want
            && let Some((other, _)) = others
                .iter()
                .find(|(app, o)| *app != r.app && key(o) == key(w))
            && !routing.iter().any(|mine| mine.app == *other)
        {
            return Err(Refusal::new(
                Code::InvalidManifest,
                format!(
                    "app `{}` asks for {}, which app `{other}` already has; give it another \
                     `route` or `host` (or change `{other}`'s first)",
                    r.app,
                    describe(w)
                ),
            )
            .into());
        }
        if tx.route(&r.app)? != want {
            tx.set_route(&r.app, want.as_ref())?;
            lines.push(match &want {
                Some(w) => format!("{}: the ingress serves it at {}", r.app, describe(w)),
                None => format!("{}: no longer routed by its manifest", r.app),
            });
        }
    }
    Ok(lines)
}

fn key(r: &RouteRecord) -> (Option<&str>, &str) {
    (r.host.as_deref(), r.route.as_deref().unwrap_or("/"))
}

fn describe(r: &RouteRecord) -> String {
    match (&r.host, &r.route) {
        (Some(h), Some(p)) => format!("host `{h}`, path `{p}`"),
        (Some(h), None) => format!("host `{h}`"),
        (None, Some(p)) => format!("path `{p}`"),
        (None, None) => "nothing".into(),
    }
}
