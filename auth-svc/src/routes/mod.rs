//! HTTP routes of auth-svc (see spec/api.md, "Users and sessions" and
//! "Multi-factor authentication").

use actix_web::web;

pub fn configure(_cfg: &mut web::ServiceConfig) {}
