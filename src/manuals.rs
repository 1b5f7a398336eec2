//! `mcp-remote-client completions <shell>` and `mcp-remote-client man [DIR]`: the shell
//! completions and the man pages, made from the same clap definitions that parse the
//! command line, so they never disagree with `--help`. The release packages carry
//! them; a user of `cargo install` makes them with these two commands.

use clap::{Arg, Command};
use std::path::PathBuf;

/// The programs documented, by name, and their command-line definitions.
pub struct Programs {
    pub proxy: Command,
    pub client: Command,
}

fn cli() -> Command {
    Command::new("mcp-remote-client")
        .about("Shell completions and man pages of mcp-remote and mcp-remote-client")
        .subcommand_required(true)
        .subcommand(
            Command::new("completions")
                .about("Print the completion script for a shell on stdout")
                .after_help("Examples:\n  mcp-remote-client completions bash > ~/.local/share/bash-completion/completions/mcp-remote\n  mcp-remote-client completions zsh --program mcp-remote-client > ~/.zfunc/_mcp-remote-client\n  mcp-remote-client completions fish > ~/.config/fish/completions/mcp-remote.fish")
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(clap::value_parser!(clap_complete::Shell)),
                )
                .arg(
                    Arg::new("program")
                        .long("program")
                        .default_value("mcp-remote")
                        .value_parser(["mcp-remote", "mcp-remote-rs", "mcp-remote-client"])
                        .help("The program the script completes"),
                ),
        )
        .subcommand(
            Command::new("man")
                .about("Write the man pages (mcp-remote.1, mcp-remote-client.1) into DIR")
                .arg(
                    Arg::new("dir")
                        .default_value(".")
                        .value_parser(clap::value_parser!(PathBuf)),
                ),
        )
}

/// Run `mcp-remote-client completions|man …` (`args` start with the program name).
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>, programs: Programs) -> i32 {
    let matches = match cli().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match matches.subcommand() {
        Some(("completions", m)) => {
            let shell = *m
                .get_one::<clap_complete::Shell>("shell")
                .expect("required");
            let program = m.get_one::<String>("program").expect("defaulted");
            let mut command = match program.as_str() {
                "mcp-remote-client" => programs.client,
                _ => programs.proxy,
            };
            clap_complete::generate(shell, &mut command, program, &mut std::io::stdout());
            0
        }
        Some(("man", m)) => {
            let dir = m.get_one::<PathBuf>("dir").expect("defaulted");
            match write_pages(dir, programs) {
                Ok(written) => {
                    for path in written {
                        println!("{}", path.display());
                    }
                    0
                }
                Err(e) => {
                    eprintln!("mcp-remote-client man: {}: {e}", dir.display());
                    1
                }
            }
        }
        _ => 2,
    }
}

fn write_pages(dir: &std::path::Path, programs: Programs) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for command in [programs.proxy, programs.client] {
        let path = dir.join(format!("{}.1", command.get_name()));
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::fs::write(&path, page)?;
        written.push(path);
    }
    Ok(written)
}
