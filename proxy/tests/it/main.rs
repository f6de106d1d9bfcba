//! Integration tests of the proxy against real mariadbd clusters, with real clients.

mod admin;
mod bad_input;
mod cli;
mod clients;
mod commands;
mod consistency;
mod digests;
mod fidelity;
mod limits;
mod mariadb_suite;
mod multiplex;
mod pymysql;
mod read_only_transactions;
mod routing;
mod suites;
mod support;
mod tenants;
