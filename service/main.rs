//! The `courier-server` binary: parse the command line, set up JSON logs (and traces),
//! and either
//! serve, mint a token, or act on stored media.

use std::process::ExitCode;

use clap::Parser;
use courier_server::{
    Cli, Command, RevokeArgs, ServeConfig, TlsDevArgs, TokenArgs, admin, auth, revocation, server,
    telemetry, tls,
};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(Box::new(cli.serve))) {
        Command::Serve(config) => serve(*config).await,
        Command::Token(args) => token(args),
        Command::Revoke(args) => revoke(args).await,
        Command::TlsDev(args) => tls_dev(args),
        Command::Media(args) => media(args).await,
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
async fn serve(config: ServeConfig) -> ExitCode {
    let telemetry = match telemetry::init(config.otlp_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(e),
    };
    let code = serve_until_shutdown(config).await;
    telemetry.shutdown().await;
    code
}

async fn serve_until_shutdown(config: ServeConfig) -> ExitCode {
    let grpc = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => return fail(format!("cannot listen on {}: {e}", config.listen)),
    };
    let metrics = match TcpListener::bind(config.metrics_listen).await {
        Ok(listener) => listener,
        Err(e) => return fail(format!("cannot listen on {}: {e}", config.metrics_listen)),
    };
    let admin = match admin_service(&config).await {
        Ok(admin) => admin,
        Err(e) => return fail(e),
    };
    let result = server::run(config, grpc, metrics, shutdown_signal()).await;
    if let Some((stop, task)) = admin {
        let _ = stop.send(());
        let _ = task.await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

/// The AdminService on `--admin-listen`, when set: the sender that stops it and its
/// task.
async fn admin_service(
    config: &ServeConfig,
) -> Result<
    Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    String,
> {
    let Some(addr) = config.admin_listen else {
        return Ok(None);
    };
    let secret =
        admin::grpc::check_secret(config.admin_secret.as_deref()).map_err(|e| e.to_string())?;
    let media = admin::grpc::open_store(config.storage.as_deref(), &config.data_dir)
        .map_err(|e| format!("opening the media store for the admin service: {e}"))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(target: "courier::admin", admin_listen = %bound, "courier-server admin service listening");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = admin::grpc::serve(listener, media, secret, shutdown).await {
            tracing::error!(error = %e, "the admin service failed");
        }
    });
    Ok(Some((stop, task)))
}

/// Prints a token for `args.user`.
fn token(args: TokenArgs) -> ExitCode {
    let secret = match auth::resolve_secret(args.jwt_secret.as_deref(), &args.data_dir) {
        Ok(secret) => secret,
        Err(e) => return fail(format!("reading or creating the JWT secret: {e}")),
    };
    match auth::mint(&secret, &args.user, args.ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Revokes every token of `args.user` issued before now.
async fn revoke(args: RevokeArgs) -> ExitCode {
    match revocation::revoke(&args.data_dir, args.bus.as_deref(), &args.user).await {
        Ok(at) => {
            println!(
                "revoked every token of {} issued before {at} (unix seconds)",
                args.user
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Runs an admin action on stored media.
async fn media(args: admin::MediaArgs) -> ExitCode {
    admin::init_logs();
    match admin::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

/// Writes development certificates.
fn tls_dev(args: TlsDevArgs) -> ExitCode {
    match tls::write_dev_certificates(&args.out, &args.hosts, args.days) {
        Ok(()) => {
            println!(
                "wrote ca.pem, server.pem, server.key, client.pem and client.key to {}",
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

fn fail(message: String) -> ExitCode {
    tracing::error!(%message, "courier-server failed");
    eprintln!("courier-server: {message}");
    ExitCode::FAILURE
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
