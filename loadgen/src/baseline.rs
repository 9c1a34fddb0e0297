//! The ceilings, measured in the same run: a trivial actix-web handler, a
//! bare actix-ws echo, and an in-process broadcast to N sockets. Every other
//! figure is also reported as a ratio to one of these.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;

type Room = Arc<Mutex<Vec<actix_ws::Session>>>;

async fn ok() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn echo(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (res, mut session, mut stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let actix_ws::Message::Text(t) = msg {
                if session.text(t).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok(res)
}

async fn join(
    req: HttpRequest,
    body: web::Payload,
    room: web::Data<Room>,
) -> actix_web::Result<HttpResponse> {
    let (res, session, mut stream) = actix_ws::handle(&req, body)?;
    if let Ok(mut r) = room.lock() {
        r.push(session);
    }
    actix_web::rt::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    Ok(res)
}

/// Sends the body to every socket in the room, serialised once.
async fn broadcast(body: String, room: web::Data<Room>) -> HttpResponse {
    let sessions: Vec<actix_ws::Session> = room.lock().map(|r| r.clone()).unwrap_or_default();
    let text: bytestring::ByteString = body.into();
    for mut s in sessions {
        let _ = s.text(text.clone()).await;
    }
    HttpResponse::Ok().finish()
}

/// Starts the baseline server on a free loopback port with `workers`
/// workers (the services run one per core); returns its base URL.
pub fn start(workers: usize) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let room: Room = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::new(room);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/ok", web::get().to(ok))
            .route("/echo", web::get().to(echo))
            .route("/room", web::get().to(join))
            .route("/room", web::post().to(broadcast))
    })
    .workers(workers)
    .listen(listener)?
    .run();
    tokio::spawn(server);
    Ok(format!("http://127.0.0.1:{port}"))
}
