//! Secrets reach the service from files, so that its configuration can be shown and committed.

use crate::helpers::{builder, patient};

#[tokio::test]
async fn the_database_password_is_read_from_password_file_over_the_url() {
    let dir = std::env::temp_dir().join(opd_testing::unique_name("opd-secret"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("database-password");
    let app = builder()
        .settings({
            let file = file.clone();
            move |settings| {
                // The harness's URL holds the real password; a wrong one in its place proves
                // that the file's is the one used.
                let url = &settings.database.url;
                let (scheme, rest) = url.split_once("://").unwrap();
                let (credentials, place) = rest.split_once('@').unwrap();
                let (user, password) = credentials.split_once(':').unwrap();
                std::fs::write(&file, format!("{password}\n")).unwrap();
                settings.database.url = format!("{scheme}://{user}:not-the-password@{place}");
                settings.database.password_file = Some(file);
                settings.database.startup_timeout = std::time::Duration::from_secs(3);
            }
        })
        .spawn()
        .await;
    app.post_expect("/opd/patient/register", &patient(200), 201)
        .await;
    assert_eq!(app.count("select count(*) from patients").await, 1);
    let shown = format!("{:?}", app.settings.database);
    assert!(!shown.contains("not-the-password"), "{shown}");
    std::fs::remove_dir_all(&dir).unwrap();
}
