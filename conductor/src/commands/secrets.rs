//! Secret values. The CLI seals each one to the conductor's ML-KEM key
//! (`skr8tr_proto::sealed`) before it signs the manifest, so the signed
//! text — kept forever in the audit log — and the store hold only
//! ciphertext. Each sealed value is checked to open here, for this app and
//! variable, before the command is applied. A manifest from an older CLI
//! (salted digests signed, values sent beside them) is still taken: each
//! value is checked against its digest, then sealed here before it is
//! stored. A value is opened only to build a node's assignments.

use skr8tr_proto::code::Code;
use skr8tr_proto::manifest::{self, AppSpec, Secret, secrets};
use skr8tr_proto::sealed::{self, OpeningKey, SealError, SealingKey};
use skr8tr_proto::wire::SecretValue;
use skr8tr_store::Refusal;

/// Parses the signed manifest; every secret value ends up sealed, checked
/// to open for its app and variable (or, from an older CLI, matched
/// against the digest that was signed and sealed here).
pub(super) fn parse_with_secrets(
    file: &str,
    text: &str,
    sidecar: &[SecretValue],
    opening: &OpeningKey,
) -> Result<Vec<AppSpec>, Refusal> {
    let mut specs = manifest::parse(file, text).map_err(|d| {
        Refusal::new(
            Code::InvalidManifest,
            format!("the manifest has errors:\n{d}"),
        )
    })?;
    let sealer = SealingKey::from_bytes(opening.sealing_key())
        .map_err(|e| Refusal::new(Code::Internal, e.to_string()))?;
    for spec in &mut specs {
        for (name, value) in &mut spec.secrets {
            let given = value.expose().to_string();
            if sealed::is_sealed(&given) {
                opening.open(&spec.name, name, &given).map_err(|e| {
                    Refusal::new(
                        Code::SecretMismatch,
                        format!(
                            "secret `{name}` of app `{}`: {e}; `skr8tr up` seals values to this \
                             conductor's key",
                            spec.name
                        ),
                    )
                })?;
                continue;
            }
            if !secrets::is_redacted(&given) {
                return Err(Refusal::new(
                    Code::SecretInClear,
                    format!(
                        "secret `{name}` of app `{}` is in the signed manifest in clear, where the \
                         audit log would keep it; send it with `skr8tr up`, which seals it to the \
                         conductor",
                        spec.name
                    ),
                ));
            }
            let sent = sidecar
                .iter()
                .find(|s| s.app == spec.name && s.name == *name)
                .ok_or_else(|| {
                    Refusal::new(
                        Code::SecretMissing,
                        format!(
                            "secret `{name}` of app `{}` was signed but not sent",
                            spec.name
                        ),
                    )
                })?;
            if !secrets::matches(&given, &spec.name, name, &sent.value) {
                return Err(Refusal::new(
                    Code::SecretMismatch,
                    format!(
                        "secret `{name}` of app `{}` does not match the digest that was signed",
                        spec.name
                    ),
                ));
            }
            let sealed = sealer
                .seal(&spec.name, name, &sent.value)
                .map_err(|e| Refusal::new(Code::Internal, e.to_string()))?;
            *value = Secret::new(sealed);
        }
    }
    Ok(specs)
}

/// Refuses a `secret set` value that is not sealed to this conductor for
/// `app`/`name`.
pub(super) fn check_sealed(
    app: &str,
    name: &str,
    value: &str,
    opening: &OpeningKey,
) -> Result<(), Refusal> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(Refusal::new(
            Code::BadRequest,
            format!("`{name}` is not a variable name (letters, digits and `_`, not first a digit)"),
        ));
    }
    if !sealed::is_sealed(value) {
        return Err(Refusal::new(
            Code::SecretInClear,
            format!(
                "the new value of secret `{name}` of app `{app}` is in clear, where the audit log \
                 would keep it; `skr8tr secret set` seals it to the conductor"
            ),
        ));
    }
    opening.open(app, name, value).map(|_| ()).map_err(|e| {
        Refusal::new(
            Code::SecretMismatch,
            format!("the new value of secret `{name}` of app `{app}`: {e}"),
        )
    })
}

/// `spec` with every sealed secret opened: what a node runs, and what two
/// generations are compared by (sealing the same value twice gives two
/// ciphertexts).
pub(crate) fn opened(spec: &AppSpec, opening: &OpeningKey) -> Result<AppSpec, SealError> {
    let mut out = spec.clone();
    for (name, value) in &mut out.secrets {
        let v = value.expose();
        if sealed::is_sealed(v) {
            *value = Secret::new(opening.open(&spec.name, name, v)?);
        }
    }
    Ok(out)
}

/// Whether two specs are the same app, secret values compared opened
/// (where in its file the app starts is not part of it: a line added
/// above does not roll it out).
pub(crate) fn same(a: &AppSpec, b: &AppSpec, opening: &OpeningKey) -> bool {
    match (opened(a, opening), opened(b, opening)) {
        (Ok(mut a), Ok(mut b)) => {
            a.line = 0;
            b.line = 0;
            a == b
        }
        _ => false,
    }
}

/// `spec` with every secret value that is not sealed yet sealed (specs
/// stored before values were sealed at rest); `None` if none was.
pub(crate) fn sealed_at_rest(spec: &AppSpec, opening: &OpeningKey) -> Option<AppSpec> {
    let sealer = SealingKey::from_bytes(opening.sealing_key()).ok()?;
    let mut out = spec.clone();
    let mut changed = false;
    for (name, value) in &mut out.secrets {
        if !sealed::is_sealed(value.expose()) {
            let s = sealer.seal(&spec.name, name, value.expose()).ok()?;
            *value = Secret::new(s);
            changed = true;
        }
    }
    changed.then_some(out)
}
