//! Providers follow no redirects: a 307 at a provider's URL would send the command body (and
//! its credentials) to another host and take that host's answer for the provider's. The
//! redirect is an unexpected answer: the provider's resources are unknown, and the other host
//! hears nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::support::cli::{exited, json_of, labctl, write};

/// Serves `app` on a free loopback port; returns the port.
async fn serve(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_redirects_is_unknown_and_the_target_hears_nothing() {
    let heard = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&heard);
    let elsewhere = serve(axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "[{\"result\": 0, \"arguments\": {\"Dhcp4\": {\"subnet4\": []}}}]" }
    }))
    .await;
    let location = format!("http://127.0.0.1:{elsewhere}/");
    let redirector = serve(axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response()
        }
    }))
    .await;

    let repo = tempfile::tempdir().unwrap();
    write(
        repo.path(),
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"http://127.0.0.1:{redirector}/\", timeoutSeconds: 2}}\n"
        ),
    );
    write(
        repo.path(),
        "dhcp/a.yaml",
        "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {name: a}\nspec: {subnet: 10.0.1.0/24, mac: \"aa:bb:cc:00:00:01\", ip: 10.0.1.5, hostname: a}\n",
    );
    let out = tokio::task::spawn_blocking(move || {
        labctl(&["plan", repo.path().to_str().unwrap(), "--format", "json"])
    })
    .await
    .unwrap();
    exited(&out, 1);
    let plan = json_of(&out)["plan"].clone();
    assert!(plan["unobservable"]["kea"].is_string(), "{plan}");
    assert_eq!(plan["deviations"][0]["type"], "unknown", "{plan}");
    assert_eq!(
        heard.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}
