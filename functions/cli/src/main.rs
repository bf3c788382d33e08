//! `azs-usage`: the operator CLI. Every command runs the same code the serverless functions run
//! (`azs_app::wiring::Services`). The command line is `azs_usage::model`, what each command calls is
//! `dispatch`, and what it prints is `azs_usage::render`.

mod audit;
mod dispatch;
mod mapping_import;
mod rating;

// say!, say_inline!, say_error!: println!/print!/eprintln! through the terminal filter (src/terminal.rs).
#[macro_use]
extern crate azs_usage;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = azs_usage::model::Cli::parse();
    let runtime = azs_process::runtime().expect("tokio runtime");
    match runtime.block_on(dispatch::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            say_error!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
