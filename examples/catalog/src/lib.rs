//! A product catalog over SQLite (or PostgreSQL: `DATABASE_URL`), cached with cache-runtime:
//! the service (`http`), its repository (`repo`) and database (`db`), and the load demo
//! (`demo`, `load`).

pub mod db;
pub mod demo;
pub mod http;
pub mod load;
pub mod redis_setup;
pub mod repo;
pub mod search;
