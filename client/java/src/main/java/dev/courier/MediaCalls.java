package dev.courier;

import courier.v1.MediaServiceOuterClass.DeleteMediaRequest;
import courier.v1.MediaServiceOuterClass.DeleteMediaResponse;
import courier.v1.MediaServiceOuterClass.GetMediaRequest;
import courier.v1.MediaServiceOuterClass.GetMediaResponse;
import courier.v1.MediaServiceOuterClass.GetMediaUrlRequest;
import courier.v1.MediaServiceOuterClass.GetMediaUrlResponse;
import courier.v1.MediaServiceOuterClass.GetThumbnailRequest;
import courier.v1.MediaServiceOuterClass.GetThumbnailResponse;
import dev.courier.errors.CourierException;
import dev.courier.errors.NoSuchTransferException;
import dev.courier.errors.NotFoundException;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * The uploads, downloads and media records of {@link CourierClient}, which inherits these
 * calls: Java can spread one public class's methods over several files only through
 * superclasses, and this one and {@link MessagingCalls} are package-private and sealed,
 * so they are not part of the API. It holds what every call needs: the connection and
 * the transfer table.
 */
abstract sealed class MediaCalls permits MessagingCalls {
  /** The connection, deadlines, retries and threads. */
  final Connection connection;

  /** Running transfers and the limit on them. */
  final TransferTable transfers;

  MediaCalls(Connection connection, int maxTransfers, boolean queueTransfers) {
    this.connection = connection;
    this.transfers = new TransferTable(maxTransfers, queueTransfers, connection.transfers);
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
   * {@link CourierClient#partialPath(Path, String)
   * partialPath(Path, String)} first and are renamed into place once their size
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
}
