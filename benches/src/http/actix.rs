//! actix-web 4 with one worker.

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};

use super::{JSON_BODY, PLAINTEXT_BODY};

/// `GET /plaintext`.
async fn plaintext() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body(PLAINTEXT_BODY)
}

/// `GET /json`.
async fn json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(JSON_BODY)
}

/// Serves on `addr` with one worker until killed.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    actix_web::rt::System::new()
        .block_on(async move {
            HttpServer::new(|| {
                App::new()
                    .route("/plaintext", web::get().to(plaintext))
                    .route("/json", web::get().to(json))
            })
            .workers(1)
            .disable_signals()
            .bind(addr)?
            .run()
            .await
        })
        .map_err(|e| format!("actix-web on {addr}: {e}"))
}
