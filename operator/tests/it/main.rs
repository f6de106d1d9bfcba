//! The operator's integration and end-to-end tests, in one binary so they link once.

mod agent;
mod backup;
mod chaos;
mod cli;
mod crd;
mod helm_chart;
mod k8s_schemas;
mod kube_api;
mod local;
mod maintenance;
mod orchestrate;
mod pause;
mod pitr;
mod push;
mod rolling;
mod switchover;
mod tenant_cli;
mod tenant_move;
mod tenant_move_failover;
mod tenant_move_faults;
mod tenant_pool;
mod tenant_rebalance;
mod tls;
