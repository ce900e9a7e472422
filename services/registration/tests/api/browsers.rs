//! What a browser can be made to send: a form or an `<img>` of another site (cross-site request
//! forgery), a request under the attacker's own name (DNS rebinding), and request ids of any
//! size. Each refusal is paired with the request that passes.

use opd_testing::{Method, expect_problem};

use crate::helpers::{REGISTER, builder, patient, register, spawn_app, started};

const BOOK_PATIENT: &str = r#"{"full_name":"chanaka fernando","address":"44, sw19, london","id":200,"sex":"male","phone":222222222}"#;

#[tokio::test]
async fn a_body_not_sent_as_json_is_415_unless_form_encoding_is_accepted() {
    let app = spawn_app().await;
    for content_type in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data",
    ] {
        let answer = app
            .client
            .post(app.url(REGISTER))
            .header("content-type", content_type)
            .body(BOOK_PATIENT)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(answer, 415).await;
        assert_eq!(problem["type"], "/problems/unsupported-media-type");
    }
    let no_type = app.client.post(app.url(REGISTER)).body(BOOK_PATIENT);
    expect_problem(no_type.send().await.unwrap(), 415).await;
    assert_eq!(app.count("select count(*) from patients").await, 0);
    // As JSON it is taken; with a charset, or as a +json type, too.
    let json_with_charset = app
        .client
        .post(app.url(REGISTER))
        .header("content-type", "application/json; charset=utf-8")
        .body(BOOK_PATIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_charset.status(), 201);

    // http.accept_form_encoded_json takes the book's curl as printed.
    let book = started(builder().settings(opd_testing::book_curl)).await;
    book.curl_expect(Method::POST, REGISTER, BOOK_PATIENT, 201)
        .await;
}

#[tokio::test]
async fn a_page_of_another_site_changes_nothing() {
    let app = spawn_app().await;
    register(&app, 100).await;
    let post = |headers: &[(&'static str, &'static str)], body: &'static str| {
        let mut request = app
            .client
            .post(app.url(REGISTER))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let forged = r#"{"id":666,"full_name":"forged"}"#;
    // Modern browsers say where a request comes from; older ones send Origin.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
    ] {
        let problem = expect_problem(post(&headers, forged).await.unwrap(), 403).await;
        assert_eq!(problem["type"], "/problems/cross-site", "{headers:?}");
    }
    // The book's GETs that change state, as an <img> tag sends them.
    for path in ["/opd/patient/token/100", "/opd/patient/token/reset/500"] {
        let image = app
            .client
            .get(app.url(path))
            .header("sec-fetch-site", "cross-site")
            .header("sec-fetch-dest", "image")
            .send()
            .await
            .unwrap();
        expect_problem(image, 403).await;
    }
    assert_eq!(app.count("select count(*) from patients").await, 1);
    assert_eq!(app.count("select count(*) from issued_tokens").await, 1);
    // Reading from another site is not refused (the browser keeps the answer from the page).
    let read = app
        .client
        .get(app.url("/opd/patient/view/100"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // The platform's own pages and clients that are not browsers pass.
    let same_origin = post(
        &[("sec-fetch-site", "same-origin")],
        r#"{"id":101,"full_name":"a"}"#,
    );
    assert_eq!(same_origin.await.unwrap().status(), 201);
    let origin = app.url("");
    let own_origin = app
        .client
        .post(app.url(REGISTER))
        .header("content-type", "application/json")
        .header("origin", origin.trim_end_matches('/'))
        .body(r#"{"id":102,"full_name":"b"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(own_origin.status(), 201);
    assert_eq!(
        app.get_expect("/opd/patient/token/100", 200).await["token"],
        4
    );
}

#[tokio::test]
async fn a_request_under_another_name_is_421() {
    let app = started(builder().settings(|settings| {
        settings.http.allowed_hosts = vec!["localhost".into(), "registration".into()];
    }))
    .await;
    for path in ["/opd/patient/view/1", "/readyz", "/openapi.json"] {
        let rebound = app
            .client
            .get(app.url(path))
            .header("host", "evil.example:9090")
            .send()
            .await
            .unwrap();
        let problem = expect_problem(rebound, 421).await;
        assert_eq!(problem["type"], "/problems/unknown-host", "{path}");
    }
    let rebound_post = app
        .client
        .post(app.url(REGISTER))
        .header("host", "evil.example")
        .json(&patient(1))
        .send()
        .await
        .unwrap();
    expect_problem(rebound_post, 421).await;
    assert_eq!(app.count("select count(*) from patients").await, 0);
    // Its own names, and any address (the URL here is 127.0.0.1), pass.
    for host in ["localhost:9090", "registration", "127.0.0.1"] {
        let own = app
            .client
            .get(app.url("/readyz"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn request_ids_are_kept_only_when_short_and_plain() {
    let app = spawn_app().await;
    let register_with = |id: String, patient_id: i64| {
        app.client
            .post(app.url(REGISTER))
            .header("x-request-id", id)
            .json(&patient(patient_id))
            .send()
    };
    let kept = register_with("desk-3:42".into(), 1).await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "desk-3:42");
    let long = "a".repeat(5_000);
    for (id, patient_id) in [(long, 2), (r#"x","forged":"1"#.to_owned(), 3)] {
        let answer = register_with(id.clone(), patient_id).await.unwrap();
        assert_eq!(answer.status(), 201);
        let given = answer.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(given, id);
        assert_eq!(
            (given.len(), given.matches('-').count()),
            (36, 4),
            "{given}"
        );
    }
    // What reaches the events: the kept id, and fresh ones for the others.
    let ids: Vec<String> = sqlx::query_scalar("select request_id from outbox order by created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(ids[0], "desk-3:42");
    assert!(ids[1..].iter().all(|id| id.len() == 36), "{ids:?}");
}
