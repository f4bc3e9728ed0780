package dev.courier.interop;

import dev.courier.CourierClient;
import dev.courier.Delivery;
import dev.courier.FileMessage;
import dev.courier.FileNames;
import dev.courier.ImageMessage;
import dev.courier.Media;
import dev.courier.MediaKind;
import dev.courier.MediaUrl;
import dev.courier.MediaUrlOptions;
import dev.courier.Message;
import dev.courier.RawMessage;
import dev.courier.ReceivedMessage;
import dev.courier.ResumedUpload;
import dev.courier.SendOptions;
import dev.courier.SendReceipt;
import dev.courier.Subscription;
import dev.courier.SubscriptionListener;
import dev.courier.TextMessage;
import dev.courier.Thumbnail;
import dev.courier.UploadArgs;
import dev.courier.errors.CancelledException;
import dev.courier.errors.CourierException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.LocalIoException;
import dev.courier.errors.PeerUnreachableException;
import dev.courier.errors.UnauthenticatedException;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The Java interop client of docs/interop.md: one command per run, one JSON object per
 * line on stdout, exit 0 on success, 1 for a refused call (with an {@code {"error": ...}}
 * line), 2 for a usage error. Built on the library alone, so it is also its example.
 */
public final class Main {
  /** Where the JSON lines go. */
  private static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

  private Main() {}

  /**
   * Runs one interop command.
   *
   * @param argv the command line
   */
  public static void main(String[] argv) {
    System.exit(run(argv));
  }

  static int run(String[] argv) {
    Args args;
    try {
      args = Args.parse(argv);
    } catch (Usage e) {
      System.err.println("interop: " + e.getMessage());
      System.err.println(Usage.TEXT);
      return 2;
    }
    try {
      validate(args);
    } catch (Usage e) {
      System.err.println("interop: " + e.getMessage());
      System.err.println(Usage.TEXT);
      return 2;
    }
    try (CourierClient client = connect(args)) {
      command(client, args);
      return 0;
    } catch (PeerUnreachableException e) {
      line(Json.of("message_id", e.messageId(), "state", "unreachable"));
      System.err.println(
          "interop: " + e.peer() + " is offline; the message was not kept (send with --offline to keep it)");
      return 1;
    } catch (CancelledException e) {
      System.err.println("interop: cancelled");
      return 130;
    } catch (CourierException e) {
      error(e);
      return 1;
    } catch (IllegalArgumentException e) {
      error(new InvalidArgumentException(e.getMessage(), e));
      return 1;
    } catch (IOException e) {
      error(new LocalIoException(e.getMessage(), e));
      return 1;
    } catch (InterruptedException e) {
      System.err.println("interop: interrupted");
      return 130;
    }
  }

  /** Checks the words of each command before anything connects. */
  private static void validate(Args args) throws Usage {
    switch (args.command) {
      case "upload" -> {
        args.exactly(1, "one PATH");
        String parts = args.value("--stop-after-parts");
        if (parts != null && !args.has("--resume")) {
          throw new Usage("--stop-after-parts needs --resume");
        }
        if (parts != null && (!parts.matches("[0-9]{1,9}") || Integer.parseInt(parts) < 1)) {
          throw new Usage("--stop-after-parts takes a number of parts of at least 1");
        }
      }
      case "join", "leave", "members" -> args.exactly(1, "one channel");
      case "delete" -> args.exactly(1, "one MEDIA_ID");
      case "url" -> {
        args.exactly(1, "one MEDIA_ID");
        urlOptions(args);
      }
      case "online" -> {
        if (args.positional.isEmpty()) {
          throw new Usage("online takes one or more user IDs");
        }
      }
      case "download" -> {
        args.exactly(1, "one MEDIA_ID");
        if (output(args) == null) {
          throw new Usage("download needs -o PATH");
        }
      }
      case "thumbnail" -> {
        args.exactly(1, "one MEDIA_ID");
        if (output(args) == null) {
          throw new Usage("thumbnail needs -o PATH");
        }
        maxEdge(args);
      }
      case "send" -> {
        args.exactly(0, "only flags");
        if ((args.value("--to") == null) == (args.value("--channel") == null)) {
          throw new Usage("send needs exactly one of --to PEER and --channel CH");
        }
        int contents = 0;
        for (String flag : List.of("--text", "--image", "--file", "--media-id")) {
          contents += args.value(flag) == null ? 0 : 1;
        }
        if (contents != 1) {
          throw new Usage("send needs exactly one of --text, --image, --file and --media-id");
        }
        if ("".equals(args.value("--client-message-id"))) {
          throw new Usage("--client-message-id takes a non-empty ID");
        }
      }
      case "listen" -> {
        args.exactly(0, "only flags");
        String count = args.value("--count");
        if (count != null && !count.matches("[0-9]{1,9}")) {
          throw new Usage("--count takes a number");
        }
        String after = args.value("--after");
        if (after != null && !after.matches("[0-9]{1,18}")) {
          throw new Usage("--after takes a cursor (a whole number)");
        }
      }
      default -> throw new Usage("unknown command " + args.command);
    }
  }

  /** The --max-edge of a thumbnail, 320 when absent. */
  private static int maxEdge(Args args) throws Usage {
    String edge = args.value("--max-edge");
    if (edge == null) {
      return 320;
    }
    if (!edge.matches("[0-9]{1,9}") || Integer.parseInt(edge) < 1) {
      throw new Usage("--max-edge takes a number of pixels of at least 1");
    }
    return Integer.parseInt(edge);
  }

  /** The --max-edge (0 when absent: the object itself) and --ttl of a link. */
  private static MediaUrlOptions urlOptions(Args args) throws Usage {
    MediaUrlOptions options = MediaUrlOptions.defaults();
    String edge = args.value("--max-edge");
    if (edge != null) {
      if (!edge.matches("[0-9]{1,9}")) {
        throw new Usage("--max-edge takes a number of pixels (0 for the object itself)");
      }
      options = options.withMaxEdge(Integer.parseInt(edge));
    }
    String ttl = args.value("--ttl");
    if (ttl != null) {
      options = options.withLifetime(duration(ttl));
    }
    return options;
  }

  /** A duration as the Rust CLI takes it: {@code 90s}, {@code 10m}, {@code 1h}, {@code 500ms}, {@code 1m30s}. */
  static Duration duration(String text) throws Usage {
    Matcher part = Pattern.compile("([0-9]{1,9})(ms|s|m|h)").matcher(text.trim());
    Duration total = Duration.ZERO;
    int at = 0;
    while (part.find() && part.start() == at) {
      long n = Long.parseLong(part.group(1));
      total =
          total.plus(
              switch (part.group(2)) {
                case "ms" -> Duration.ofMillis(n);
                case "s" -> Duration.ofSeconds(n);
                case "m" -> Duration.ofMinutes(n);
                default -> Duration.ofHours(n);
              });
      at = part.end();
    }
    if (at == 0 || at != text.trim().length() || total.isZero()) {
      throw new Usage("--ttl takes a positive duration such as 60s, 10m or 1h");
    }
    return total;
  }

  private static String output(Args args) {
    return args.value("-o") != null ? args.value("-o") : args.value("--output");
  }

  private static CourierClient connect(Args args) throws CourierException {
    String server = args.server != null ? args.server : System.getenv("COURIER_SERVER");
    if (server == null || server.isBlank()) {
      server = "http://127.0.0.1:50051";
    }
    String token = args.token != null ? args.token : System.getenv("COURIER_TOKEN");
    if (token == null || token.isBlank()) {
      throw new UnauthenticatedException(
          "no token: pass --token or set COURIER_TOKEN (courier-server token --user NAME mints one)");
    }
    // Several replicas' URLs, comma-separated, spread the calls over them.
    List<String> servers =
        Arrays.stream(server.split(",")).map(String::trim).filter(u -> !u.isEmpty()).toList();
    return CourierClient.builder().endpoints(servers).token(token).build();
  }

  private static void command(CourierClient client, Args args)
      throws CourierException, IOException, InterruptedException {
    switch (args.command) {
      case "upload" -> {
        Path path = Path.of(args.positional.get(0));
        MediaKind kind = args.has("--image") ? MediaKind.IMAGE : MediaKind.FILE;
        if (args.has("--resume")) {
          String parts = args.value("--stop-after-parts");
          ResumedUpload done =
              client
                  .uploadResumable(
                      UploadArgs.builder().file(path).kind(kind).build(),
                      parts == null ? 0 : Integer.parseInt(parts))
                  .await();
          if (done.media() == null) {
            line(
                Json.of(
                    "event", "paused",
                    "upload_id", done.uploadId(),
                    "committed_size", done.committedSize()));
          } else {
            line(media(done.media()).put("resumed_from", done.resumedFrom()));
          }
        } else {
          line(media(upload(client, path, kind)));
        }
      }
      case "send" -> send(client, args);
      case "join" -> {
        client.joinChannel(args.positional.get(0));
        line(Json.of("channel", args.positional.get(0), "result", "joined"));
      }
      case "leave" -> {
        client.leaveChannel(args.positional.get(0));
        line(Json.of("channel", args.positional.get(0), "result", "left"));
      }
      case "members" -> {
        List<String> members = client.channelMembers(args.positional.get(0));
        line(Json.of("channel", args.positional.get(0), "members", members));
      }
      case "online" -> {
        for (Map.Entry<String, Boolean> e : client.queryPeersOnlineStatus(args.positional).entrySet()) {
          line(Json.of("user_id", e.getKey(), "online", e.getValue()));
        }
      }
      case "download" -> {
        Path path = Path.of(output(args));
        Media media = client.downloadToFile(args.positional.get(0), path).await();
        line(saved(media, path));
      }
      case "thumbnail" -> thumbnail(client, args);
      case "delete" -> {
        client.deleteMedia(args.positional.get(0));
        line(Json.of("media_id", args.positional.get(0), "deleted", true));
      }
      case "url" -> {
        MediaUrl link;
        try {
          link = client.mediaUrl(args.positional.get(0), urlOptions(args));
        } catch (Usage e) {
          throw new IllegalStateException("validated: url", e);
        }
        // RFC 3339 in UTC with whole seconds, as the Rust CLI prints it.
        line(
            Json.of(
                "url", link.url().toString(),
                "expire_time", link.expireTime().truncatedTo(ChronoUnit.SECONDS).toString()));
      }
      case "listen" -> listen(client, args);
      default -> throw new IllegalStateException("validated: " + args.command);
    }
  }

  /** Saves the server's thumbnail of an image at -o PATH; a failed write leaves nothing there. */
  private static void thumbnail(CourierClient client, Args args)
      throws CourierException, IOException {
    String mediaId = args.positional.get(0);
    Path path = Path.of(output(args));
    int maxEdge;
    try {
      maxEdge = maxEdge(args);
    } catch (Usage e) {
      throw new IllegalStateException("validated: --max-edge", e);
    }
    Thumbnail thumb = client.thumbnail(mediaId, maxEdge);
    try {
      Files.write(path, thumb.data());
    } catch (IOException e) {
      Files.deleteIfExists(path);
      throw new LocalIoException("could not write " + path + ": " + e, e);
    }
    line(
        Json.of(
            "event", "thumbnail",
            "media_id", mediaId,
            "content_type", thumb.contentType(),
            "width", thumb.width(),
            "height", thumb.height(),
            "size", thumb.data().length,
            "path", path.toString()));
  }

  private static Media upload(CourierClient client, Path path, MediaKind kind)
      throws CourierException {
    return client.upload(UploadArgs.builder().file(path).kind(kind).build()).await();
  }

  private static void send(CourierClient client, Args args) throws CourierException {
    Message message;
    if (args.value("--text") != null) {
      message = Message.text(args.value("--text"));
    } else if (args.value("--image") != null) {
      message = upload(client, Path.of(args.value("--image")), MediaKind.IMAGE).imageMessage();
    } else if (args.value("--file") != null) {
      message = upload(client, Path.of(args.value("--file")), MediaKind.FILE).fileMessage();
    } else {
      message = client.getMedia(args.value("--media-id")).message();
    }
    SendOptions options = new SendOptions(args.has("--offline"), args.value("--client-message-id"));
    SendReceipt receipt =
        args.value("--to") != null
            ? client.sendPeerMessage(args.value("--to"), message, options)
            : client.sendChannelMessage(args.value("--channel"), message, options);
    line(
        Json.of(
            "message_id", receipt.messageId(),
            "state", receipt.delivery() == Delivery.CACHED ? "cached" : "delivered",
            "server_time_ms", millis(receipt.serverTime())));
  }

  /** What the subscription hands the main thread. */
  private sealed interface Event {}

  private record Received(ReceivedMessage message) implements Event {}

  private record Line(Json json) implements Event {}

  private record Ended(CourierException error) implements Event {}

  private static void listen(CourierClient client, Args args)
      throws CourierException, IOException, InterruptedException {
    Path save = args.value("--save") == null ? null : Path.of(args.value("--save"));
    if (save != null) {
      Files.createDirectories(save);
    }
    long count = args.value("--count") == null ? Long.MAX_VALUE : Long.parseLong(args.value("--count"));
    BlockingQueue<Event> events = new LinkedBlockingQueue<>();
    SubscriptionListener listener =
        new SubscriptionListener() {
          @Override
          public void onMessage(ReceivedMessage message) {
            events.add(new Received(message));
          }

          @Override
          public void onReady(int offlineCount, long cursor, boolean eventsLost) {
            events.add(
                new Line(
                    Json.of(
                        "event", "ready",
                        "offline_count", offlineCount,
                        "cursor", cursor,
                        "events_lost", eventsLost)));
          }

          @Override
          public void onDisconnected(String reason) {
            events.add(new Line(Json.of("event", "disconnected", "reason", reason)));
          }

          @Override
          public void onReconnected() {
            events.add(new Line(Json.of("event", "reconnected")));
          }

          @Override
          public void onClosed(CourierException error) {
            events.add(new Ended(error));
          }
        };
    long messages = 0;
    long after = args.value("--after") == null ? 0 : Long.parseLong(args.value("--after"));
    Subscription subscription = client.subscribe(listener, after);
    try {
      while (messages < count) {
        Event event = events.take();
        if (event instanceof Line l) {
          line(l.json());
        } else if (event instanceof Ended e) {
          throw e.error();
        } else if (event instanceof Received r) {
          line(message(r.message()));
          messages++;
          if (save != null) {
            save(client, save, r.message().message());
          }
        }
      }
    } finally {
      subscription.close();
    }
  }

  /** Downloads an image or file message's media into {@code dir}; one failure does not end the feed. */
  private static void save(CourierClient client, Path dir, Message message) throws IOException {
    String mediaId;
    String name;
    if (message instanceof ImageMessage i) {
      mediaId = i.mediaId();
      name = i.fileName();
    } else if (message instanceof FileMessage f) {
      mediaId = f.mediaId();
      name = f.fileName();
    } else {
      return;
    }
    Path path = FileNames.uniquePath(dir, name, mediaId);
    try {
      Media media = client.downloadToFile(mediaId, path).await();
      line(saved(media, path));
    } catch (CourierException e) {
      System.err.println("interop: could not save " + mediaId + ": " + e.getMessage());
    }
  }

  // ---- output ----

  private static void line(Json json) {
    OUT.println(json);
  }

  private static void error(CourierException e) {
    line(
        Json.of(
            "error",
            Json.of("code", e.code().name(), "reason", e.reasonName(), "message", e.getMessage())));
    System.err.println("interop: " + e.getMessage());
  }

  private static long millis(Instant time) {
    return time.toEpochMilli();
  }

  private static Json media(Media media) {
    return Json.of(
        "media_id", media.mediaId(),
        "kind", media.kind() == MediaKind.IMAGE ? "image" : "file",
        "file_name", media.fileName(),
        "size", media.size(),
        "sha256", media.sha256(),
        "content_type", media.contentType(),
        "width", media.width(),
        "height", media.height(),
        "created_ms", millis(media.created()),
        "expires_ms", millis(media.expires()));
  }

  /** A saved line: the record, the path, and the SHA-256 of the bytes now on disk. */
  private static Json saved(Media media, Path path) throws IOException {
    return media(media)
        .put("event", "saved")
        .put("path", path.toString())
        .put("sha256", sha256Of(path));
  }

  private static Json message(ReceivedMessage m) {
    return Json.of(
        "event", "message",
        "from", m.from(),
        "channel", m.channelId(),
        "message_id", m.messageId(),
        "server_time_ms", millis(m.serverTime()),
        "offline", m.offline(),
        "cursor", m.cursor(),
        "message", body(m.message()));
  }

  private static Json body(Message message) {
    if (message instanceof TextMessage t) {
      return Json.of("type", "text", "text", t.text());
    }
    if (message instanceof RawMessage r) {
      return Json.of(
          "type", "raw",
          "payload_hex", HexFormat.of().formatHex(r.payload()),
          "description", r.description());
    }
    if (message instanceof ImageMessage i) {
      return Json.of(
          "type", "image",
          "media_id", i.mediaId(),
          "file_name", i.fileName(),
          "size", i.size(),
          "width", i.width(),
          "height", i.height(),
          "thumbnail_bytes", i.thumbnail().length);
    }
    FileMessage f = (FileMessage) message;
    return Json.of(
        "type", "file",
        "media_id", f.mediaId(),
        "file_name", f.fileName(),
        "size", f.size(),
        "width", 0,
        "height", 0,
        "thumbnail_bytes", f.thumbnail().length);
  }

  private static String sha256Of(Path path) throws IOException {
    MessageDigest sha;
    try {
      sha = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
    try (InputStream in = Files.newInputStream(path)) {
      byte[] buffer = new byte[256 * 1024];
      for (int n = in.read(buffer); n > 0; n = in.read(buffer)) {
        sha.update(buffer, 0, n);
      }
    }
    return HexFormat.of().formatHex(sha.digest());
  }
}
