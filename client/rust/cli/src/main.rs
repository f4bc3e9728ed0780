//! `courier`: send images, files and text to people and channels from a terminal.
//!
//! Every command prints one line per result, or with `--json` one JSON object per line
//! for scripts; errors print one line on stderr and exit 1 (with `--json`, also an
//! `{"error": {...}}` line on stdout), usage errors exit 2, Ctrl-C exits 130.
//! `courier --json` is the Rust interop client of `docs/interop.md`.

mod output;
mod transfer;

use std::{path::PathBuf, process::ExitCode};

use clap::{ArgGroup, Args, Parser, Subcommand};
use courier_client::{Client, Error, Event, MediaKind, Message, ResumableOutcome, SendOptions};
use futures::StreamExt;

use output::Output;

/// Send images, files and text through a courier server.
#[derive(Debug, Parser)]
#[command(name = "courier", version, about)]
struct Cli {
    /// The server's URL.
    #[arg(
        long,
        global = true,
        env = "COURIER_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Your token (mint one with `courier-server token --user NAME`).
    #[arg(long, global = true, env = "COURIER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// For an https:// server: trust this CA certificate (PEM) instead of the
    /// system's roots.
    #[arg(long, global = true, env = "COURIER_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload a file (or an image with --image) and print its media record.
    Upload {
        /// The file to upload.
        path: PathBuf,
        /// Upload it as an image (the server reads its width and height).
        #[arg(long)]
        image: bool,
        /// Upload with the resumable API, keeping its state in `PATH.courier-upload`:
        /// a run after a broken connection or a crash continues from what the server
        /// holds. The media line gains `resumed_from` (bytes already stored).
        #[arg(long)]
        resume: bool,
        /// With --resume: stop after writing this many parts, without committing, and
        /// print a `paused` line (the next run continues).
        #[arg(long, requires = "resume", value_parser = clap::value_parser!(u64).range(1..))]
        stop_after_parts: Option<u64>,
    },
    /// Send a message to a peer or a channel.
    Send(SendArgs),
    /// Join a channel.
    Join {
        /// The channel.
        channel: String,
    },
    /// Leave a channel.
    Leave {
        /// The channel.
        channel: String,
    },
    /// List a channel's members.
    Members {
        /// The channel.
        channel: String,
    },
    /// Tell whether users are online.
    Online {
        /// The users.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Print every message as it arrives (Ctrl-C stops).
    Listen {
        /// Download every image and file received into this folder.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Fetch the server's thumbnail of every image received and save it into this
        /// folder (as `<name>.thumb.jpg` or `.png`), printing a `thumbnail` line.
        #[arg(long, value_name = "DIR")]
        thumbnails: Option<PathBuf>,
        /// The thumbnail size asked for with --thumbnails, rounded up by the server to
        /// 96, 320 or 640 pixels on the longer side.
        #[arg(long, default_value_t = 320, value_parser = clap::value_parser!(u32).range(1..))]
        thumbnail_size: u32,
        /// Exit after this many messages (and their saves).
        #[arg(long)]
        count: Option<u64>,
        /// Resume after this cursor (of a message or ready line printed before):
        /// first every event after it that the server still holds.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Save the server's thumbnail of an image (96, 320 or 640 pixels on the longer
    /// side, upright; a JPEG, or a PNG for images with transparency).
    Thumbnail {
        /// The media ID of the image.
        media_id: String,
        /// The most pixels on the longer side, rounded up by the server to 96, 320 or 640.
        #[arg(long, default_value_t = 320, value_parser = clap::value_parser!(u32).range(1..))]
        max_edge: u32,
        /// Where to write it.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a signed HTTP link to a stored image or file (or its thumbnail), which any
    /// HTTP client can fetch until it expires; whoever holds it can.
    Url {
        /// The media ID.
        media_id: String,
        /// A link to the thumbnail of at most this many pixels on the longer side
        /// (rounded up by the server to 96, 320 or 640); 0, the default: the object.
        #[arg(long, default_value_t = 0)]
        max_edge: u32,
        /// How long the link works (for example 60s, 10m); default: the server's
        /// (5 minutes), capped by the server (1 hour) and by the token's expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Download an image or file by its media ID.
    Download {
        /// The media ID.
        media_id: String,
        /// Where to write it.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Delete one of your uploads: its ID stops working for downloads and new sends
    /// (messages already sent still arrive).
    Delete {
        /// The media ID.
        media_id: String,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("content").required(true).multiple(false)))]
struct SendArgs {
    /// The peer to send to.
    #[arg(long, conflicts_with = "channel", required_unless_present = "channel")]
    to: Option<String>,
    /// The channel to send to (you must have joined it).
    #[arg(long)]
    channel: Option<String>,
    /// Send this text.
    #[arg(long, group = "content")]
    text: Option<String>,
    /// Upload this image and send it.
    #[arg(long, group = "content")]
    image: Option<PathBuf>,
    /// Upload this file and send it.
    #[arg(long, group = "content")]
    file: Option<PathBuf>,
    /// Send an already uploaded image or file by its media ID.
    #[arg(long, group = "content")]
    media_id: Option<String>,
    /// Keep the message for an offline peer until they next listen.
    #[arg(long)]
    offline: bool,
    /// Upload --image or --file with the resumable API (see `upload --resume`).
    #[arg(long)]
    resume: bool,
    /// The message's client ID (1 to 64 printable ASCII characters): sending again
    /// with the same ID within the server's dedup window delivers nothing again and
    /// prints the first send's answer. Without it, a new one is made.
    #[arg(long, value_name = "ID")]
    client_message_id: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    match run(cli, &out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Cancelled) => {
            eprintln!("courier: cancelled");
            ExitCode::from(130)
        }
        Err(e @ Error::PeerUnreachable { .. }) => {
            if let Error::PeerUnreachable { message_id, .. } = &e {
                out.unreachable(message_id);
            }
            eprintln!("courier: {e} (send with --offline to keep it)");
            ExitCode::FAILURE
        }
        Err(e) => {
            out.error(&e);
            eprintln!("courier: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, out: &Output) -> Result<(), Error> {
    let token = cli.token.ok_or_else(|| {
        Error::Unauthenticated("no token: pass --token or set COURIER_TOKEN (courier-server token --user NAME mints one)".into())
    })?;
    let mut options = courier_client::ClientOptions::default();
    if let Some(path) = &cli.ca_file {
        options.tls_ca_pem =
            Some(std::fs::read(path).map_err(|e| {
                Error::BadUrl(format!("reading the CA file {}: {e}", path.display()))
            })?);
    }
    let client = Client::connect_with(&cli.server, &token, options).await?;
    match cli.command {
        Command::Upload {
            path,
            image,
            resume: true,
            stop_after_parts,
        } => {
            let kind = if image {
                MediaKind::Image
            } else {
                MediaKind::File
            };
            let upload = client.upload_resumable_parts(&path, kind, stop_after_parts)?;
            match transfer::finish(upload, &format!("uploading {}", path.display())).await? {
                ResumableOutcome::Completed(done) => out.resumed(&done.media, done.resumed_from),
                ResumableOutcome::Paused {
                    upload_id,
                    committed_size,
                } => out.paused(&upload_id, committed_size),
            }
        }
        Command::Upload { path, image, .. } => {
            let upload = if image {
                client.upload_image(&path)?
            } else {
                client.upload_file(&path)?
            };
            let media = transfer::finish(upload, &format!("uploading {}", path.display())).await?;
            out.media(&media);
        }
        Command::Send(args) => send(&client, args, out).await?,
        Command::Join { channel } => {
            client.join_channel(&channel).await?;
            out.done("joined", &channel);
        }
        Command::Leave { channel } => {
            client.leave_channel(&channel).await?;
            out.done("left", &channel);
        }
        Command::Members { channel } => {
            out.members(&channel, &client.channel_members(&channel).await?)
        }
        Command::Online { users } => {
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            out.online(&client.query_online_status(&users).await?);
        }
        Command::Listen {
            save,
            thumbnails,
            thumbnail_size,
            count,
            after,
        } => {
            let thumbnails = thumbnails.map(|dir| (dir, thumbnail_size));
            listen(&client, save, thumbnails, count, after, out).await?
        }
        Command::Thumbnail {
            media_id,
            max_edge,
            output,
        } => {
            let thumb = client.thumbnail(&media_id, max_edge).await?;
            std::fs::write(&output, &thumb.data)?;
            out.thumbnail(&media_id, &thumb, &output);
        }
        Command::Url {
            media_id,
            max_edge,
            ttl,
        } => {
            let options = courier_client::MediaUrlOptions {
                max_edge,
                lifetime: ttl,
            };
            out.url(&client.media_url(&media_id, options).await?);
        }
        Command::Download { media_id, output } => {
            let download = client.download_to_file(&media_id, &output)?;
            let media = transfer::finish(download, &format!("downloading {media_id}")).await?;
            out.saved(&media, &output, &transfer::sha256_of_file(&output)?);
        }
        Command::Delete { media_id } => {
            client.delete_media(&media_id).await?;
            out.deleted(&media_id);
        }
    }
    Ok(())
}

async fn send(client: &Client, args: SendArgs, out: &Output) -> Result<(), Error> {
    let message = if let Some(text) = args.text {
        Message::text(text)
    } else if let (true, Some(path)) = (args.resume, &args.image) {
        let upload = client.upload_resumable(path, MediaKind::Image)?;
        transfer::finish(upload, &format!("uploading {}", path.display()))
            .await?
            .media
            .image_message()
    } else if let (true, Some(path)) = (args.resume, &args.file) {
        let upload = client.upload_resumable(path, MediaKind::File)?;
        transfer::finish(upload, &format!("uploading {}", path.display()))
            .await?
            .media
            .file_message()
    } else if let Some(path) = args.image {
        let upload = client.upload_image(&path)?;
        transfer::finish(upload, &format!("uploading {}", path.display()))
            .await?
            .image_message()
    } else if let Some(path) = args.file {
        let upload = client.upload_file(&path)?;
        transfer::finish(upload, &format!("uploading {}", path.display()))
            .await?
            .file_message()
    } else if let Some(media_id) = args.media_id {
        client.get_media(&media_id).await?.message()
    } else {
        return Err(Error::InvalidArgument(
            "say what to send: --text, --image, --file or --media-id".into(),
        ));
    };
    let id = args
        .client_message_id
        .unwrap_or_else(courier_client::new_client_message_id);
    let receipt = match (&args.to, &args.channel) {
        (Some(peer), _) => {
            let options = SendOptions {
                offline: args.offline,
            };
            client
                .send_peer_message_with_id(peer, message, options, &id)
                .await?
        }
        (None, Some(channel)) => {
            client
                .send_channel_message_with_id(channel, message, &id)
                .await?
        }
        (None, None) => {
            return Err(Error::InvalidArgument(
                "say where to send: --to PEER or --channel CH".into(),
            ));
        }
    };
    out.sent(&receipt);
    Ok(())
}

/// Fetches the server's thumbnail of `image` and saves it into `dir`. A refusal (not
/// an image the server reads, expired) is reported and does not end the feed.
async fn save_thumbnail(
    client: &Client,
    image: &courier_client::ImageMessage,
    dir: &std::path::Path,
    size: u32,
    out: &Output,
) -> Result<(), Error> {
    let thumb = match client.thumbnail(&image.media_id, size).await {
        Ok(thumb) => thumb,
        Err(Error::Cancelled) => return Err(Error::Cancelled),
        Err(e) => {
            eprintln!("courier: no thumbnail of {}: {e}", image.media_id);
            return Ok(());
        }
    };
    let stem = std::path::Path::new(&image.file_name)
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("image");
    let name = format!("{stem}.thumb.{}", thumb.extension());
    let path = courier_client::unique_path(dir, &name, &image.media_id)?;
    std::fs::write(&path, &thumb.data)?;
    out.thumbnail(&image.media_id, &thumb, &path);
    Ok(())
}

async fn listen(
    client: &Client,
    save: Option<PathBuf>,
    thumbnails: Option<(PathBuf, u32)>,
    count: Option<u64>,
    after: u64,
    out: &Output,
) -> Result<(), Error> {
    if let Some(dir) = &save {
        std::fs::create_dir_all(dir)?;
    }
    if let Some((dir, _)) = &thumbnails {
        std::fs::create_dir_all(dir)?;
    }
    let mut feed = client.subscribe_after(after);
    let mut messages = 0;
    loop {
        if count.is_some_and(|count| messages >= count) {
            return Ok(());
        }
        let event = tokio::select! {
            event = feed.next() => event,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(event) = event else { return Ok(()) };
        let event = event?;
        out.event(&event);
        if matches!(event, Event::Message(_)) {
            messages += 1;
        }
        if let (Some((dir, size)), Event::Message(received)) = (&thumbnails, &event)
            && let Message::Image(image) = &received.message
        {
            save_thumbnail(client, image, dir, *size, out).await?;
        }
        if let (Some(dir), Event::Message(received)) = (&save, &event)
            && let Some(media_id) = received.message.media_id()
        {
            let name = match &received.message {
                Message::Image(i) => &i.file_name,
                Message::File(f) => &f.file_name,
                _ => continue,
            };
            let path = courier_client::unique_path(dir, name, media_id)?;
            let download = client.download_to_file(media_id, &path)?;
            match transfer::finish(download, &format!("saving {}", path.display())).await {
                Ok(media) => out.saved(&media, &path, &transfer::sha256_of_file(&path)?),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                // One failed download does not end the feed.
                Err(e) => eprintln!("courier: could not save {media_id}: {e}"),
            }
        }
    }
}
