//! HTTP routes of chat-svc (see spec/api.md).

use actix_web::web;

pub fn configure(_cfg: &mut web::ServiceConfig) {}
