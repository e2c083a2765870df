//! `wsgate import-nginx`'s command line (clap derive).

use clap::Args;
use std::path::PathBuf;

/// `wsgate import-nginx FILE [-o OUT] [--prefix DIR]`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ImportArgs {
    /// The nginx config to translate (nginx.conf, or a file from sites-enabled/ or conf.d/)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the wsgate config here instead of stdout
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// nginx's configuration prefix, where relative `include` and certificate paths are read
    /// from [default: FILE's directory, as `nginx -c FILE`]
    #[arg(short = 'p', long = "prefix", value_name = "DIR")]
    pub prefix: Option<PathBuf>,
}
