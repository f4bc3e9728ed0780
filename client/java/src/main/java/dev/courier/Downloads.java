package dev.courier;

import courier.v1.MediaServiceOuterClass.DownloadMediaRequest;
import courier.v1.MediaServiceOuterClass.DownloadMediaResponse;
import dev.courier.errors.CourierException;
import dev.courier.errors.DeadlineExceededException;
import dev.courier.errors.IntegrityException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.OutOfRangeException;
import dev.courier.errors.UnavailableException;
import io.grpc.Context;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.Iterator;

/**
 * Downloads into memory or into a file. A file download writes to a hidden partial file
 * beside the target, checks size and SHA-256 against the record, then renames it into
 * place, so the target is never a half file. A download cut off by the network keeps the
 * partial file and the next one resumes from its length; a cancelled one, or one that
 * fails for any other reason (the integrity check included), removes it.
 */
final class Downloads {
  private Downloads() {}

  /** The record and the data frames of an open download. */
  private record Opened(Media media, Iterator<DownloadMediaResponse> frames) {}

  /** Checks a media ID before it is used in a request or a file name: 32 lowercase hex. */
  static void checkMediaId(String mediaId) throws InvalidArgumentException {
    boolean ok =
        mediaId != null
            && mediaId.length() == 32
            && mediaId.chars().allMatch(c -> (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok) {
      throw new InvalidArgumentException(
          "\"" + mediaId + "\" is not a media ID (32 lowercase hex characters)");
    }
  }

  /** Where the unfinished bytes of {@code mediaId} for {@code target} are kept. */
  static Path partialPath(Path target, String mediaId) {
    Path name = target.getFileName();
    return target.resolveSibling("." + (name == null ? "" : name.toString()) + "." + mediaId + ".part");
  }

  static Transfer<Downloaded> toMemory(
      Connection connection, TransferTable table, String mediaId, ProgressListener listener)
      throws CourierException {
    checkMediaId(mediaId);
    return table.start(0, listener, false, transfer -> runToMemory(connection, transfer, mediaId));
  }

  static Transfer<Media> toFile(
      Connection connection,
      TransferTable table,
      String mediaId,
      Path target,
      ProgressListener listener)
      throws CourierException {
    checkMediaId(mediaId);
    if (target.getFileName() == null) {
      throw new InvalidArgumentException(target + " names no file");
    }
    return table.start(
        0, listener, false, transfer -> runToFile(connection, transfer, mediaId, target));
  }

  /** Opens a download from {@code offset}: its record, then its data frames. */
  private static Opened open(
      Connection connection, Transfer<?> transfer, String mediaId, long offset)
      throws CourierException {
    DownloadMediaRequest request =
        DownloadMediaRequest.newBuilder().setMediaId(mediaId).setOffset(offset).build();
    Context previous = transfer.context.attach();
    Iterator<DownloadMediaResponse> frames;
    try {
      frames = connection.mediaBlocking().downloadMedia(request);
    } finally {
      transfer.context.detach(previous);
    }
    try {
      if (frames.hasNext()) {
        DownloadMediaResponse first = frames.next();
        if (first.hasMedia()) {
          return new Opened(Protos.media(first.getMedia()), frames);
        }
      }
    } catch (RuntimeException e) {
      throw Errors.from(e);
    }
    throw new IntegrityException("the download did not start with the media record");
  }

  private static void runToMemory(
      Connection connection, Transfer<Downloaded> transfer, String mediaId) {
    try {
      Opened opened = open(connection, transfer, mediaId, 0);
      Media media = opened.media();
      transfer.report(0, media.size());
      ByteArrayOutputStream bytes =
          new ByteArrayOutputStream((int) Math.min(media.size(), Integer.MAX_VALUE - 8));
      MessageDigest sha = Uploads.sha256();
      while (opened.frames().hasNext()) {
        DownloadMediaResponse frame = opened.frames().next();
        if (frame.hasData()) {
          byte[] data = frame.getData().toByteArray();
          sha.update(data);
          bytes.write(data, 0, data.length);
          transfer.report(bytes.size(), media.size());
        }
      }
      verify(media, bytes.size(), sha.digest());
      transfer.succeed(new Downloaded(media, bytes.toByteArray()));
    } catch (CourierException | RuntimeException e) {
      transfer.fail(e);
    }
  }

  private static void runToFile(
      Connection connection, Transfer<Media> transfer, String mediaId, Path target) {
    Path partial = partialPath(target, mediaId);
    try {
      MessageDigest sha = Uploads.sha256();
      long done = hashInto(partial, sha);
      Opened opened;
      try {
        opened = open(connection, transfer, mediaId, done);
      } catch (OutOfRangeException e) {
        // The partial file is longer than the object: it is not a prefix of it.
        Files.deleteIfExists(partial);
        sha.reset();
        done = 0;
        opened = open(connection, transfer, mediaId, 0);
      }
      Media media = opened.media();
      transfer.report(done, media.size());
      try (FileChannel out =
          FileChannel.open(
              partial,
              StandardOpenOption.CREATE,
              StandardOpenOption.WRITE,
              StandardOpenOption.APPEND)) {
        while (opened.frames().hasNext()) {
          DownloadMediaResponse frame = opened.frames().next();
          if (frame.hasData()) {
            ByteBuffer data = frame.getData().asReadOnlyByteBuffer();
            sha.update(data.duplicate());
            while (data.hasRemaining()) {
              out.write(data);
            }
            done += frame.getData().size();
            transfer.report(done, media.size());
          }
        }
        out.force(true);
      }
      verify(media, done, sha.digest());
      Files.move(
          partial, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      transfer.succeed(media);
    } catch (CourierException | IOException | RuntimeException e) {
      CourierException failure = Errors.from(e);
      boolean resumable =
          !transfer.cancelRequested()
              && (failure instanceof UnavailableException
                  || failure instanceof DeadlineExceededException);
      if (!resumable) {
        try {
          Files.deleteIfExists(partial);
        } catch (IOException ignored) {
          // Nothing more to do: the next download checks the partial file anyway.
        }
      }
      transfer.fail(failure);
    }
  }

  /** Feeds what a partial file already holds to {@code sha}; no file is an empty start. */
  private static long hashInto(Path partial, MessageDigest sha) throws IOException {
    try (InputStream in = Files.newInputStream(partial)) {
      byte[] buffer = new byte[256 * 1024];
      long total = 0;
      for (int n = in.read(buffer); n > 0; n = in.read(buffer)) {
        sha.update(buffer, 0, n);
        total += n;
      }
      return total;
    } catch (NoSuchFileException e) {
      return 0;
    }
  }

  private static void verify(Media media, long size, byte[] sha256) throws IntegrityException {
    if (size != media.size()) {
      throw new IntegrityException("received " + size + " bytes of " + media.size());
    }
    String got = HexFormat.of().formatHex(sha256);
    if (!got.equals(media.sha256())) {
      throw new IntegrityException(
          "the bytes hash to " + got + " but the record says " + media.sha256());
    }
  }
}
