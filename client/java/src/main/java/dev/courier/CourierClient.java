package dev.courier;

import dev.courier.errors.CourierException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;

/**
 * A connection to a courier server as one user: uploads and downloads of images and
 * files, text, raw, image and file messages to peers and channels, channel membership,
 * presence, and a live feed that reconnects by itself.
 *
 * <pre>{@code
 * try (CourierClient alice = CourierClient.builder()
 *     .endpoint("http://127.0.0.1:50051")
 *     .token(token)
 *     .build()) {
 *   Media media = alice.upload(UploadArgs.image(Path.of("cat.png"))).await();
 *   alice.sendPeerMessage("bob", media.imageMessage(), SendOptions.offlineMessaging());
 * }
 * }</pre>
 *
 * <p>Every call comes in two forms: a blocking one that throws a
 * {@link CourierException} subclass, and an {@code ...Async} one that returns a
 * {@link CompletableFuture} failing with the same exception. Unary calls have a deadline
 * (10 s by default); calls that are safe to repeat (everything but sending a message) are
 * retried with backoff while the server is unavailable. Uploads and downloads return a
 * {@link Transfer} at once, with a request ID, progress and a cancel handle; at most 9
 * run at once, and the 10th is refused at once with a
 * {@link dev.courier.errors.TooManyTransfersException} (or waits, with
 * {@link Builder#queueTransfers(boolean)}).
 *
 * <p>Several replicas of one deployment are given with {@link Builder#endpoints(String...)}:
 * calls are then spread over them (gRPC's {@code round_robin}), and retried calls and the
 * live feed move to another replica when one dies.
 *
 * <p>A client is safe to share between threads. Close it to end its connection, its
 * transfers and its subscriptions.
 */
public final class CourierClient extends MessagingCalls implements AutoCloseable {
  /** Open subscriptions, closed with the client (guarded by itself). */
  private final List<Subscription> subscriptions = new java.util.ArrayList<>();

  private CourierClient(Builder b) {
    super(b.connection(), b.maxTransfers, b.queueTransfers);
  }

  /**
   * A builder of clients.
   *
   * @return a new builder
   */
  public static Builder builder() {
    return new Builder();
  }

  /**
   * Where {@link #downloadToFile} keeps the unfinished bytes of {@code mediaId} for
   * {@code path}: {@code .<name>.<media_id>.part} in the same folder, so the final rename
   * is atomic.
   *
   * @param path the download's target
   * @param mediaId the media ID
   * @return the partial file's path
   */
  public static Path partialPath(Path path, String mediaId) {
    return Downloads.partialPath(path, mediaId);
  }

  // ---- The live feed ------------------------------------------------------------------

  /**
   * Opens this user's live feed; while it is open the user is online. Events go to
   * {@code listener}; the feed reconnects by itself and says so.
   *
   * @param listener who hears the events
   * @return the open subscription; close it to end the feed
   */
  public Subscription subscribe(SubscriptionListener listener) {
    return subscribe(listener, 0);
  }

  /**
   * Opens this user's live feed, first with the events after cursor {@code after} (a
   * {@link ReceivedMessage#cursor()}) that the server still holds; {@link
   * SubscriptionListener#onReady(int, long, boolean)} says when some were no longer held. A
   * reconnection resumes after the last message handed to the listener (or the last ready
   * event's cursor), so nothing is missed or repeated.
   *
   * @param listener who hears the events
   * @param after the cursor to resume after, 0 for none
   * @return the open subscription; close it to end the feed
   */
  public Subscription subscribe(SubscriptionListener listener, long after) {
    Subscription subscription =
        new Subscription(connection, Objects.requireNonNull(listener, "listener"), after);
    synchronized (subscriptions) {
      subscriptions.removeIf(s -> !s.isOpen());
      subscriptions.add(subscription);
    }
    subscription.open();
    return subscription;
  }

  /**
   * Closes the client: cancels its transfers, closes its subscriptions and its
   * connection.
   */
  @Override
  public void close() {
    transfers.cancelAll();
    synchronized (subscriptions) {
      subscriptions.forEach(Subscription::close);
      subscriptions.clear();
    }
    connection.close();
  }

  /** Builds a {@link CourierClient}; {@code endpoint} and {@code token} are required. */
  public static final class Builder {
    private List<String> endpoints;
    private String token;
    private Duration deadline = Duration.ofSeconds(10);
    private int retries = 4;
    private Duration backoff = Duration.ofMillis(100);
    private int maxTransfers = 9;
    private boolean queueTransfers;
    private int chunkSize = 256 * 1024;

    private Builder() {}

    /**
     * The server's URL: {@code http://host:port}, or {@code https://host:port} for TLS
     * with the system's trusted roots.
     *
     * @param endpoint the URL
     * @return this builder
     */
    public Builder endpoint(String endpoint) {
      this.endpoints = List.of(Objects.requireNonNull(endpoint, "endpoint"));
      return this;
    }

    /**
     * The URLs of several replicas of one deployment (all {@code http://} or all {@code
     * https://}; with TLS, every replica's certificate names the first URL's host). Calls
     * are spread over them with gRPC's {@code round_robin} policy: each call goes to the
     * next replica that is connected, a call retried after UNAVAILABLE goes to another one,
     * and a subscription whose replica died reconnects to another and resumes after its
     * last cursor. Replicas need a shared bus ({@code --bus}) and media store.
     *
     * @param endpoints the URLs, at least one
     * @return this builder
     */
    public Builder endpoints(Collection<String> endpoints) {
      List<String> copy = List.copyOf(endpoints);
      if (copy.isEmpty()) {
        throw new IllegalArgumentException("endpoints needs at least one URL");
      }
      this.endpoints = copy;
      return this;
    }

    /**
     * The URLs of several replicas; see {@link #endpoints(Collection)}.
     *
     * @param endpoints the URLs, at least one
     * @return this builder
     */
    public Builder endpoints(String... endpoints) {
      return endpoints(List.of(endpoints));
    }

    /**
     * The caller's token (an HS256 JWT; {@code courier-server token --user NAME} mints
     * one). It is sent as {@code authorization: Bearer <token>} on every call.
     *
     * @param token the token
     * @return this builder
     */
    public Builder token(String token) {
      this.token = Objects.requireNonNull(token, "token");
      return this;
    }

    /**
     * The deadline of each unary call; 10 s by default.
     *
     * @param deadline the deadline
     * @return this builder
     */
    public Builder deadline(Duration deadline) {
      this.deadline = positive(deadline, "deadline");
      return this;
    }

    /**
     * How many times a call that is safe to repeat is retried while the server is
     * unavailable; 4 by default.
     *
     * @param retries the number of retries, 0 for none
     * @return this builder
     */
    public Builder retries(int retries) {
      if (retries < 0) {
        throw new IllegalArgumentException("retries must be 0 or more");
      }
      this.retries = retries;
      return this;
    }

    /**
     * The first pause before a retry or a reconnection; it doubles each time, up to 5 s.
     * 100 ms by default.
     *
     * @param backoff the first pause
     * @return this builder
     */
    public Builder backoff(Duration backoff) {
      this.backoff = positive(backoff, "backoff");
      return this;
    }

    /**
     * The most uploads and downloads this client runs at once; 9 by default, as the
     * server allows per user.
     *
     * @param maxTransfers the limit, at least 1
     * @return this builder
     */
    public Builder maxTransfers(int maxTransfers) {
      if (maxTransfers < 1) {
        throw new IllegalArgumentException("maxTransfers must be at least 1");
      }
      this.maxTransfers = maxTransfers;
      return this;
    }

    /**
     * Whether a transfer beyond the limit waits for a free slot (true) instead of being
     * refused with {@link dev.courier.errors.TooManyTransfersException} (false, the
     * default, as Agora's SDK did). A waiting transfer has its request ID and can be
     * cancelled.
     *
     * @param queue true to queue
     * @return this builder
     */
    public Builder queueTransfers(boolean queue) {
      this.queueTransfers = queue;
      return this;
    }

    /**
     * The size of an upload's data frames; 256 KiB by default (64 KiB to 1 MiB is
     * recommended).
     *
     * @param chunkSize bytes per frame
     * @return this builder
     */
    public Builder chunkSize(int chunkSize) {
      if (chunkSize < 1 || chunkSize > 2 * 1024 * 1024) {
        throw new IllegalArgumentException("chunkSize must be between 1 byte and 2 MiB");
      }
      this.chunkSize = chunkSize;
      return this;
    }

    /**
     * The client. The connection is made on the first call, and remade by itself.
     *
     * @return the client
     * @throws IllegalArgumentException for a missing or malformed URL or token
     */
    public CourierClient build() {
      if (endpoints == null || token == null) {
        throw new IllegalArgumentException("both endpoint(...) and token(...) are required");
      }
      return new CourierClient(this);
    }

    /** The connection these settings describe. */
    private Connection connection() {
      return new Connection(
          endpoints,
          token,
          new Connection.Options(
              deadline, retries, backoff, maxTransfers, queueTransfers, chunkSize));
    }

    private static Duration positive(Duration value, String name) {
      if (value == null || value.isNegative() || value.isZero()) {
        throw new IllegalArgumentException(name + " must be positive");
      }
      return value;
    }
  }
}
