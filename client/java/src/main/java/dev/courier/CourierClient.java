package dev.courier;

import courier.v1.MediaServiceOuterClass.DeleteMediaRequest;
import courier.v1.MediaServiceOuterClass.DeleteMediaResponse;
import courier.v1.MediaServiceOuterClass.GetMediaRequest;
import courier.v1.MediaServiceOuterClass.GetMediaResponse;
import courier.v1.MediaServiceOuterClass.GetMediaUrlRequest;
import courier.v1.MediaServiceOuterClass.GetMediaUrlResponse;
import courier.v1.MediaServiceOuterClass.GetThumbnailRequest;
import courier.v1.MediaServiceOuterClass.GetThumbnailResponse;
import courier.v1.MessagingServiceOuterClass.GetChannelMembersRequest;
import courier.v1.MessagingServiceOuterClass.GetChannelMembersResponse;
import courier.v1.MessagingServiceOuterClass.JoinChannelRequest;
import courier.v1.MessagingServiceOuterClass.JoinChannelResponse;
import courier.v1.MessagingServiceOuterClass.LeaveChannelRequest;
import courier.v1.MessagingServiceOuterClass.LeaveChannelResponse;
import courier.v1.MessagingServiceOuterClass.PeerOnlineStatus;
import courier.v1.MessagingServiceOuterClass.PeerMessageState;
import courier.v1.MessagingServiceOuterClass.QueryPeersOnlineStatusRequest;
import courier.v1.MessagingServiceOuterClass.QueryPeersOnlineStatusResponse;
import courier.v1.MessagingServiceOuterClass.SendChannelMessageRequest;
import courier.v1.MessagingServiceOuterClass.SendChannelMessageResponse;
import courier.v1.MessagingServiceOuterClass.SendMessageOptions;
import courier.v1.MessagingServiceOuterClass.SendPeerMessageRequest;
import courier.v1.MessagingServiceOuterClass.SendPeerMessageResponse;
import dev.courier.errors.CourierException;
import dev.courier.errors.NoSuchTransferException;
import dev.courier.errors.NotFoundException;
import dev.courier.errors.PeerUnreachableException;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

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
public final class CourierClient implements AutoCloseable {
  /** The connection, deadlines, retries and threads. */
  private final Connection connection;

  /** Running transfers and the limit on them. */
  private final TransferTable transfers;

  /** Open subscriptions, closed with the client (guarded by itself). */
  private final List<Subscription> subscriptions = new java.util.ArrayList<>();

  private CourierClient(Builder b) {
    this.connection =
        new Connection(
            b.endpoints,
            b.token,
            new Connection.Options(
                b.deadline, b.retries, b.backoff, b.maxTransfers, b.queueTransfers, b.chunkSize));
    this.transfers = new TransferTable(b.maxTransfers, b.queueTransfers, connection.transfers);
  }

  /**
   * A builder of clients.
   *
   * @return a new builder
   */
  public static Builder builder() {
    return new Builder();
  }

  // ---- Uploads and downloads ----------------------------------------------------------

  /**
   * Starts an upload and returns at once (Agora's {@code createImageMessageByUploading}
   * and {@code createFileMessageByUploading}); {@link Transfer#await()} gives the
   * {@link Media} record, and {@link Media#imageMessage()} or
   * {@link Media#fileMessage()} the message to send.
   *
   * @param args what to upload and how
   * @return the running upload
   * @throws CourierException {@link dev.courier.errors.InvalidArgumentException} for a
   *     missing or empty file, {@link dev.courier.errors.TooManyTransfersException} when 9
   *     transfers already run
   */
  public Transfer<Media> upload(UploadArgs args) throws CourierException {
    return Uploads.start(connection, transfers, args);
  }

  /**
   * Starts a resumable upload of a file ({@link UploadArgs#file} or {@link
   * UploadArgs#image}) and returns at once; {@link Transfer#await()} gives the {@link
   * ResumedUpload}. The file goes in parts of the server's part size, each checked by its
   * CRC32C, so that a break costs at most one part: a part is retried with backoff while
   * the server is unavailable, and when the retries run out (or the process stops) the
   * state file {@code <path>.courier-upload} stays, and the next upload of the same file to
   * the same server goes on from what the server holds. Progress counts the bytes the
   * server holds. Cancelling abandons the upload on the server and removes the state file.
   *
   * @param args the file, its kind, name, content type and progress listener
   * @return the running upload
   * @throws CourierException {@link dev.courier.errors.InvalidArgumentException} for a
   *     source that is not a file or an empty one, {@link
   *     dev.courier.errors.TooManyTransfersException} when 9 transfers already run
   */
  public Transfer<ResumedUpload> uploadResumable(UploadArgs args) throws CourierException {
    return ResumableUploads.start(connection, transfers, args, 0);
  }

  /**
   * Starts a resumable upload that stops after writing {@code stopAfterParts} parts in this
   * call, without committing (the result's media is then {@code null} and the state file
   * stays); 0 writes them all. See {@link #uploadResumable(UploadArgs)}.
   *
   * @param args the file, its kind, name, content type and progress listener
   * @param stopAfterParts the most parts to write in this call, 0 for no limit
   * @return the running upload
   * @throws CourierException as {@link #uploadResumable(UploadArgs)}
   */
  public Transfer<ResumedUpload> uploadResumable(UploadArgs args, int stopAfterParts)
      throws CourierException {
    return ResumableUploads.start(connection, transfers, args, stopAfterParts);
  }

  /**
   * Starts downloading {@code mediaId} to {@code path}: the bytes go to
   * {@link #partialPath(Path, String)} first and are renamed into place once their size
   * and SHA-256 match the record; an existing file at {@code path} is replaced. A
   * download cut off by the network keeps the partial file, and the next call resumes
   * from it; a cancelled or otherwise failed one removes it.
   *
   * @param mediaId the media ID
   * @param path where the file goes
   * @param listener who hears about progress, or null
   * @return the running download; its result is the media record
   * @throws CourierException {@link dev.courier.errors.InvalidArgumentException} for a
   *     malformed media ID, {@link dev.courier.errors.TooManyTransfersException}
   */
  public Transfer<Media> downloadToFile(String mediaId, Path path, ProgressListener listener)
      throws CourierException {
    return Downloads.toFile(connection, transfers, mediaId, path, listener);
  }

  /**
   * {@link #downloadToFile(String, Path, ProgressListener)} without a listener.
   *
   * @param mediaId the media ID
   * @param path where the file goes
   * @return the running download
   * @throws CourierException as for the form with a listener
   */
  public Transfer<Media> downloadToFile(String mediaId, Path path) throws CourierException {
    return downloadToFile(mediaId, path, null);
  }

  /**
   * Starts downloading {@code mediaId} into memory; the bytes are checked against the
   * record's size and SHA-256.
   *
   * @param mediaId the media ID
   * @param listener who hears about progress, or null
   * @return the running download
   * @throws CourierException {@link dev.courier.errors.InvalidArgumentException} for a
   *     malformed media ID, {@link dev.courier.errors.TooManyTransfersException}
   */
  public Transfer<Downloaded> downloadToMemory(String mediaId, ProgressListener listener)
      throws CourierException {
    return Downloads.toMemory(connection, transfers, mediaId, listener);
  }

  /**
   * {@link #downloadToMemory(String, ProgressListener)} without a listener.
   *
   * @param mediaId the media ID
   * @return the running download
   * @throws CourierException as for the form with a listener
   */
  public Transfer<Downloaded> downloadToMemory(String mediaId) throws CourierException {
    return downloadToMemory(mediaId, null);
  }

  /**
   * Cancels a running upload or download by its request ID (Agora's
   * {@code cancelMediaUpload} and {@code cancelMediaDownload}).
   *
   * @param requestId the transfer's request ID
   * @throws NoSuchTransferException when no transfer with that ID runs (it finished,
   *     failed, was cancelled, or never was)
   */
  public void cancel(long requestId) throws NoSuchTransferException {
    transfers.cancel(requestId);
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

  // ---- Media records ------------------------------------------------------------------

  /**
   * The record of {@code mediaId}, without its bytes.
   *
   * @param mediaId the media ID
   * @return the future record; it fails with {@link NotFoundException} for an unknown or
   *     expired ID
   */
  public CompletableFuture<Media> getMediaAsync(String mediaId) {
    GetMediaRequest request = GetMediaRequest.newBuilder().setMediaId(mediaId).build();
    return connection
        .<GetMediaResponse>unary(true, o -> connection.mediaUnary().getMedia(request, o))
        .thenApply(
            response -> {
              if (!response.hasMedia()) {
                throw new CompletionException(new NotFoundException(mediaId));
              }
              return Protos.media(response.getMedia());
            });
  }

  /**
   * The record of {@code mediaId}, without its bytes.
   *
   * @param mediaId the media ID
   * @return the record
   * @throws CourierException {@link NotFoundException} for an unknown or expired ID
   */
  public Media getMedia(String mediaId) throws CourierException {
    return Connection.await(getMediaAsync(mediaId));
  }

  /**
   * The server's thumbnail of image {@code mediaId}, at most {@code maxEdge} pixels on its
   * longer side after rounding up to 96, 320 or 640 (above 640: 640).
   *
   * @param mediaId the media ID
   * @param maxEdge the most pixels on the longer side, 1 or more
   * @return the future thumbnail; it fails with {@code InvalidArgumentException} for a
   *     {@code maxEdge} of 0 or less, {@link NotFoundException} for an unknown or expired
   *     ID, {@code NotAnImageException} and {@code ImageRefusedException} for media the
   *     server does not thumbnail
   */
  public CompletableFuture<Thumbnail> thumbnailAsync(String mediaId, int maxEdge) {
    GetThumbnailRequest request =
        GetThumbnailRequest.newBuilder().setMediaId(mediaId).setMaxEdge(maxEdge).build();
    return connection
        .<GetThumbnailResponse>unary(true, o -> connection.mediaUnary().getThumbnail(request, o))
        .thenApply(
            response ->
                new Thumbnail(
                    response.getContentType(),
                    response.getWidth(),
                    response.getHeight(),
                    response.getData().toByteArray()));
  }

  /**
   * The server's thumbnail of image {@code mediaId}; see {@link #thumbnailAsync}.
   *
   * @param mediaId the media ID
   * @param maxEdge the most pixels on the longer side, 1 or more
   * @return the thumbnail
   * @throws CourierException as {@link #thumbnailAsync} fails
   */
  public Thumbnail thumbnail(String mediaId, int maxEdge) throws CourierException {
    return Connection.await(thumbnailAsync(mediaId, maxEdge));
  }

  /**
   * Deletes one of the caller's own media: its ID is then not found (reason {@code
   * MEDIA_DELETED}) for downloads, records, thumbnails and links, those minted before
   * included, and new messages naming it are refused ({@link
   * dev.courier.errors.MediaUnavailableException}). Messages already sent with it still
   * arrive. Deleting it again succeeds as the first time did, so the call is retried while
   * the server is unavailable.
   *
   * @param mediaId the media ID
   * @return a future that completes once deleted; it fails with {@link NotFoundException}
   *     for an unknown or expired ID and for another user's media
   */
  public CompletableFuture<Void> deleteMediaAsync(String mediaId) {
    DeleteMediaRequest request = DeleteMediaRequest.newBuilder().setMediaId(mediaId).build();
    return connection
        .<DeleteMediaResponse>unary(true, o -> connection.mediaUnary().deleteMedia(request, o))
        .thenApply(response -> null);
  }

  /**
   * Deletes one of the caller's own media; see {@link #deleteMediaAsync}.
   *
   * @param mediaId the media ID
   * @throws CourierException {@link NotFoundException} for an unknown or expired ID and for
   *     another user's media
   */
  public void deleteMedia(String mediaId) throws CourierException {
    Connection.await(deleteMediaAsync(mediaId));
  }

  /**
   * A signed HTTP link to {@code mediaId} (or, with {@link MediaUrlOptions#withMaxEdge}, to
   * its thumbnail) that any HTTP client can GET without a token until it expires: whoever
   * holds the link can fetch the bytes, so hand it only to who may see them.
   *
   * @param mediaId the media ID
   * @param options the thumbnail size (0 for the object) and the link's lifetime
   * @return the future link; it fails with {@link NotFoundException} for an unknown or
   *     expired ID ({@link dev.courier.errors.MediaDeletedException} for a deleted one),
   *     {@code NotAnImageException} for a thumbnail of a file, {@code
   *     MediaQuarantinedException} for quarantined content
   */
  public CompletableFuture<MediaUrl> mediaUrlAsync(String mediaId, MediaUrlOptions options) {
    GetMediaUrlRequest.Builder request =
        GetMediaUrlRequest.newBuilder().setMediaId(mediaId).setMaxEdge(options.maxEdge());
    if (options.lifetime() != null) {
      request.setLifetime(
          com.google.protobuf.Duration.newBuilder()
              .setSeconds(options.lifetime().getSeconds())
              .setNanos(options.lifetime().getNano()));
    }
    GetMediaUrlRequest built = request.build();
    return connection
        .<GetMediaUrlResponse>unary(true, o -> connection.mediaUnary().getMediaUrl(built, o))
        .thenApply(
            response ->
                new MediaUrl(URI.create(response.getUrl()), Protos.instant(response.getExpireTime())));
  }

  /**
   * A signed HTTP link to {@code mediaId}; see {@link #mediaUrlAsync}.
   *
   * @param mediaId the media ID
   * @param options the thumbnail size (0 for the object) and the link's lifetime
   * @return the link and its expiry
   * @throws CourierException as {@link #mediaUrlAsync} fails
   */
  public MediaUrl mediaUrl(String mediaId, MediaUrlOptions options) throws CourierException {
    return Connection.await(mediaUrlAsync(mediaId, options));
  }

  // ---- Messages -----------------------------------------------------------------------

  /**
   * Sends {@code message} to {@code peer} (Agora's {@code sendMessageToPeer}). The send
   * carries the options' client message ID (or a generated one) and is retried with it
   * while the server is unavailable: the server delivers it once.
   *
   * @param peer the receiver's user ID
   * @param message the message
   * @param options offline messaging on or off
   * @return the future receipt: delivered, or cached for an offline peer; it fails with
   *     {@link PeerUnreachableException} for an offline peer without offline messaging
   */
  public CompletableFuture<SendReceipt> sendPeerMessageAsync(
      String peer, Message message, SendOptions options) {
    SendPeerMessageRequest request =
        SendPeerMessageRequest.newBuilder()
            .setPeerId(peer)
            .setMessage(Protos.message(message))
            .setOptions(
                SendMessageOptions.newBuilder().setEnableOfflineMessaging(options.offline()))
            .setClientMessageId(options.idForSend())
            .build();
    return connection
        .<SendPeerMessageResponse>unary(
            true, o -> connection.messagingUnary().sendPeerMessage(request, o))
        .thenApply(
            response -> {
              Delivery delivery;
              if (response.getState() == PeerMessageState.PEER_MESSAGE_STATE_DELIVERED) {
                delivery = Delivery.DELIVERED;
              } else if (response.getState() == PeerMessageState.PEER_MESSAGE_STATE_CACHED) {
                delivery = Delivery.CACHED;
              } else {
                throw new CompletionException(
                    new PeerUnreachableException(peer, response.getMessageId()));
              }
              return new SendReceipt(
                  response.getMessageId(), Protos.instant(response.getServerTime()), delivery);
            });
  }

  /**
   * Sends {@code message} to {@code peer}; see {@link #sendPeerMessageAsync}.
   *
   * @param peer the receiver's user ID
   * @param message the message
   * @param options offline messaging on or off
   * @return the receipt: delivered, or cached for an offline peer
   * @throws CourierException {@link PeerUnreachableException} for an offline peer without
   *     offline messaging, {@link dev.courier.errors.MessageTooLargeException},
   *     {@link dev.courier.errors.MediaUnavailableException},
   *     {@link dev.courier.errors.RateLimitedException}, ...
   */
  public SendReceipt sendPeerMessage(String peer, Message message, SendOptions options)
      throws CourierException {
    return Connection.await(sendPeerMessageAsync(peer, message, options));
  }

  /**
   * Sends {@code message} to every other member of {@code channel} (Agora's
   * {@code RtmChannel.sendMessage}); the caller must be a member. Retried with a generated
   * client message ID, as {@link #sendPeerMessageAsync} is.
   *
   * @param channel the channel ID
   * @param message the message
   * @return the future receipt
   */
  public CompletableFuture<SendReceipt> sendChannelMessageAsync(String channel, Message message) {
    return sendChannelMessageAsync(channel, message, SendOptions.defaults());
  }

  /**
   * Sends {@code message} to every other member of {@code channel} with the options'
   * client message ID (their offline flag does not apply to channels).
   *
   * @param channel the channel ID
   * @param message the message
   * @param options the client message ID
   * @return the future receipt
   */
  public CompletableFuture<SendReceipt> sendChannelMessageAsync(
      String channel, Message message, SendOptions options) {
    SendChannelMessageRequest request =
        SendChannelMessageRequest.newBuilder()
            .setChannelId(channel)
            .setMessage(Protos.message(message))
            .setClientMessageId(options.idForSend())
            .build();
    return connection
        .<SendChannelMessageResponse>unary(
            true, o -> connection.messagingUnary().sendChannelMessage(request, o))
        .thenApply(
            response ->
                new SendReceipt(
                    response.getMessageId(),
                    Protos.instant(response.getServerTime()),
                    Delivery.DELIVERED));
  }

  /**
   * Sends {@code message} to a channel; see {@link #sendChannelMessageAsync}.
   *
   * @param channel the channel ID
   * @param message the message
   * @return the receipt
   * @throws CourierException {@link dev.courier.errors.NotAMemberException} when the
   *     caller has not joined, and the errors of {@link #sendPeerMessage}
   */
  public SendReceipt sendChannelMessage(String channel, Message message) throws CourierException {
    return Connection.await(sendChannelMessageAsync(channel, message));
  }

  /**
   * Sends {@code message} to a channel with the options' client message ID; see {@link
   * #sendChannelMessageAsync(String, Message, SendOptions)}.
   *
   * @param channel the channel ID
   * @param message the message
   * @param options the client message ID
   * @return the receipt
   * @throws CourierException as {@link #sendChannelMessage(String, Message)}
   */
  public SendReceipt sendChannelMessage(String channel, Message message, SendOptions options)
      throws CourierException {
    return Connection.await(sendChannelMessageAsync(channel, message, options));
  }

  /**
   * An image message for an already uploaded {@code mediaId}, with its name, size and
   * dimensions from the record (Agora's {@code createImageMessageByMediaId}).
   *
   * @param mediaId the media ID
   * @return the message
   * @throws CourierException {@link NotFoundException} for an unknown or expired ID
   */
  public ImageMessage imageMessageFromMediaId(String mediaId) throws CourierException {
    return getMedia(mediaId).imageMessage();
  }

  /**
   * A file message for an already uploaded {@code mediaId}, with its name and size.
   *
   * @param mediaId the media ID
   * @return the message
   * @throws CourierException {@link NotFoundException} for an unknown or expired ID
   */
  public FileMessage fileMessageFromMediaId(String mediaId) throws CourierException {
    return getMedia(mediaId).fileMessage();
  }

  // ---- Channels and presence ----------------------------------------------------------

  /**
   * Joins {@code channel}, creating it if needed (joining twice is fine).
   *
   * @param channel the channel ID
   * @return a future that completes once joined
   */
  public CompletableFuture<Void> joinChannelAsync(String channel) {
    JoinChannelRequest request = JoinChannelRequest.newBuilder().setChannelId(channel).build();
    return connection
        .<JoinChannelResponse>unary(true, o -> connection.messagingUnary().joinChannel(request, o))
        .thenApply(response -> null);
  }

  /**
   * Joins {@code channel} (Agora's {@code RtmChannel.join}).
   *
   * @param channel the channel ID
   * @throws CourierException {@link dev.courier.errors.TooManyChannelsException} beyond
   *     20 channels
   */
  public void joinChannel(String channel) throws CourierException {
    Connection.await(joinChannelAsync(channel));
  }

  /**
   * Leaves {@code channel}; delivery stops at once (leaving twice is fine).
   *
   * @param channel the channel ID
   * @return a future that completes once left
   */
  public CompletableFuture<Void> leaveChannelAsync(String channel) {
    LeaveChannelRequest request = LeaveChannelRequest.newBuilder().setChannelId(channel).build();
    return connection
        .<LeaveChannelResponse>unary(
            true, o -> connection.messagingUnary().leaveChannel(request, o))
        .thenApply(response -> null);
  }

  /**
   * Leaves {@code channel} (Agora's {@code RtmChannel.leave}).
   *
   * @param channel the channel ID
   * @throws CourierException when the server refuses
   */
  public void leaveChannel(String channel) throws CourierException {
    Connection.await(leaveChannelAsync(channel));
  }

  /**
   * The members of {@code channel}, sorted.
   *
   * @param channel the channel ID
   * @return the future user IDs
   */
  public CompletableFuture<List<String>> channelMembersAsync(String channel) {
    GetChannelMembersRequest request =
        GetChannelMembersRequest.newBuilder().setChannelId(channel).build();
    return connection
        .<GetChannelMembersResponse>unary(
            true, o -> connection.messagingUnary().getChannelMembers(request, o))
        .thenApply(response -> List.copyOf(response.getUserIdsList()));
  }

  /**
   * The members of {@code channel}, sorted (Agora's {@code RtmChannel.getMembers}).
   *
   * @param channel the channel ID
   * @return the user IDs
   * @throws CourierException when the server refuses
   */
  public List<String> channelMembers(String channel) throws CourierException {
    return Connection.await(channelMembersAsync(channel));
  }

  /**
   * Whether each of {@code users} is online (has a subscription open).
   *
   * @param users 1 to 256 user IDs
   * @return the future map from user ID to online, in the order asked
   */
  public CompletableFuture<Map<String, Boolean>> queryPeersOnlineStatusAsync(
      Collection<String> users) {
    QueryPeersOnlineStatusRequest request =
        QueryPeersOnlineStatusRequest.newBuilder().addAllUserIds(users).build();
    return connection
        .<QueryPeersOnlineStatusResponse>unary(
            true, o -> connection.messagingUnary().queryPeersOnlineStatus(request, o))
        .thenApply(
            response -> {
              Map<String, Boolean> online = new LinkedHashMap<>();
              for (PeerOnlineStatus status : response.getStatusesList()) {
                online.put(status.getUserId(), status.getOnline());
              }
              return online;
            });
  }

  /**
   * Whether each of {@code users} is online (Agora's {@code queryPeersOnlineStatus}).
   *
   * @param users 1 to 256 user IDs
   * @return a map from user ID to online, in the order asked
   * @throws CourierException when the server refuses
   */
  public Map<String, Boolean> queryPeersOnlineStatus(Collection<String> users)
      throws CourierException {
    return Connection.await(queryPeersOnlineStatusAsync(users));
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

    private static Duration positive(Duration value, String name) {
      if (value == null || value.isNegative() || value.isZero()) {
        throw new IllegalArgumentException(name + " must be positive");
      }
      return value;
    }
  }
}
