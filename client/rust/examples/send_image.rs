//! Sends an image to a peer and prints what arrives for the sender meanwhile.
//!
//! ```sh
//! COURIER_TOKEN=$(courier-server token --user alice) \
//!   cargo run -p courier-client --example send_image -- bob cat.png
//! ```

use courier_client::{Client, Error, Event, SendOptions};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(peer), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: send_image PEER IMAGE");
        std::process::exit(2);
    };
    let server =
        std::env::var("COURIER_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let token = std::env::var("COURIER_TOKEN")
        .map_err(|_| Error::Unauthenticated("set COURIER_TOKEN".into()))?;
    let client = Client::connect(&server, &token).await?;

    // Start the upload; it runs in the background while we watch its progress.
    let upload = client.upload_image(&path)?;
    println!("upload {} started", upload.request_id());
    let mut progress = upload.progress();
    let printer = tokio::spawn(async move {
        while let Some(p) = progress.next().await {
            println!("  {} / {} bytes", p.done, p.total);
        }
    });
    let media = upload.await?;
    let _ = printer.await;
    println!(
        "stored {} ({}x{})",
        media.media_id, media.width, media.height
    );

    // Send it; an offline peer gets it when they next subscribe.
    let receipt = client
        .send_peer_message(&peer, media.image_message(), SendOptions::offline())
        .await?;
    println!("{:?} as message {}", receipt.delivery, receipt.message_id);

    // Anything sent to us meanwhile.
    let mut feed = client.subscribe();
    while let Some(event) = feed.next().await {
        match event? {
            Event::Ready { offline_count, .. } => {
                println!("{offline_count} messages arrived while we were away");
                break;
            }
            Event::Message(m) => println!("from {}: {:?}", m.from, m.message),
            Event::Disconnected { reason } => println!("reconnecting: {reason}"),
        }
    }
    Ok(())
}
