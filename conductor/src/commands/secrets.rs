//! Secret values: the signed manifest carries salted digests, the values
//! travel beside it; each is checked against its digest and put back.

use skr8tr_proto::code::Code;
use skr8tr_proto::manifest::{self, AppSpec, Secret, secrets};
use skr8tr_proto::wire::SecretValue;
use skr8tr_store::Refusal;

/// Parses the signed manifest and puts back the secret values sent beside
/// it, each checked against the digest the operator signed.
pub(super) fn parse_with_secrets(
    file: &str,
    text: &str,
    sidecar: &[SecretValue],
) -> Result<Vec<AppSpec>, Refusal> {
    let mut specs = manifest::parse(file, text).map_err(|d| {
        Refusal::new(
            Code::InvalidManifest,
            format!("the manifest has errors:\n{d}"),
        )
    })?;
    for spec in &mut specs {
        for (name, value) in &mut spec.secrets {
            let redacted = value.expose().to_string();
            if !secrets::is_redacted(&redacted) {
                return Err(Refusal::new(
                    Code::SecretInClear,
                    format!(
                        "secret `{name}` of app `{}` is in the signed manifest in clear, where the \
                         audit log would keep it; send it with `skr8tr up`, which signs only its digest",
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
            if !secrets::matches(&redacted, &spec.name, name, &sent.value) {
                return Err(Refusal::new(
                    Code::SecretMismatch,
                    format!(
                        "secret `{name}` of app `{}` does not match the digest that was signed",
                        spec.name
                    ),
                ));
            }
            *value = Secret::new(sent.value.clone());
        }
    }
    Ok(specs)
}
