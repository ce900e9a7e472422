//! Files named by settings (`database.password_file`, `nats.nkey_seed_file`, the TLS files):
//! read or checked at start-up, with an error that names the setting, so a wrong path or mode
//! stops the service with a message an operator can act on.

use std::path::Path;

/// The file's content without surrounding whitespace: a secret written by `echo` or an editor
/// ends in a newline that is not part of it.
pub async fn read(setting: &str, path: &Path) -> anyhow::Result<String> {
    let content = tokio::fs::read_to_string(path)
        .await
        .map_err(|error| cannot_read(setting, path, error))?;
    Ok(content.trim().to_owned())
}

/// For a file another library reads later (on every NATS reconnection): opening it proves this
/// process may read it, which its mere existence would not.
pub(crate) async fn check_readable(setting: &str, path: &Path) -> anyhow::Result<()> {
    tokio::fs::File::open(path)
        .await
        .map(drop)
        .map_err(|error| cannot_read(setting, path, error))
}

fn cannot_read(setting: &str, path: &Path, error: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot read {setting} {}: {error}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("opd-secret-file-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_secret_loses_its_trailing_newline() {
        let dir = scratch("trim");
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(
            read("database.password_file", &file).await.unwrap(),
            "s3cret"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_file_is_named_with_its_setting() {
        let missing = scratch("missing").join("absent.nk");
        let error = read("nats.nkey_seed_file", &missing)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot read nats.nkey_seed_file "),
            "{error}"
        );
        assert!(error.contains("absent.nk"), "{error}");
        let error = check_readable("nats.tls.ca_file", &missing)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot read nats.tls.ca_file "),
            "{error}"
        );
    }
}
