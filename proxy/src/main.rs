use clap::Parser;
use lagless_proxy::config::Args;

fn main() {
    std::process::exit(lagless_proxy::cli::run(Args::parse()));
}
